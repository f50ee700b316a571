"""The once-for-all supernet: one Keras model holding the largest weights of a search space.

Any subnet runs by slicing those weights; the subnet arrives as the int32 vector of
:meth:`SearchSpace.encode`, so training over thousands of random subnets uses one
traced graph. ``fit`` trains with the sandwich rule (BigNAS): each step trains the
largest subnet on the labels and the smallest plus ``n_random`` random subnets on the
largest's soft predictions (in-place distillation), with one optimizer update.
"""

from __future__ import annotations

import numpy as np

from factory.core.backend import keras, tf
from factory.nas.heads import head_from_dict
from factory.nas.layers import ConvBN, ElasticMBConv, StemBlock
from factory.nas.space import SearchSpace, SubnetConfig


@keras.saving.register_keras_serializable(package="factory")
class Supernet(keras.Model):
    """Elastic MobileNetV3-style supernet.

    ``label_smoothing`` and dropout apply to the largest subnet only; the others learn
    from its detached predictions (BigNAS). ``seed`` fixes which random subnets each
    step trains: they are drawn from ``(seed, optimizer step)`` with stateless ops, so
    every replica of a ``tf.distribute`` strategy picks the same ones.

    ``anchored_statistics`` anchors every batch norm to a pretrained network's statistics (``ElasticBatchNorm``):
    on a few hundred photos, statistics re-estimated on the user's images cost Lite0's frozen features points
    (``bench.pretrained`` measures it), and ImageNet's alone mis-normalise the smaller subnets, whose widths and
    kernels change every layer's statistics. The largest subnet is normalised with the anchor; the others, in training and recalibration, with the
    anchor shifted by how their statistics differ from the largest's at their resolution on the same images (the
    anchor already serves every resolution, as Model Maker's recipe shows at 128 px).
    """

    def __init__(self, space: SearchSpace | dict, head=None, *, n_random: int = 2,
                 label_smoothing: float = 0.1,
                 zero_init_residual: bool = True, seed: int = 0, anchored_statistics: bool = False,
                 num_classes: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.space = space if isinstance(space, SearchSpace) else SearchSpace.from_dict(space)
        # a ``factory.nas.heads`` head, or its dict (a saved config; ``num_classes`` alone: one saved before heads)
        self.task_head = (head if hasattr(head, "backbone") else
                          head_from_dict(head or {"task": "classification", "num_classes": num_classes}))
        self.backbone = self.task_head.backbone(self.space)
        self.n_random = n_random
        self.label_smoothing = label_smoothing
        self.zero_init_residual = zero_init_residual
        self.anchored_statistics = anchored_statistics
        self.seed = seed
        sp = self.backbone
        anchored = anchored_statistics
        self.stem = ConvBN(3, sp.stem_channels, 3, sp.stem_stride, sp.stem_activation, anchored, name="stem")
        self.stem_block = (StemBlock(sp.stem_channels, zero_init_residual, sp.stem_block_channels,
                                     sp.stages[0].activation, anchored, name="stem_block") if sp.stem_block else None)
        self.blocks = [
            ElasticMBConv(
                b.in_channels, b.out_channels, b.stride, b.activation, b.se,
                sp.kernel_sizes, sp.expand_ratios,
                [sp.se_channels(b.in_channels * e) for e in sp.expand_ratios],
                zero_init_residual=zero_init_residual, anchored=anchored, name=f"stage{b.stage}_block{b.index}")
            for b in sp.blocks()
        ]
        last = sp.last_block()
        self.last_block = (ElasticMBConv(last.in_channels, last.out_channels, last.stride, last.activation, last.se,
                                         (sp.last_block_kernel,), (sp.last_block_expand,), (0,), anchored=anchored,
                                         name="last_block")
                           if last else None)
        self.head_layers = self.task_head.supernet_layers(sp, anchored)
        for attribute, layer in self.head_layers.items():  # attributes: the names checkpoints know them by
            setattr(self, attribute, layer)
        # Update rate of every batch norm's statistics during recalibration (see ElasticBatchNorm).
        self.bn_rate = tf.Variable(0.0, trainable=False, name="bn_rate",
                                   aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.loss_tracker = keras.metrics.Mean("loss")
        self.largest_acc = self.task_head.train_metric("largest_" + self.task_head.metric_name)
        self.smallest_acc = self.task_head.train_metric("smallest_" + self.task_head.metric_name)
        self._largest = tf.constant(sp.encode(SubnetConfig.largest(sp)))
        self._smallest = tf.constant(sp.encode(SubnetConfig.smallest(sp)))
        self._smallest_by_phase = tf.constant(np.stack([sp.encode(s) for s in _shrinking_smallest(sp)]))
        self._shrink_steps = 0
        self._teacher = None
        self._build_weights()
        self._logits_fn = tf.function(self._logits, reduce_retracing=True)
        self._calibrate_fn = tf.function(self._calibration_batch, reduce_retracing=True)

    def _build_weights(self):
        """Create every variable eagerly, so subnet branches inside the graph never do (the head's are built)."""
        for layer in [self.stem, self.stem_block, *self.blocks, self.last_block]:
            if layer is not None:
                layer.build(None)
        self.built = True

    # ------------------------------------------------------------- forward
    @tf.autograph.experimental.do_not_convert
    def forward(self, images, subnet, training=False, dropout=False, rate=None, anchor=None, output_size=None):
        """Logits of the subnet encoded by ``subnet`` for images at its resolution; a per-pixel head's at
        ``output_size`` (the images' size if None), so that subnets at any resolution meet the same masks."""
        m = self.space.max_depth
        _, depths, kernels, expands = self.space.split(subnet)
        x = self.bottom(images, training=training, rate=rate, anchor=anchor)
        features = []
        for pos, block in enumerate(self.blocks):
            s, i = divmod(pos, m)

            def run(x=x, block=block, pos=pos):
                return block(x, kernels[pos], expands[pos], training=training, rate=rate, anchor=anchor)

            if i < self.space.depths[0]:
                x = run()
            else:  # elastic depth: a stage keeps its first d blocks
                x = tf.cond(depths[s] > i, run, lambda x=x: tf.identity(x))
            if i == m - 1:
                features.append(x)
        return self.top(features, tf.shape(images)[1:3] if output_size is None else output_size,
                        training=training, dropout=dropout, rate=rate, anchor=anchor)

    def bottom(self, images, training=False, rate=None, anchor=None):
        """The fixed layers before the elastic blocks: the stem (and MobileNetV3's first block)."""
        x = self.stem(images, training=training, rate=rate, anchor=anchor)
        return x if self.stem_block is None else self.stem_block(x, training=training, rate=rate, anchor=anchor)

    def top(self, features, output_size, training=False, dropout=False, rate=None, anchor=None):
        """The fixed layers after the elastic blocks, on each stage's output: the last block, then the head."""
        sp = self.backbone
        if self.last_block is not None:
            features = [*features[:-1], self.last_block(features[-1], sp.last_block_kernel, sp.last_block_expand,
                                                        training=training, rate=rate, anchor=anchor)]
        return self.task_head.supernet_logits(self.head_layers, sp, features, output_size, training=training,
                                              dropout=dropout, rate=rate, anchor=anchor)

    def call(self, inputs, training=None):
        """``inputs`` is images (the largest subnet) or ``(images, encoded_subnet)``."""
        if isinstance(inputs, (tuple, list)):
            images, subnet = inputs
        else:
            images, subnet = inputs, self._largest
        return self.forward(resize(images, subnet[0]), subnet, training=bool(training),
                            output_size=tf.shape(images)[1:3])

    # ------------------------------------------------------------ sampling
    def sample_random(self, step, count: int):
        """``count`` encoded random subnets, a pure function of ``(seed, step)``."""
        sp, m = self.space, self.space.max_depth
        n_stages = len(sp.stages)
        step = tf.cast(step, tf.int32)

        def pick(choices, shape, salt):
            idx = tf.random.stateless_uniform(shape, seed=tf.stack([self.seed * 7919 + salt, step]),
                                              maxval=len(choices), dtype=tf.int32)
            return tf.gather(tf.constant(choices, tf.int32), idx)

        phase = self._phase(step)
        resolution = pick(sp.resolutions, (count, 1), 1)
        depths = tf.where(phase >= 1, pick(sp.depths, (count, n_stages), 2), sp.max_depth)
        active = tf.cast(tf.range(m)[None, None, :] < depths[:, :, None], tf.int32)
        active = tf.reshape(active, (count, n_stages * m))
        kernels = pick(sp.kernel_sizes, (count, n_stages * m), 3) * active
        expands = tf.where(phase >= 2, pick(sp.expand_ratios, (count, n_stages * m), 4), max(sp.expand_ratios))
        return tf.concat([resolution, depths, kernels, expands * active], axis=1)

    def shrink_progressively(self, steps: int) -> None:
        """Train with OFA's progressive shrinking over ``steps``: kernel and resolution are elastic from the start,
        depth from a third of the steps on, the expand ratio from two thirds on; before that, the sampled subnets
        (the smallest included) keep the largest's depths and expand ratios. Set before ``fit`` traces the step."""
        self._shrink_steps = steps

    def _phase(self, step):
        """0, 1 or 2: how many of depth and expand ratio are elastic at ``step`` (2 under the sandwich rule)."""
        if not self._shrink_steps:
            return tf.constant(2)
        return tf.minimum(tf.cast(step, tf.int32) * 3 // self._shrink_steps, 2)

    def sandwich(self, step):
        """The encoded subnets a training step trains: largest, smallest (of the elastic choices open at
        ``step``), then random."""
        fixed = tf.stack([self._largest, tf.gather(self._smallest_by_phase, self._phase(step))])
        if self.n_random == 0:
            return fixed
        return tf.concat([fixed, self.sample_random(step, self.n_random)], axis=0)

    def sandwich_configs(self, step: int) -> list[SubnetConfig]:
        return [self.space.decode(v) for v in self.sandwich(step).numpy()]

    # ------------------------------------------------------------ training
    def set_teacher(self, logits_fn) -> None:
        """Distil every subnet from a frozen teacher, a function from a training batch to logits, instead of from
        the largest subnet (OFA); the largest then learns from the labels and the teacher both. Set before ``fit``
        traces the train step; the teacher is not part of the supernet's weights."""
        self._teacher = logits_fn

    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        head = self.task_head
        images, labels = data[0], head.labels(data[1])
        subnets = self.sandwich(self.optimizer.iterations)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        taught = None if self._teacher is None else tf.nn.softmax(self._teacher(images))
        size = tf.shape(images)[1:3]  # of the data, its masks and every subnet's per-pixel logits
        with tf.GradientTape() as tape:
            anchored = "reference" if self.anchored_statistics else None
            largest = self.forward(resize(images, subnets[0][0]), subnets[0], training=True, dropout=True,
                                   anchor=anchored, output_size=size)
            loss = head.loss(labels, largest, self.label_smoothing)
            if taught is None:
                soft = tf.stop_gradient(tf.nn.softmax(largest))
            else:
                soft = tf.stop_gradient(taught)
                loss += head.distill_loss(soft, largest)
            student_logits = []
            for i in range(1, 2 + self.n_random):
                student_images = resize(images, subnets[i][0])
                if anchored:  # the largest at the student's resolution, run only to record its statistics
                    with tape.stop_recording():
                        self.forward(student_images, tf.concat([subnets[i][:1], self._largest[1:]], 0),
                                     training=True, anchor="reference")
                logits = self.forward(student_images, subnets[i], training=True, anchor=anchored and "delta",
                                      output_size=size)
                loss += head.distill_loss(soft, logits)
                student_logits.append(logits)
            scaled = loss / tf.cast(replicas, loss.dtype)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.loss_tracker.update_state(loss)
        self.largest_acc.update_state(labels, largest)
        self.smallest_acc.update_state(labels, student_logits[0])
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        """Validation during ``fit`` scores the largest subnet with the statistics of the
        last recalibration (training itself leaves them alone)."""
        images, labels = data[0], self.task_head.labels(data[1])
        logits = self(images, training=False)
        self.largest_acc.update_state(labels, logits)
        return {self.largest_acc.name: self.largest_acc.result()}

    @property
    def metrics(self):
        return [self.loss_tracker, self.largest_acc, self.smallest_acc]

    # ---------------------------------------------------- subnet inference
    def _logits(self, images, subnet):
        return self.forward(resize(images, subnet[0]), subnet, training=False, output_size=tf.shape(images)[1:3])

    def predict_subnet(self, subnet: SubnetConfig, images) -> np.ndarray:
        """Logits of one subnet (inference mode); images are resized to its resolution."""
        return self._logits_fn(tf.convert_to_tensor(images, tf.float32),
                               tf.constant(self.space.encode(subnet))).numpy()

    def _calibration_batch(self, images, subnet, rate):
        self.bn_rate.assign(rate)
        images = resize(images, subnet[0])
        if self.anchored_statistics:  # as in training: the largest at this resolution first, on the same images
            self.forward(images, tf.concat([subnet[:1], self._largest[1:]], 0), training=True, anchor="reference")
        self.forward(images, subnet, training=True, rate=self.bn_rate,
                     anchor="delta" if self.anchored_statistics else None)

    def recalibrate(self, subnet: SubnetConfig, batches) -> int:
        """Reset the subnet's batch-norm statistics to their average over ``batches``.

        Supernet training mixes every subnet into the moving statistics; OFA re-estimates
        them for the one subnet about to be evaluated or extracted. Returns the number of
        batches used. With ``anchored_statistics`` they become the average of the shifted anchors the subnet is
        normalised with in training: each batch runs the largest subnet at the subnet's resolution first.
        """
        encoded = tf.constant(self.space.encode(subnet))
        n = 0
        for n, images in enumerate(batches, start=1):
            if isinstance(images, (tuple, list)):
                images = images[0]
            self._calibrate_fn(tf.convert_to_tensor(images, tf.float32), encoded,
                               tf.constant(1.0 / n, tf.float32))
        return n

    def evaluate_subnet(self, subnet: SubnetConfig, dataset) -> float:
        """The task's score (top-1 accuracy, mean IoU) of one subnet on a dataset of ``(images, targets)``
        batches."""
        return self.task_head.score((self.predict_subnet(subnet, images), targets) for images, targets in dataset)

    # ------------------------------------------------ channel re-organising
    def sort_channels(self):
        """Put each block's most important hidden channels first (OFA).

        Width shrinking keeps the first channels, so they should be the ones that matter
        most. The permutation is applied to every weight and optimizer slot indexed by
        those channels, so the largest subnet computes exactly the same function.
        """
        for block in self.blocks:
            perm = np.argsort(-block.hidden_importance(), kind="stable")
            for var, axis in block.hidden_permutation_targets():
                self._permute(var, perm, axis)
            if block.se:
                perm = np.argsort(-block.se_importance(), kind="stable")
                for var, axis in block.se_permutation_targets():
                    self._permute(var, perm, axis)

    def _permute(self, var, perm, axis):
        var.assign(np.take(var.numpy(), perm, axis=axis))
        for slot in _optimizer_slots(getattr(self, "optimizer", None), var):
            slot.assign(np.take(slot.numpy(), perm, axis=axis))

    # --------------------------------------------------------------- config
    def get_config(self):
        return {"space": self.space.to_dict(), "head": self.task_head.to_dict(),
                "n_random": self.n_random, "label_smoothing": self.label_smoothing,
                "zero_init_residual": self.zero_init_residual, "anchored_statistics": self.anchored_statistics,
                "seed": self.seed, "name": self.name}


@tf.autograph.experimental.do_not_convert
def _shrinking_smallest(space: SearchSpace) -> list[SubnetConfig]:
    """The smallest subnet of each progressive-shrinking phase: the smallest kernels (and resolution) at the largest
    depths and expand ratios, then at the smallest depths, then the smallest of all."""
    small, big = SubnetConfig.smallest(space), SubnetConfig.largest(space)
    kernels = tuple((space.kernel_sizes[0],) * d for d in big.depths)
    return [SubnetConfig(small.resolution, big.depths, kernels, big.expand_ratios),
            SubnetConfig(small.resolution, small.depths, small.kernel_sizes,
                         tuple((max(space.expand_ratios),) * d for d in small.depths)),
            small]


def resize(images, resolution):
    """Bilinear resize of a batch inside a training graph to a square resolution (a tensor or int; a no-op when
    equal): elastic resolution and a teacher's input. Images from files go through ``resize_image``."""
    size = tf.shape(images)[1]
    return tf.cond(tf.equal(size, resolution), lambda: tf.identity(images),
                   lambda: tf.image.resize(images, tf.stack([resolution, resolution])))


def _soft_ce(targets, logits):
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, logits))


def _optimizer_slots(optimizer, var):
    """The optimizer's per-variable slots (momentum, Adam moments) of ``var``.

    tf_keras keeps them in lists indexed by ``_index_dict``; no public API maps a
    variable to its slots, so this reads those two internals and returns nothing when
    the optimizer has not been built yet.
    """
    if optimizer is None or not getattr(optimizer, "_index_dict", None):
        return []
    index = optimizer._index_dict.get(optimizer._var_key(var))
    if index is None:
        return []
    slots = []
    for name in ("momentums", "_momentums", "_velocities", "_velocity_hats"):
        values = getattr(optimizer, name, None)
        if isinstance(values, list) and len(values) > index:
            slots.append(values[index])
    return slots
