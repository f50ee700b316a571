"""Elastic layers of the supernet: they hold the largest weights and run any subnet by slicing.

Channel counts and the kernel size arrive as int32 tensors, so one traced graph serves
every subnet. Slicing (rather than multiplying by 0/1 masks, as TuNAS does) makes a
small subnet cost what a small network costs.
"""

from __future__ import annotations

import numpy as np

from factory.nas import activations
from factory.core.backend import keras, tf

_ON_READ = dict(
    trainable=False,
    synchronization=tf.VariableSynchronization.ON_READ,
    aggregation=tf.VariableAggregation.MEAN,
)


def _conv(x, kernel, stride=1):
    return tf.nn.conv2d(x, kernel, strides=stride, padding="SAME")


@keras.saving.register_keras_serializable(package="factory")
class ElasticBatchNorm(keras.layers.Layer):
    """Batch normalization over the first ``channels`` channels of its largest width.

    Moving statistics change only when a ``rate`` is given: recalibration passes
    ``1/(i+1)`` on its i-th batch, which makes them the exact average over the calibration
    batches (OFA). Supernet training passes none: statistics accumulated over a mix of
    subnets fit none of them, and every subnet is recalibrated before it is used.

    ``anchored`` layers also hold a pretrained network's statistics (``anchor_*``), which fit its features better
    than any re-estimate on a few hundred of the user's photos. A subnet is normalised with them shifted by what its
    own architecture changes: the difference between its batch statistics and the reference network's on the same
    images (``reference_*``, recorded by the reference's pass with ``anchor="reference"``; ``anchor="delta"``
    applies them). The reference itself is normalised with the anchor exactly.
    """

    def __init__(self, channels: int, epsilon: float = 1e-3, zero_gamma: bool = False, anchored: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.epsilon = epsilon
        self.zero_gamma = zero_gamma
        self.anchored = anchored

    def build(self, input_shape=None):
        c = (self.channels,)
        self.gamma = self.add_weight("gamma", c, initializer="zeros" if self.zero_gamma else "ones")
        self.beta = self.add_weight("beta", c, initializer="zeros")
        self.moving_mean = self.add_weight("moving_mean", c, initializer="zeros", **_ON_READ)
        self.moving_variance = self.add_weight("moving_variance", c, initializer="ones", **_ON_READ)
        if self.anchored:
            self.anchor_mean = self.add_weight("anchor_mean", c, initializer="zeros", **_ON_READ)
            self.anchor_variance = self.add_weight("anchor_variance", c, initializer="ones", **_ON_READ)
            self.reference_mean = self.add_weight("reference_mean", c, initializer="zeros", **_ON_READ)
            self.reference_variance = self.add_weight("reference_variance", c, initializer="ones", **_ON_READ)
        super().build(input_shape)

    def _update_moving(self, c, mean, variance, rate):
        for var, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            old = var[:c]
            var.assign(tf.concat([old + (batch - old) * rate, var[c:]], axis=0))

    def _shifted(self, c, mean, variance):
        """The anchor moved by a subnet's statistics relative to the reference's (additive mean, variance ratio)."""
        ref_mean, ref_var = (tf.stop_gradient(v[:c]) for v in (self.reference_mean, self.reference_variance))
        return (self.anchor_mean[:c] + mean - ref_mean,
                self.anchor_variance[:c] * (variance + self.epsilon) / (ref_var + self.epsilon))

    @tf.autograph.experimental.do_not_convert
    def call(self, x, channels=None, training=False, rate=None, anchor=None):
        c = self.channels if channels is None else channels
        gamma, beta = self.gamma[:c], self.beta[:c]
        if anchor == "reference":
            batch_mean, batch_var = tf.nn.moments(tf.stop_gradient(x), axes=[0, 1, 2])
            for var, batch in ((self.reference_mean, batch_mean), (self.reference_variance, batch_var)):
                var.assign(tf.concat([batch, var[c:]], axis=0))
            mean, variance = self.anchor_mean[:c], self.anchor_variance[:c]
        elif anchor == "delta":
            mean, variance = self._shifted(c, *tf.nn.moments(x, axes=[0, 1, 2]))
            if rate is not None:  # recalibration: the moving statistics average the shifted anchors it used
                self._update_moving(c, tf.stop_gradient(mean), tf.stop_gradient(variance), rate)
        elif training:
            mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
            if rate is not None:
                self._update_moving(c, mean, variance, rate)
        else:
            mean, variance = self.moving_mean[:c], self.moving_variance[:c]
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)

    def export(self, channels: int | None = None) -> list[np.ndarray]:
        """Weights for ``keras.layers.BatchNormalization`` (gamma, beta, mean, variance)."""
        c = self.channels if channels is None else channels
        return [w.numpy()[:c] for w in (self.gamma, self.beta, self.moving_mean, self.moving_variance)]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "epsilon": self.epsilon,
                "zero_gamma": self.zero_gamma, "anchored": self.anchored}


@keras.saving.register_keras_serializable(package="factory")
class ConvBN(keras.layers.Layer):
    """A fixed-width convolution, batch norm and activation (the stem and the head)."""

    def __init__(self, in_channels: int, filters: int, kernel_size: int = 1, stride: int = 1,
                 activation: str = "hard_swish", anchored: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.filters = in_channels, filters
        self.kernel_size, self.stride, self.activation = kernel_size, stride, activation
        self.anchored = anchored
        self.bn = ElasticBatchNorm(filters, anchored=anchored, name="bn")

    def build(self, input_shape=None):
        k = self.kernel_size
        self.kernel = self.add_weight("kernel", (k, k, self.in_channels, self.filters),
                                      initializer="he_normal")
        self.bn.build(None)
        super().build(input_shape)

    @tf.autograph.experimental.do_not_convert
    def call(self, x, training=False, rate=None, anchor=None):
        x = self.bn(_conv(x, self.kernel, self.stride), training=training, rate=rate, anchor=anchor)
        return activations.get(self.activation)(x)

    def get_config(self):
        return {**super().get_config(), "in_channels": self.in_channels, "filters": self.filters,
                "kernel_size": self.kernel_size, "stride": self.stride, "activation": self.activation,
                "anchored": self.anchored}


@keras.saving.register_keras_serializable(package="factory")
class StemBlock(keras.layers.Layer):
    """The fixed first block: 3x3 depthwise, batch norm, activation, 1x1 projection, batch norm, and a residual when
    the width stays (MobileNetV3: ReLU, 16 to 16; EfficientNet-Lite0: ReLU6, 32 to 16, no residual).

    Every subnet runs it whole: it holds no elastic choice, so it is the same block at every resolution."""

    def __init__(self, channels: int, zero_init_residual: bool = True, out_channels: int | None = None,
                 activation: str = "relu", anchored: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.zero_init_residual = channels, zero_init_residual
        self.out_channels, self.activation, self.anchored = out_channels or channels, activation, anchored
        self.depthwise_bn = ElasticBatchNorm(channels, anchored=anchored, name="depthwise_bn")
        self.project_bn = ElasticBatchNorm(self.out_channels, zero_gamma=zero_init_residual and self.residual,
                                           anchored=anchored, name="project_bn")

    @property
    def residual(self) -> bool:
        return self.out_channels == self.channels

    def build(self, input_shape=None):
        c = self.channels
        self.depthwise_kernel = self.add_weight("depthwise_kernel", (3, 3, c, 1), initializer="he_normal")
        self.project_kernel = self.add_weight("project_kernel", (1, 1, c, self.out_channels), initializer="he_normal")
        for bn in (self.depthwise_bn, self.project_bn):
            bn.build(None)
        super().build(input_shape)

    @tf.autograph.experimental.do_not_convert
    def call(self, x, training=False, rate=None, anchor=None):
        h = tf.nn.depthwise_conv2d(x, self.depthwise_kernel, strides=[1, 1, 1, 1], padding="SAME")
        h = activations.get(self.activation)(self.depthwise_bn(h, training=training, rate=rate, anchor=anchor))
        h = self.project_bn(_conv(h, self.project_kernel), training=training, rate=rate, anchor=anchor)
        return x + h if self.residual else h

    def export(self) -> dict[str, list[np.ndarray]]:
        """Weights of the static layers, by layer role (as :meth:`ElasticMBConv.export`)."""
        return {"depthwise": [self.depthwise_kernel.numpy()], "depthwise_bn": self.depthwise_bn.export(),
                "project": [self.project_kernel.numpy()], "project_bn": self.project_bn.export()}

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "zero_init_residual": self.zero_init_residual,
                "out_channels": self.out_channels, "activation": self.activation, "anchored": self.anchored}


@keras.saving.register_keras_serializable(package="factory")
class ElasticMBConv(keras.layers.Layer):
    """An inverted-residual block with elastic kernel size and expand ratio.

    Elastic kernel follows OFA's kernel transformation: one depthwise kernel of the
    largest size per layer; each smaller kernel is the centre crop of the next larger
    *effective* kernel multiplied by a learnt (k*k x k*k) matrix shared across channels,
    initialised to identity. Plain centre crops force one set of weights to serve every
    kernel size at once; the matrices let the small kernels drift away from the large
    kernel's centre, which OFA found worth about +2% top-1 on ImageNet for the 3x3 case.

    Elastic width keeps the first ``in_channels * expand`` hidden channels;
    :meth:`sort_channels` moves the most important ones first (OFA's re-organisation).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, activation: str,
                 se: bool, kernel_sizes, expand_ratios, se_channels, zero_init_residual: bool = True,
                 anchored: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.activation, self.se = activation, se
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.expand_ratios = tuple(int(e) for e in expand_ratios)
        self.se_channels = tuple(int(c) for c in se_channels)  # per expand ratio
        self.zero_init_residual = zero_init_residual
        self.max_hidden = in_channels * self.expand_ratios[-1]
        self.anchored = anchored
        self.expand_bn = ElasticBatchNorm(self.max_hidden, anchored=anchored, name="expand_bn")
        self.depthwise_bn = ElasticBatchNorm(self.max_hidden, anchored=anchored, name="depthwise_bn")
        self.project_bn = ElasticBatchNorm(
            out_channels, zero_gamma=zero_init_residual and self.residual, anchored=anchored, name="project_bn")

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    def build(self, input_shape=None):
        h, kmax = self.max_hidden, self.kernel_sizes[-1]
        self.expand_kernel = self.add_weight("expand_kernel", (1, 1, self.in_channels, h),
                                             initializer="he_normal")
        self.depthwise_kernel = self.add_weight("depthwise_kernel", (kmax, kmax, h, 1),
                                                initializer="he_normal")
        self.transforms = [  # one per smaller kernel size, in kernel_sizes order
            self.add_weight(f"transform_{k}", (k * k, k * k), initializer=keras.initializers.Identity())
            for k in self.kernel_sizes[:-1]
        ]
        if self.se:
            m = max(self.se_channels)
            self.se_reduce_kernel = self.add_weight("se_reduce_kernel", (1, 1, h, m), initializer="he_normal")
            self.se_reduce_bias = self.add_weight("se_reduce_bias", (m,), initializer="zeros")
            self.se_expand_kernel = self.add_weight("se_expand_kernel", (1, 1, m, h), initializer="he_normal")
            self.se_expand_bias = self.add_weight("se_expand_bias", (h,), initializer="zeros")
        self.project_kernel = self.add_weight("project_kernel", (1, 1, h, self.out_channels),
                                              initializer="he_normal")
        for bn in (self.expand_bn, self.depthwise_bn, self.project_bn):
            bn.build(None)
        super().build(input_shape)

    # ------------------------------------------------------------- kernels
    def _effective_kernels(self, down_to: int):
        """Effective depthwise kernels from the largest size down to ``down_to``."""
        kernel = self.depthwise_kernel
        out = {self.kernel_sizes[-1]: kernel}
        for k, transform in reversed(list(zip(self.kernel_sizes, self.transforms))):
            if k < down_to:
                break
            start = (kernel.shape[0] - k) // 2
            crop = kernel[start:start + k, start:start + k, :, 0]  # (k, k, C)
            flat = tf.transpose(tf.reshape(crop, (k * k, -1)))  # (C, k*k)
            mixed = tf.matmul(flat, transform)
            kernel = tf.reshape(tf.transpose(mixed), (k, k, -1, 1))
            out[k] = kernel
        return out

    def depthwise_for(self, kernel_size):
        """The depthwise kernel for a kernel-size tensor, without control flow.

        Every effective kernel is flattened into one vector; the chosen one is cut out
        with a dynamic ``tf.slice`` at an offset from a constant table. Gradients of a
        slice are cheap to build, unlike those of one ``switch_case`` per block.
        """
        kernels = self._effective_kernels(self.kernel_sizes[0])
        flat = tf.concat([tf.reshape(kernels[k], [-1]) for k in self.kernel_sizes], axis=0)
        sizes = [k * k * self.max_hidden for k in self.kernel_sizes]
        offsets = tf.constant(np.cumsum([0] + sizes[:-1]), tf.int32)
        index = tf.argmax(tf.cast(tf.equal(tf.constant(self.kernel_sizes), kernel_size), tf.int32),
                          output_type=tf.int32)
        chosen = tf.slice(flat, [offsets[index]], [kernel_size * kernel_size * self.max_hidden])
        return tf.reshape(chosen, tf.stack([kernel_size, kernel_size, self.max_hidden, 1]))

    # ---------------------------------------------------------------- call
    @tf.autograph.experimental.do_not_convert
    def call(self, x, kernel_size, expand_ratio, training=False, rate=None, anchor=None):
        act = activations.get(self.activation)
        e_index = tf.argmax(tf.cast(tf.equal(tf.constant(self.expand_ratios), expand_ratio), tf.int32),
                            output_type=tf.int32)
        hidden = self.in_channels * expand_ratio
        h = _conv(x, self.expand_kernel[:, :, :, :hidden])
        h = act(self.expand_bn(h, hidden, training=training, rate=rate, anchor=anchor))
        dw = self.depthwise_for(kernel_size)[:, :, :hidden, :]
        h = tf.nn.depthwise_conv2d(h, dw, strides=[1, self.stride, self.stride, 1], padding="SAME")
        h = act(self.depthwise_bn(h, hidden, training=training, rate=rate, anchor=anchor))
        if self.se:
            mid = tf.gather(tf.constant(self.se_channels), e_index)
            s = tf.reduce_mean(h, axis=[1, 2], keepdims=True)
            s = tf.nn.relu(_conv(s, self.se_reduce_kernel[:, :, :hidden, :mid]) + self.se_reduce_bias[:mid])
            s = _conv(s, self.se_expand_kernel[:, :, :mid, :hidden]) + self.se_expand_bias[:hidden]
            h = h * activations.hard_sigmoid(s)
        h = self.project_bn(_conv(h, self.project_kernel[:, :, :hidden, :]), training=training, rate=rate, anchor=anchor)
        return h + x if self.residual else h

    # -------------------------------------------------------------- export
    def export(self, kernel_size: int, expand_ratio: int) -> dict[str, list[np.ndarray]]:
        """Weights of the static layers of one (kernel, expand) choice, by layer role."""
        hidden = self.in_channels * expand_ratio
        weights = {
            "expand": [self.expand_kernel.numpy()[..., :hidden]],
            "expand_bn": self.expand_bn.export(hidden),
            "depthwise": [self._effective_kernels(kernel_size)[kernel_size].numpy()[:, :, :hidden, :]],
            "depthwise_bn": self.depthwise_bn.export(hidden),
            "project": [self.project_kernel.numpy()[:, :, :hidden, :]],
            "project_bn": self.project_bn.export(),
        }
        if self.se:
            mid = self.se_channels[self.expand_ratios.index(expand_ratio)]
            weights["se_reduce"] = [self.se_reduce_kernel.numpy()[:, :, :hidden, :mid],
                                    self.se_reduce_bias.numpy()[:mid]]
            weights["se_expand"] = [self.se_expand_kernel.numpy()[:, :, :mid, :hidden],
                                    self.se_expand_bias.numpy()[:hidden]]
        return weights

    # ------------------------------------------------------- re-organising
    def hidden_permutation_targets(self):
        """(variable, axis) pairs indexed by the hidden channels."""
        targets = [(self.expand_kernel, 3), (self.depthwise_kernel, 2), (self.project_kernel, 2)]
        for bn in (self.expand_bn, self.depthwise_bn):
            targets += [(v, 0) for v in bn.weights]  # scale, offset and every kind of statistics it holds
        if self.se:
            targets += [(self.se_reduce_kernel, 2), (self.se_expand_kernel, 3), (self.se_expand_bias, 0)]
        return targets

    def hidden_importance(self) -> np.ndarray:
        """OFA's importance of a hidden channel: L1 norm of its projection weights."""
        return np.abs(self.project_kernel.numpy()).sum(axis=(0, 1, 3))

    def se_permutation_targets(self):
        return [(self.se_reduce_kernel, 3), (self.se_reduce_bias, 0), (self.se_expand_kernel, 2)]

    def se_importance(self) -> np.ndarray:
        return np.abs(self.se_expand_kernel.numpy()).sum(axis=(0, 1, 3))

    def get_config(self):
        return {**super().get_config(), "in_channels": self.in_channels,
                "out_channels": self.out_channels, "stride": self.stride,
                "activation": self.activation, "se": self.se, "kernel_sizes": self.kernel_sizes,
                "expand_ratios": self.expand_ratios, "se_channels": self.se_channels,
                "zero_init_residual": self.zero_init_residual, "anchored": self.anchored}
