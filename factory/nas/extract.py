"""A subnet as a plain functional tf_keras model, built only of standard layers.

:func:`build_subnet_model` makes the static network of a SubnetConfig (randomly
initialised: the standalone baseline); :func:`extract` makes the same network and
copies the supernet's weights into it. Plain layers are what QAT, the TFLite converter
and app teams understand, so every later stage works on these models.
"""

from __future__ import annotations

from factory.nas import activations
from factory.core.backend import keras
from factory.nas.space import BlockSpec, SearchSpace, SubnetConfig

_BN = dict(epsilon=1e-3, momentum=0.99)


def activation_layer(name: str, layer_name: str):
    if name in ("relu", "relu6"):
        return keras.layers.ReLU(6.0 if name == "relu6" else None, name=layer_name)
    return keras.layers.Activation(activations.hard_swish, name=layer_name)


def conv_bn_act(x, filters, kernel, stride, activation, prefix):
    x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                            name=f"{prefix}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{prefix}_bn", **_BN)(x)
    return activation_layer(activation, f"{prefix}_act")(x)


def build_subnet_model(space: SearchSpace, subnet: SubnetConfig, head, name: str = "subnet",
                       fold_gate: bool = False) -> keras.Model:
    """The static network of ``subnet`` with ``head`` (a ``factory.nas.heads`` head): input
    ``(resolution, resolution, 3)``, the head's logits out.

    ``fold_gate`` writes squeeze-excite's hard-sigmoid gate ``relu6(z + 3) / 6`` as a
    ``ReLU(max_value=6)``, with the ``+ 3`` folded into the gate convolution's bias and the
    ``/ 6`` into the following projection's kernel (:func:`extract` moves the weights).
    The function is the same; every layer is then one tfmot quantizes natively, so QAT
    gives each tensor of the int8 graph a range.
    """
    subnet.validate(space)
    backbone = head.backbone(space)
    inputs = keras.Input((subnet.resolution, subnet.resolution, 3), name="image")
    x = stem(inputs, backbone)
    features = [None] * len(backbone.stages)
    for block, k, e in subnet.blocks(backbone):
        x = features[block.stage] = mbconv(x, block, k, e, backbone.se_channels(block.in_channels * e),
                                           f"stage{block.stage}_block{block.index}", fold_gate)
    return keras.Model(inputs, top(features, backbone, head, subnet.resolution), name=name)


def stem(x, space: SearchSpace):
    """The stem convolution, then the fixed first block when the space has one (``layers.StemBlock``)."""
    x = conv_bn_act(x, space.stem_channels, 3, space.stem_stride, space.stem_activation, "stem")
    if not space.stem_block:
        return x
    h = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="stem_block_depthwise")(x)
    h = keras.layers.BatchNormalization(name="stem_block_depthwise_bn", **_BN)(h)
    h = activation_layer(space.stages[0].activation, "stem_block_depthwise_act")(h)
    h = keras.layers.Conv2D(space.stem_block_channels, 1, use_bias=False, name="stem_block_project")(h)
    h = keras.layers.BatchNormalization(name="stem_block_project_bn", **_BN)(h)
    if space.stem_block_channels != space.stem_channels:
        return h
    return keras.layers.Add(name="stem_block_add")([x, h])


def mbconv(x, block: BlockSpec, kernel_size: int, expand_ratio: int, se_channels: int, p: str,
           fold_gate: bool = False):
    """One inverted-residual block of standard layers, named ``{p}_{role}``."""
    hidden = block.in_channels * expand_ratio
    shortcut = x
    x = keras.layers.Conv2D(hidden, 1, use_bias=False, name=f"{p}_expand")(x)
    x = keras.layers.BatchNormalization(name=f"{p}_expand_bn", **_BN)(x)
    x = activation_layer(block.activation, f"{p}_expand_act")(x)
    x = keras.layers.DepthwiseConv2D(kernel_size, block.stride, padding="same", use_bias=False,
                                     name=f"{p}_depthwise")(x)
    x = keras.layers.BatchNormalization(name=f"{p}_depthwise_bn", **_BN)(x)
    x = activation_layer(block.activation, f"{p}_depthwise_act")(x)
    if block.se:
        s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{p}_se_pool")(x)
        s = keras.layers.Conv2D(se_channels, 1, name=f"{p}_se_reduce")(s)
        s = keras.layers.ReLU(name=f"{p}_se_relu")(s)
        s = keras.layers.Conv2D(hidden, 1, name=f"{p}_se_expand")(s)
        s = (keras.layers.ReLU(max_value=6.0, name=f"{p}_se_gate") if fold_gate
             else keras.layers.Activation(activations.hard_sigmoid, name=f"{p}_se_gate"))(s)
        x = keras.layers.Multiply(name=f"{p}_se_scale")([x, s])
    x = keras.layers.Conv2D(block.out_channels, 1, use_bias=False, name=f"{p}_project")(x)
    x = keras.layers.BatchNormalization(name=f"{p}_project_bn", **_BN)(x)
    if block.residual:
        x = keras.layers.Add(name=f"{p}_add")([shortcut, x])
    return x


def top(features: list, backbone: SearchSpace, head, resolution: int):
    """The fixed last block (if any) on the last stage's output, then the head's standard layers (logits)."""
    last = backbone.last_block()
    if last:
        features = [*features[:-1], mbconv(features[-1], last, backbone.last_block_kernel,
                                           backbone.last_block_expand, 0, "last_block")]
    return head.keras_logits(backbone, features, resolution)


def extract(supernet, subnet: SubnetConfig, name: str = "subnet", fold_gate: bool = False) -> keras.Model:
    """The subnet with the supernet's weights (recalibrate its batch norm first). A supernet with anchored statistics
    gives a model whose batch norms are frozen (``trainable=False``: Keras then runs them in inference mode), so
    fine-tuning it keeps the statistics its recalibration set."""
    space, head = supernet.backbone, supernet.task_head
    model = build_subnet_model(supernet.space, subnet, head, name=name, fold_gate=fold_gate)
    layer = model.get_layer
    layer("stem_conv").set_weights([supernet.stem.kernel.numpy()])
    layer("stem_bn").set_weights(supernet.stem.bn.export())
    if space.stem_block:
        for role, values in supernet.stem_block.export().items():
            layer(f"stem_block_{role}").set_weights(values)
    by_name = {b.name: b for b in supernet.blocks}
    for block, k, e in subnet.blocks(space):
        p = f"stage{block.stage}_block{block.index}"
        weights = by_name[p].export(k, e)
        if fold_gate and block.se:
            kernel, bias = weights["se_expand"]
            weights["se_expand"] = [kernel, bias + 3.0]
            weights["project"] = [weights["project"][0] / 6.0]
        for role, values in weights.items():
            layer(f"{p}_{role}").set_weights(values)
    if space.last_block():
        for role, values in supernet.last_block.export(space.last_block_kernel, space.last_block_expand).items():
            layer(f"last_block_{role}").set_weights(values)
    for name, values in head.export_weights(supernet.head_layers, space).items():
        layer(name).set_weights(values)
    if supernet.anchored_statistics:
        for bn in model.layers:
            if isinstance(bn, keras.layers.BatchNormalization):
                bn.trainable = False
    return model
