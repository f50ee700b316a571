"""The distinct layers a search space can produce, and the ones a subnet is made of.

A latency table holds one entry per distinct layer: the stem at each resolution, every
MBConv block shape (input size, channels, stride, kernel, expand ratio, squeeze-excite,
activation) and the head at each final feature-map size. Positions inside a stage
after its first block share one shape, so the table stays small although the space
holds about 10^19 subnets. A subnet's predicted latency is the sum of its layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from factory.nas.space import BlockSpec, SearchSpace, SubnetConfig


@dataclass(frozen=True, order=True)
class LayerKey:
    """One distinct layer to time; ``id`` is its name in a table file."""

    kind: str  # "stem" | "mbconv" | a head's ("head": classification, "lraspp": segmentation)
    size: int  # input height = width
    in_channels: int
    out_channels: int
    stride: int = 1
    kernel: int = 0
    expand: int = 0
    se: bool = False
    activation: str = ""

    @property
    def id(self) -> str:
        base = f"{self.kind}/{self.size}x{self.size}x{self.in_channels}->{self.out_channels}/s{self.stride}"
        if self.kind != "mbconv":
            return base
        return f"{base}/k{self.kernel}/e{self.expand}/se{int(self.se)}/{self.activation}"

    @property
    def out_size(self) -> int:
        return math.ceil(self.size / self.stride)


def stem_key(space: SearchSpace, resolution: int) -> LayerKey:
    return LayerKey("stem", resolution, 3, space.stem_block_channels, space.stem_stride)


def block_key(block: BlockSpec, size: int, kernel: int, expand: int) -> LayerKey:
    return LayerKey("mbconv", size, block.in_channels, block.out_channels, block.stride, kernel, expand,
                    block.se, block.activation)


def head_key(space: SearchSpace, head, resolution: int) -> LayerKey:
    """The head's entry at a resolution: the fixed last block (if any) and ``head`` (a ``factory.nas.heads``
    head) on the backbone ``head.backbone(space)``."""
    kind, size = head.table_entry(head.backbone(space), resolution)
    return LayerKey(kind, size, space.stages_out_channels, head.num_classes)


def block_input_sizes(space: SearchSpace, resolution: int) -> list[int]:
    """Input size of every block position at a resolution ('same' padding: ceil division)."""
    size = math.ceil(resolution / space.stem_stride)
    sizes = []
    for block in space.blocks():
        sizes.append(size)
        size = math.ceil(size / block.stride)
    return sizes


def subnet_layers(space: SearchSpace, subnet: SubnetConfig, head) -> list[LayerKey]:
    """The layers ``subnet`` runs with ``head``, in order."""
    backbone = head.backbone(space)
    sizes = block_input_sizes(backbone, subnet.resolution)
    positions = {(b.stage, b.index): i for i, b in enumerate(backbone.blocks())}
    layers = [stem_key(backbone, subnet.resolution)]
    for block, k, e in subnet.blocks(backbone):
        layers.append(block_key(block, sizes[positions[(block.stage, block.index)]], k, e))
    layers.append(head_key(space, head, subnet.resolution))
    return layers


def all_layers(space: SearchSpace, head) -> list[LayerKey]:
    """Every distinct layer of every subnet of the space with ``head``, sorted."""
    backbone, keys = head.backbone(space), set()
    for r in space.resolutions:
        keys.add(stem_key(backbone, r))
        keys.add(head_key(space, head, r))
        for block, size in zip(backbone.blocks(), block_input_sizes(backbone, r)):
            for k in space.kernel_sizes:
                for e in space.expand_ratios:
                    keys.add(block_key(block, size, k, e))
    return sorted(keys)
