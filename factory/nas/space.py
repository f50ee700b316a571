"""The search space and the subnets in it.

A :class:`SearchSpace` is a MobileNetV3-style network: a stem convolution (optionally
followed by MobileNetV3's fixed depthwise-separable first block), stages of
inverted-residual (MBConv) blocks, a 1x1 head expansion, pooling and a classifier.
Every block position has a kernel choice and an expand-ratio choice, every stage a
depth choice, and the input has a resolution choice. A :class:`SubnetConfig` is one
point of that space; it is small, frozen and round-trips through JSON so that latency
tables, predictors, search results and bundles can all name the same subnet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random as _random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from factory.core.errors import FactoryError

ACTIVATIONS = ("relu", "relu6", "hard_swish")


class InvalidSubnetError(FactoryError, ValueError):
    """A subnet that does not belong to the space it is used with."""


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing over 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: output width, first stride, activation, squeeze-excite."""

    width: int
    stride: int
    activation: str = "relu"
    se: bool = False


@dataclass(frozen=True)
class BlockSpec:
    """A block position in the largest network, with its resolved channel counts."""

    stage: int
    index: int  # position inside the stage; 0 is the block that changes shape
    in_channels: int
    out_channels: int
    stride: int
    activation: str
    se: bool

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclass(frozen=True)
class SearchSpace:
    """A MobileNetV3-style elastic search space.

    ``stages`` hold base widths; the real channel counts are the base widths times
    ``width_multiplier``, rounded to multiples of 8 as MobileNet does.
    """

    name: str
    stages: tuple[StageSpec, ...]
    resolutions: tuple[int, ...]
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    expand_ratios: tuple[int, ...] = (3, 4, 6)
    depths: tuple[int, ...] = (2, 3, 4)
    stem_width: int = 16
    stem_stride: int = 2
    stem_block: bool = False  # a fixed first block after the stem: 3x3 depthwise, 1x1 projection (MobileNetV3, Lite0)
    stem_block_width: int = 0  # its output width; 0: the stem's, with a residual (MobileNetV3)
    stem_activation: str = "hard_swish"
    last_block_width: int = 0  # a fixed last MBConv block after the stages (EfficientNet's 320); 0: none
    last_block_kernel: int = 3
    last_block_expand: int = 6
    head_width: int = 384
    head_activation: str = "hard_swish"
    feature_width: int = 512  # a dense feature layer after pooling (MobileNetV3's 1280); 0: none
    width_multiplier: float = 1.0
    se_ratio: float = 0.25
    dropout: float = 0.2

    def __post_init__(self):
        stages = tuple(s if isinstance(s, StageSpec) else StageSpec(**s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        for field in ("resolutions", "kernel_sizes", "expand_ratios", "depths"):
            values = tuple(int(v) for v in getattr(self, field))
            if not values or list(values) != sorted(set(values)) or values[0] <= 0:
                raise FactoryError(
                    f"search space {self.name!r}: {field} must be a non-empty list of "
                    f"increasing positive integers, got {list(values)}"
                )
            object.__setattr__(self, field, values)
        if not stages:
            raise FactoryError(f"search space {self.name!r}: it needs at least one stage")
        for i, stage in enumerate(stages):
            if stage.activation not in ACTIVATIONS:
                raise FactoryError(
                    f"search space {self.name!r}: stage {i} activation must be one of "
                    f"{ACTIVATIONS}, got {stage.activation!r}"
                )
            if stage.stride not in (1, 2) or stage.width <= 0:
                raise FactoryError(
                    f"search space {self.name!r}: stage {i} needs a positive width and stride 1 or 2"
                )
        for field in ("stem_activation", "head_activation"):
            if getattr(self, field) not in ACTIVATIONS:
                raise FactoryError(f"search space {self.name!r}: {field} must be one of {ACTIVATIONS}")
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise FactoryError(f"search space {self.name!r}: kernel sizes must be odd")

    # ----------------------------------------------------------------- layout
    def channels(self, base_width: int) -> int:
        return make_divisible(base_width * self.width_multiplier)

    @property
    def stem_channels(self) -> int:
        return self.channels(self.stem_width)

    @property
    def head_channels(self) -> int:
        return self.channels(self.head_width)

    @property
    def feature_channels(self) -> int:
        return self.channels(self.feature_width) if self.feature_width else 0

    @property
    def stem_block_channels(self) -> int:
        """Channels after the stem (and its fixed block): the first stage's input."""
        return self.channels(self.stem_block_width) if self.stem_block and self.stem_block_width else \
            self.stem_channels

    @property
    def stages_out_channels(self) -> int:
        return self.channels(self.stages[-1].width)

    @property
    def pooled_channels(self) -> int:
        """Width of the vector the classifier reads: the feature layer's, else the head convolution's."""
        return self.feature_channels or self.head_channels

    def last_block(self) -> BlockSpec | None:
        """The fixed MBConv block after the elastic stages, if the space has one."""
        if not self.last_block_width:
            return None
        return BlockSpec(stage=len(self.stages), index=0, in_channels=self.stages_out_channels,
                         out_channels=self.channels(self.last_block_width), stride=1,
                         activation=self.stages[-1].activation, se=False)

    @property
    def top_in_channels(self) -> int:
        """Channels entering the head convolution."""
        last = self.last_block()
        return last.out_channels if last else self.stages_out_channels

    @property
    def max_depth(self) -> int:
        return self.depths[-1]

    def blocks(self) -> list[BlockSpec]:
        """Every block position of the largest network, stage by stage."""
        out, in_ch = [], self.stem_block_channels
        for s, stage in enumerate(self.stages):
            width = self.channels(stage.width)
            for i in range(self.max_depth):
                out.append(
                    BlockSpec(
                        stage=s,
                        index=i,
                        in_channels=in_ch if i == 0 else width,
                        out_channels=width,
                        stride=stage.stride if i == 0 else 1,
                        activation=stage.activation,
                        se=stage.se,
                    )
                )
            in_ch = width
        return out

    def stage_strides(self) -> list[int]:
        """Each stage's output stride (input pixels per feature-map pixel)."""
        out, stride = [], self.stem_stride
        for stage in self.stages:
            stride *= stage.stride
            out.append(stride)
        return out

    def stage_sizes(self, resolution: int) -> list[int]:
        """Each stage's output size at a resolution ('same' padding: ceil division)."""
        out, size = [], math.ceil(resolution / self.stem_stride)
        for stage in self.stages:
            size = math.ceil(size / stage.stride)
            out.append(size)
        return out

    def se_channels(self, hidden_channels: int) -> int:
        """Squeeze-excite bottleneck width for a given expanded width (as MobileNetV3)."""
        return make_divisible(hidden_channels * self.se_ratio)

    # ------------------------------------------------------------ identity
    def to_dict(self) -> dict:
        """The definition; fields added after the first spaces only when they differ from their defaults, so
        spaces defined before them keep their fingerprints (and the tables and work directories that record
        them stay valid)."""
        data = dataclasses.asdict(self)
        for field in _LATER_FIELDS:
            if data[field] == _FIELD_DEFAULTS[field]:
                del data[field]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "SearchSpace":
        try:
            return cls(**data)
        except TypeError as exc:
            raise FactoryError(f"not a search space definition: {exc}") from None

    @property
    def fingerprint(self) -> str:
        """A stable hash of the definition; files built for a space record and check it."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    # ------------------------------------------------------------ encoding
    @property
    def encoding_length(self) -> int:
        return 1 + len(self.stages) + 2 * len(self.stages) * self.max_depth

    def encode(self, subnet: "SubnetConfig") -> np.ndarray:
        """The subnet as one int32 vector ``[resolution, depths, kernels, expands]``.

        Kernel and expand entries are per block position of the largest network; the
        positions a subnet skips hold 0. This fixed-length vector is how a subnet
        reaches the supernet's traced graph, so changing subnets never retraces.
        """
        subnet.validate(self)
        n = len(self.stages) * self.max_depth
        kernels, expands = np.zeros(n, np.int32), np.zeros(n, np.int32)
        for s, (ks, es) in enumerate(zip(subnet.kernel_sizes, subnet.expand_ratios)):
            base = s * self.max_depth
            kernels[base : base + len(ks)] = ks
            expands[base : base + len(es)] = es
        return np.concatenate(
            [[subnet.resolution], np.asarray(subnet.depths, np.int32), kernels, expands]
        ).astype(np.int32)

    def split(self, encoded):
        """The parts of :meth:`encode` vectors: ``(resolution, depths, kernels, expands)``.

        Works on one vector or a batch (the last axis), numpy arrays or tensors alike: the
        one place that knows the layout, for the supernet, the predictor and the tables."""
        n, positions = len(self.stages), len(self.stages) * self.max_depth
        return (encoded[..., 0], encoded[..., 1:1 + n], encoded[..., 1 + n:1 + n + positions],
                encoded[..., 1 + n + positions:])

    def decode(self, vector: Sequence[int]) -> "SubnetConfig":
        """Inverse of :meth:`encode`."""
        v = np.asarray([int(x) for x in vector])
        if len(v) != self.encoding_length:
            raise InvalidSubnetError(
                f"an encoded subnet of space {self.name!r} has {self.encoding_length} "
                f"entries, got {len(v)}"
            )
        m = self.max_depth
        resolution, depths, k_all, e_all = self.split(v)
        depths = tuple(int(d) for d in depths)
        subnet = SubnetConfig(
            resolution=int(resolution),
            depths=depths,
            kernel_sizes=tuple(tuple(k_all[s * m : s * m + d]) for s, d in enumerate(depths)),
            expand_ratios=tuple(tuple(e_all[s * m : s * m + d]) for s, d in enumerate(depths)),
        )
        subnet.validate(self)
        return subnet

    def param_count(self, subnet: "SubnetConfig", head) -> int:
        """Parameters of the extracted subnet with ``head`` (batch norm's 4 per channel included)."""
        def bn(c):
            return 4 * c

        def mbconv(block, k, e):
            h = block.in_channels * e
            total = block.in_channels * h + bn(h) + k * k * h + bn(h)
            if block.se:
                m = self.se_channels(h)
                total += h * m + m + m * h + h
            return total + h * block.out_channels + bn(block.out_channels)

        c, b = self.stem_channels, self.stem_block_channels
        total = 27 * c + bn(c)
        if self.stem_block:
            total += 9 * c + bn(c) + c * b + bn(b)
        total += sum(mbconv(block, k, e) for block, k, e in subnet.blocks(self))
        if self.last_block():
            total += mbconv(self.last_block(), self.last_block_kernel, self.last_block_expand)
        return total + head.param_count(head.backbone(self))

    def size(self) -> int:
        """How many distinct subnets the space holds."""
        per_block = len(self.kernel_sizes) * len(self.expand_ratios)
        per_stage = sum(per_block**d for d in self.depths)
        return len(self.resolutions) * per_stage ** len(self.stages)


_LATER_FIELDS = ("stem_block", "stem_block_width", "stem_activation", "last_block_width", "last_block_kernel",
                 "last_block_expand", "head_activation")
_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SearchSpace)}


@dataclass(frozen=True)
class SubnetConfig:
    """One subnet: input resolution, depth per stage, kernel and expand ratio per block.

    ``kernel_sizes[s]`` and ``expand_ratios[s]`` list the active blocks of stage ``s``
    only, so their lengths equal ``depths[s]`` and equal subnets compare equal.
    """

    resolution: int
    depths: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    expand_ratios: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        object.__setattr__(self, "resolution", int(self.resolution))
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        for field in ("kernel_sizes", "expand_ratios"):
            object.__setattr__(
                self, field, tuple(tuple(int(v) for v in stage) for stage in getattr(self, field))
            )

    # ---------------------------------------------------------- constructors
    @classmethod
    def smallest(cls, space: SearchSpace) -> "SubnetConfig":
        return cls._uniform(space, 0)

    @classmethod
    def largest(cls, space: SearchSpace) -> "SubnetConfig":
        return cls._uniform(space, -1)

    @classmethod
    def _uniform(cls, space: SearchSpace, pick: int) -> "SubnetConfig":
        d = space.depths[pick]
        n = len(space.stages)
        return cls(
            resolution=space.resolutions[pick],
            depths=(d,) * n,
            kernel_sizes=((space.kernel_sizes[pick],) * d,) * n,
            expand_ratios=((space.expand_ratios[pick],) * d,) * n,
        )

    @classmethod
    def random(cls, space: SearchSpace, seed: int | _random.Random | None = None) -> "SubnetConfig":
        """A uniformly sampled subnet; the same seed gives the same subnet."""
        rng = seed if isinstance(seed, _random.Random) else _random.Random(seed)
        resolution = rng.choice(space.resolutions)
        depths = tuple(rng.choice(space.depths) for _ in space.stages)
        return cls(
            resolution=resolution,
            depths=depths,
            kernel_sizes=tuple(tuple(rng.choice(space.kernel_sizes) for _ in range(d)) for d in depths),
            expand_ratios=tuple(tuple(rng.choice(space.expand_ratios) for _ in range(d)) for d in depths),
        )

    def lowered(self, space: SearchSpace, rng: _random.Random) -> "SubnetConfig":
        """This subnet with one random choice (the resolution, a stage's depth, a block's kernel or expand ratio) one
        step lower; the smallest subnet stays as it is. Repeated, a walk from any subnet to the smallest that
        passes every cost in between, as a search that spends a budget does."""
        options = [("resolution", None)] + [("depth", s) for s in range(len(space.stages))] + \
            [(field, (s, b)) for s, d in enumerate(self.depths) for b in range(d) for field in ("kernel", "expand")]
        for field, where in rng.sample(options, len(options)):
            if field == "resolution" and self.resolution > space.resolutions[0]:
                r = space.resolutions[space.resolutions.index(self.resolution) - 1]
                return dataclasses.replace(self, resolution=r)
            if field == "depth" and self.depths[where] > space.depths[0]:
                depths = list(self.depths)
                depths[where] = space.depths[space.depths.index(depths[where]) - 1]
                cut = lambda blocks, s: blocks[s][:depths[s]]  # noqa: E731 - a stage keeps its first blocks
                return SubnetConfig(self.resolution, tuple(depths),
                                    tuple(cut(self.kernel_sizes, s) for s in range(len(depths))),
                                    tuple(cut(self.expand_ratios, s) for s in range(len(depths))))
            if field in ("kernel", "expand"):
                s, b = where
                name, choices = (("kernel_sizes", space.kernel_sizes) if field == "kernel"
                                 else ("expand_ratios", space.expand_ratios))
                values = [list(stage) for stage in getattr(self, name)]
                if values[s][b] > choices[0]:
                    values[s][b] = choices[choices.index(values[s][b]) - 1]
                    return dataclasses.replace(self, **{name: tuple(tuple(v) for v in values)})
        return self

    # ------------------------------------------------------------ validation
    def validate(self, space: SearchSpace) -> "SubnetConfig":
        """Raise :class:`InvalidSubnetError` naming the first value outside ``space``."""
        if self.resolution not in space.resolutions:
            raise InvalidSubnetError(
                f"resolution {self.resolution} is not in space {space.name!r}'s "
                f"resolutions {list(space.resolutions)}"
            )
        if len(self.depths) != len(space.stages):
            raise InvalidSubnetError(
                f"space {space.name!r} has {len(space.stages)} stages, the subnet gives "
                f"depths for {len(self.depths)}"
            )
        for s, d in enumerate(self.depths):
            if d not in space.depths:
                raise InvalidSubnetError(
                    f"stage {s}: depth {d} is not in space {space.name!r}'s depths {list(space.depths)}"
                )
            for field, choices in (("kernel_sizes", space.kernel_sizes), ("expand_ratios", space.expand_ratios)):
                values = getattr(self, field)
                if len(values) != len(self.depths) or len(values[s]) != d:
                    raise InvalidSubnetError(
                        f"stage {s}: {field} must list one value per active block ({d})"
                    )
                for b, v in enumerate(values[s]):
                    if v not in choices:
                        raise InvalidSubnetError(
                            f"stage {s} block {b}: {field[:-1].replace('_', ' ')} {v} is not in "
                            f"space {space.name!r}'s choices {list(choices)}"
                        )
        return self

    # ---------------------------------------------------------------- access
    def blocks(self, space: SearchSpace) -> Iterator[tuple[BlockSpec, int, int]]:
        """The active blocks with their kernel size and expand ratio."""
        for spec in space.blocks():
            if spec.index < self.depths[spec.stage]:
                yield spec, self.kernel_sizes[spec.stage][spec.index], self.expand_ratios[spec.stage][spec.index]

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {
            "resolution": self.resolution,
            "depths": list(self.depths),
            "kernel_sizes": [list(s) for s in self.kernel_sizes],
            "expand_ratios": [list(s) for s in self.expand_ratios],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SubnetConfig":
        keys = {"resolution", "depths", "kernel_sizes", "expand_ratios"}
        if not isinstance(data, dict) or set(data) != keys:
            raise InvalidSubnetError(
                f"a subnet config is a JSON object with exactly the keys {sorted(keys)}"
            )
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise InvalidSubnetError(f"malformed subnet config: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "SubnetConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSubnetError(f"a subnet config must be JSON: {exc}") from None
        return cls.from_dict(data)


# ------------------------------------------------------------------- presets
DEFAULT = SearchSpace(
    name="default",
    # Sized for 32x32 inputs on a laptop-class CPU: stride-2 stem, then 16x16 -> 2x2.
    stages=(
        StageSpec(16, 1, "relu", False),
        StageSpec(24, 2, "relu", True),
        StageSpec(40, 2, "hard_swish", False),
        StageSpec(48, 1, "hard_swish", True),
        StageSpec(96, 2, "hard_swish", True),
    ),
    resolutions=(24, 28, 32),
)

RES64 = dataclasses.replace(
    DEFAULT,
    name="res64",
    # The default stages with the input resolution elastic up to 64 (small images upscaled):
    # at 64 the stages run at 32x32 -> 4x4, the layout of MobileNetV3-Small at 128x128, so a
    # search can spend a budget on resolution, which buys more accuracy per ms than depth.
    resolutions=(32, 40, 48, 56, 64),
)

TINY = SearchSpace(
    name="tiny",
    # For fast tests: both activations, squeeze-excite, a stride, every kernel/expand choice.
    stages=(
        StageSpec(8, 1, "relu", False),
        StageSpec(16, 2, "hard_swish", True),
    ),
    resolutions=(16, 24),
    depths=(1, 2),
    stem_width=8,
    head_width=32,
    feature_width=32,
)

MOBILENETV3 = SearchSpace(
    name="mobilenetv3",
    # OFA's MobileNetV3-Large space at phone resolutions (for training on GPUs): stem 16 and a fixed first
    # block, five elastic stages with squeeze-excite in the 2nd, 4th and 5th, ReLU then hard-swish, head 960
    # then 1280 features. At 224 the stages run at 56x56 -> 7x7.
    stages=(
        StageSpec(24, 2, "relu", False),
        StageSpec(40, 2, "relu", True),
        StageSpec(80, 2, "hard_swish", False),
        StageSpec(112, 1, "hard_swish", True),
        StageSpec(160, 2, "hard_swish", True),
    ),
    resolutions=(128, 160, 192, 224),
    stem_block=True,
    head_width=960,
    feature_width=1280,
)

LITE0 = SearchSpace(
    name="lite0",
    # EfficientNet-Lite0 as the largest subnet (``factory.nas.pretrained`` loads its ImageNet weights): stem 32 and
    # a fixed first block to 16, five elastic stages with Lite0's widths and strides, its fixed last block to 320,
    # head 1280, no feature layer; ReLU6 and no squeeze-excite, which quantize cleanly. Lite0 itself is the subnet
    # of depths 2/2/3/3/4, kernels 3/5/3/5/5 and expand 6 at 224 px; the 7x7 kernels and 4-block stages hold it.
    stages=(
        StageSpec(24, 2, "relu6", False),
        StageSpec(40, 2, "relu6", False),
        StageSpec(80, 2, "relu6", False),
        StageSpec(112, 1, "relu6", False),
        StageSpec(192, 2, "relu6", False),
    ),
    resolutions=(128, 160, 192, 224),
    stem_width=32,
    stem_activation="relu6",
    stem_block=True,
    stem_block_width=16,
    last_block_width=320,
    head_width=1280,
    head_activation="relu6",
    feature_width=0,
)

SPACES = {space.name: space for space in (DEFAULT, RES64, MOBILENETV3, LITE0, TINY)}


def get_space(name_or_path: str | SearchSpace) -> SearchSpace:
    """A preset by name, or a space definition saved as JSON at a path."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    if name_or_path in SPACES:
        return SPACES[name_or_path]
    path = Path(name_or_path)
    if path.is_file():
        return load_space(path)
    raise FactoryError(
        f"unknown search space {name_or_path!r}: use one of {sorted(SPACES)} or a space JSON file"
    )


def load_space(path: str | Path) -> SearchSpace:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FactoryError(f"cannot read search space {path}: {exc}") from None
    space = SearchSpace.from_dict(data.get("space", data))
    recorded = data.get("fingerprint")
    if recorded and recorded != space.fingerprint:
        raise FactoryError(f"{path}: its fingerprint {recorded} does not match its definition")
    return space


def space_document(space: SearchSpace) -> dict:
    """What a work directory records about its space."""
    return {"fingerprint": space.fingerprint, "space": space.to_dict()}
