"""FBNet's mixed network over a trained supernet: architecture logits and what is differentiable in them."""

from __future__ import annotations

import numpy as np

from factory.core.backend import tf
from factory.nas.space import SubnetConfig


class Architecture:
    """The logits of one resolution's search and what is differentiable in them.

    Everything a search sets (logits, the tables' costs and corrections, the Gumbel noise's seed) is a variable that
    ``reset`` assigns, so one traced step serves every search over the same devices: TensorFlow keeps the graph of
    every ``tf.function`` it traced (gigabytes for a mixed network) until the process ends."""

    def __init__(self, space, resolution: int, devices: tuple[str, ...]):
        self.space, self.resolution = space, resolution
        self.options = [(k, e) for k in space.kernel_sizes for e in space.expand_ratios]  # the tables' k-major order
        self._positions = len(space.stages) * space.max_depth
        self.block_logits = tf.Variable(tf.zeros((self._positions, len(self.options))), name="block_logits")
        self.depth_logits = tf.Variable(tf.zeros((len(space.stages), len(space.depths))), name="depth_logits")
        # per device: fixed cost, block costs (position, option), the table's correction as a polynomial
        self.costs = {d: (tf.Variable(0.0), tf.Variable(tf.zeros((self._positions, len(self.options)))),
                          tf.Variable(tf.zeros(3))) for d in devices}
        m, depths = space.max_depth, np.asarray(space.depths)
        self._runs = tf.constant((depths[None, :] > np.arange(m)[:, None]).astype(np.float32))  # (index, depth)
        self.rng = tf.random.Generator.from_seed(0)

    def reset(self, tables: dict, seed: int):
        """Uniform logits, ``tables``' costs at this resolution, and the noise seeded for a new search."""
        self.block_logits.assign(tf.zeros_like(self.block_logits))
        self.depth_logits.assign(tf.zeros_like(self.depth_logits))
        r = self.space.resolutions.index(self.resolution)
        for device, (fixed, blocks, correction) in self.costs.items():
            table = tables[device]
            table_fixed, table_blocks = table.cost_arrays()
            fixed.assign(float(table_fixed[r]))
            blocks.assign(table_blocks[r].reshape(self._positions, -1).astype(np.float32))
            correction.assign(table.correction_polynomial())
        self.rng.reset_from_seed(seed)

    @property
    def variables(self):
        return [self.block_logits, self.depth_logits]

    def gumbel(self, logits, temperature):
        u = self.rng.uniform(tf.shape(logits), 1e-6, 1 - 1e-6)
        return tf.nn.softmax((logits - tf.math.log(-tf.math.log(u))) / temperature, axis=-1)

    def expected_latency(self) -> dict:
        """Per device, the table's prediction with every block's cost weighted by the probability of each choice
        and of the block running at all (its stage deeper than its index)."""
        block_p, depth_p = tf.nn.softmax(self.block_logits), tf.nn.softmax(self.depth_logits)
        runs = tf.reshape(tf.matmul(depth_p, self._runs, transpose_b=True), [-1])
        out = {}
        for device, (fixed, costs, correction) in self.costs.items():
            raw = fixed + tf.reduce_sum(runs * tf.reduce_sum(block_p * costs, -1))
            out[device] = tf.math.polyval(tf.unstack(correction), raw)
        return out

    def forward(self, supernet, images, block_weights, depth_weights, output_size=None):
        """Logits of the mixed network: every option of every block, weighted; each stage's output the mix of its
        outputs after each allowed depth. A per-pixel head's logits come at ``output_size`` (the images')."""
        sp, m = self.space, self.space.max_depth
        x = supernet.bottom(images, training=True)
        features = []
        for s in range(len(sp.stages)):
            after = []
            for i in range(m):
                pos, block = s * m + i, supernet.blocks[s * m + i]
                x = tf.add_n([block_weights[pos, o] * block(x, tf.constant(k), tf.constant(e), training=True)
                              for o, (k, e) in enumerate(self.options)])
                if i + 1 in sp.depths:
                    after.append(x)
            x = tf.add_n([depth_weights[s, j] * out for j, out in enumerate(after)])
            features.append(x)
        return supernet.top(features, tf.shape(images)[1:3] if output_size is None else output_size, training=True)

    def subnet(self, block_choice, depth_choice) -> SubnetConfig:
        sp, m = self.space, self.space.max_depth
        depths = tuple(sp.depths[j] for j in depth_choice)
        pick = [[self.options[block_choice[s * m + i]] for i in range(d)] for s, d in enumerate(depths)]
        return SubnetConfig(self.resolution, depths, tuple(tuple(k for k, _ in p) for p in pick),
                            tuple(tuple(e for _, e in p) for p in pick))

    def log_probability(self, subnet: SubnetConfig) -> float:
        sp, m = self.space, self.space.max_depth
        block_lp = tf.nn.log_softmax(self.block_logits).numpy()
        depth_lp = tf.nn.log_softmax(self.depth_logits).numpy()
        total = 0.0
        for s, d in enumerate(subnet.depths):
            total += depth_lp[s, sp.depths.index(d)]
            for i, choice in enumerate(zip(subnet.kernel_sizes[s], subnet.expand_ratios[s])):
                total += block_lp[s * m + i, self.options.index(choice)]
        return float(total)

    def draw(self, rng: np.random.Generator) -> SubnetConfig:
        """A subnet sampled from the learnt distribution."""
        return self.subnet([rng.choice(len(p), p=p) for p in _probabilities(self.block_logits)],
                           [rng.choice(len(p), p=p) for p in _probabilities(self.depth_logits)])

    def argmax(self) -> SubnetConfig:
        return self.subnet(np.argmax(self.block_logits.numpy(), -1), np.argmax(self.depth_logits.numpy(), -1))


def _probabilities(logits) -> np.ndarray:
    p = tf.nn.softmax(logits).numpy().astype(np.float64)
    return p / p.sum(axis=-1, keepdims=True)
