"""Latency lookup tables: one measured entry per distinct layer, summed to predict a subnet.

The benchmark of a one-layer model includes the runner's fixed per-invoke cost (input
copy, interpreter dispatch); so does a whole network, once. A table stores that
overhead, measured on a trivial model, and predicts
``overhead + sum(layer - overhead)``. Whole networks still differ from that sum in a
way that is systematic per device (one-layer models miss cache reuse between layers and
pay thread-pool start-up per layer, and grow slower than the sum as they outgrow the caches), so a table can
carry a correction ``quadratic * sum**2 + slope * sum + intercept`` fitted on measured whole subnets
(``validate.py``).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from devices.hardware import check_same_hardware, host_hardware
from devices.profile import DeviceProfile
from factory.core.errors import FactoryError
from factory.core.files import read_json, user_dir
from factory.nas.space import SearchSpace, SubnetConfig
from factory.nas.heads import head_from_dict
from latency_tables.blocks import block_input_sizes, block_key, head_key, stem_key, subnet_layers

FORMAT = 2  # 2: tables record the hardware they were measured on
SHIPPED = Path(__file__).parent / "tables"


def table_name(space: SearchSpace, profile: DeviceProfile, head) -> str:
    """A (space, device, task) table's file name; a classification table's is the (space, device) pair's."""
    task = "" if head.task == "classification" else f"-{head.task}"
    return f"{space.name}{task}__{profile.name}.json"


def user_table_path(space: SearchSpace, profile: DeviceProfile, head) -> Path:
    """Where ``factory table build`` writes a (space, device, task) table without ``--table``: the user's
    cache, never the installed package."""
    return user_dir("tables") / table_name(space, profile, head)


def default_table_path(space: SearchSpace, profile: DeviceProfile, head) -> Path:
    """The table a (space, device, task) resolves to: the user's own build when there is one, else the shipped
    one."""
    user = user_table_path(space, profile, head)
    return user if user.exists() else SHIPPED / table_name(space, profile, head)


def tool_versions() -> dict:
    import ai_edge_litert

    from factory.core.backend import tf

    return {"tensorflow": tf.__version__, "ai_edge_litert": getattr(ai_edge_litert, "__version__", "unknown")}


def new_table(space: SearchSpace, profile: DeviceProfile, head, hardware: dict) -> dict:
    return {"format": FORMAT, "space": space.name, "space_fingerprint": space.fingerprint,
            "device": profile.to_dict(), "hardware": hardware, "precision": profile.precision,
            **head.to_dict(),
            "tools": tool_versions(), "date": datetime.date.today().isoformat(),
            "overhead": None, "entries": {}}


def check_compatible(doc: dict, space: SearchSpace, profile: DeviceProfile | None, source: str):
    """Refuse a table of another space, device or precision with one line."""
    if doc.get("format") != FORMAT:
        raise FactoryError(f"{source} is not a latency table of format {FORMAT}: rebuild it")
    if doc["space_fingerprint"] != space.fingerprint:
        raise FactoryError(f"{source} was built for space {doc['space']} ({doc['space_fingerprint']}), not "
                           f"{space.name} ({space.fingerprint}): build a table for this space")
    if profile is not None:
        if doc["device"]["name"] != profile.name:
            raise FactoryError(f"{source} was measured on device {doc['device']['name']}, not {profile.name}: "
                               f"build a table with --device {profile.name}")
        if doc["precision"] != profile.precision:
            raise FactoryError(f"{source} holds {doc['precision']} latencies, the {profile.name} profile "
                               f"asks for {profile.precision}: build a table in that precision")


def check_complete(doc: dict, space: SearchSpace, source: str):
    """Refuse a table whose build has not finished all its passes (``factory table build`` resumes it)."""
    entries = doc.get("entries")
    if not isinstance(entries, dict) or not all(isinstance(e, dict) and isinstance(e.get("median_ms"), (int, float))
                                                for e in entries.values()):
        raise FactoryError(f"{source} has malformed entries (each a layer with its median_ms): rebuild it")
    if not doc.get("complete"):
        raise FactoryError(f"{source} is not complete: finish it with `factory table build --device "
                           f"{doc['device']['name']} --space {space.name} --table {source}`")


def read_table(path: str | Path, space: SearchSpace, profile: DeviceProfile | None) -> dict:
    """A table file's document, refused unless it is a finished table of ``space`` (and ``profile``)."""
    if not Path(path).exists():
        device = profile.name if profile else "DEVICE"
        raise FactoryError(f"there is no latency table at {path}: measure one with `factory table build --device "
                           f"{device} --space {space.name}` (or pass --table)")
    doc = read_json(path)
    check_compatible(doc, space, profile, str(path))
    check_complete(doc, space, str(path))
    return doc


def rebuild_hint(space: SearchSpace, profile: DeviceProfile) -> str:
    return (f"measure a table here with `factory table build --device {profile.name} --space {space.name} "
            f"--table NEW.json` and pass `--table NEW.json`")


def check_host_hardware(doc: dict, space: SearchSpace, profile: DeviceProfile, source: str):
    """Refuse a host table measured on another CPU than this machine's."""
    check_same_hardware(doc.get("hardware"), host_hardware(), source, rebuild_hint(space, profile))


MIN_CALIBRATION = 5  # whole subnets a correction is fitted on: its 5-fold cross-validation needs one per fold
CALIBRATE_N = 12  # whole subnets a table built for a run is calibrated on (bench.latency judges it held out)


def check_calibration_n(n: int):
    """Refuse too few subnets for a correction (the CLI calls it before any table loads)."""
    if n < MIN_CALIBRATION:
        raise FactoryError(f"calibration needs at least {MIN_CALIBRATION} measured subnets: raise --n")


def apply_correction(correction: dict, raw):
    """A stored correction applied to layer sums, numpy arrays or tensors alike (tables calibrated before the
    quadratic term have none)."""
    return correction.get("quadratic", 0.0) * raw ** 2 + correction["slope"] * raw + correction["intercept"]


def describe_correction(correction: dict) -> str:
    q = correction.get("quadratic", 0.0)
    return (f"{q:.4f} x sum^2 " if q else "") + f"{correction['slope']:+.4f} x sum {correction['intercept']:+.4f} ms"


class LatencyTable:
    """A measured table for one (space, device, precision); predicts subnet latency in ms."""

    def __init__(self, doc: dict, space: SearchSpace, source: str = "table"):
        check_compatible(doc, space, None, source)
        self.doc, self.space, self.source = doc, space, source
        self.head = head_from_dict(doc)  # its entries' head (tables from before heads: classification)
        self.overhead_ms = float(doc["overhead"]["median_ms"]) if doc.get("overhead") else 0.0
        self._arrays = self._cost_arrays()

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace, profile: DeviceProfile | None = None,
             head=None) -> "LatencyTable":
        """Load a table, refusing one of another space, device, precision or task (``head``'s), one not finished,
        and a host table measured on another CPU than this machine's (a phone's is checked where it is
        attached)."""
        doc = read_table(path, space, profile)
        if profile is not None and profile.runner == "host":
            check_host_hardware(doc, space, profile, str(path))
        table = cls(doc, space, str(path))
        if head is not None and table.head.task != head.task:
            raise FactoryError(f"{path} is a latency table for {table.head.task}, not {head.task}: build one with "
                               f"`factory table build --task {head.task}` (or pass another --table)")
        return table

    @property
    def device(self) -> str:
        return self.doc["device"]["name"]

    @property
    def precision(self) -> str:
        return self.doc["precision"]

    @property
    def hardware(self) -> dict | None:
        """The identity of the CPU or phone the table was measured on."""
        return self.doc.get("hardware")

    def cost(self, key) -> float:
        entry = self.doc["entries"].get(key.id)
        if entry is None:
            raise FactoryError(f"{self.source} has no entry {key.id}: finish building it with `factory table build`")
        return entry["median_ms"] - self.overhead_ms

    @property
    def correction(self) -> dict | None:
        """The linear correction fitted on measured whole subnets (``factory table calibrate``), if any."""
        return self.doc.get("correction")

    @property
    def margin(self) -> float:
        """How much slower than predicted a subnet measures 95 times in 100, as a fraction (never below 0): the
        95th percentile of the correction's held-out error; for a table calibrated before that was recorded,
        twice its held-out MAPE (about a normal error's one-sided 95th percentile); 0 for an uncalibrated one."""
        held_out = (self.correction or {}).get("cross_validated") or {}
        if "p95_slower_percent" in held_out:
            return max(0.0, held_out["p95_slower_percent"] / 100)
        return 2 * held_out["mape_percent"] / 100 if "mape_percent" in held_out else 0.0

    def correction_polynomial(self) -> list[float]:
        """The correction's coefficients, highest power first (``numpy.polyval``'s order); the identity if none."""
        c = self.correction or {"slope": 1.0, "intercept": 0.0}
        return [c.get("quadratic", 0.0), c["slope"], c["intercept"]]

    def corrected(self, raw):
        """A raw layer sum (numpy array or tensor) with the table's correction, if it has one."""
        return apply_correction(self.correction, raw) if self.correction else raw

    def _corrected(self, raw, corrected: bool):
        return self.corrected(raw) if corrected else raw

    def predict(self, subnet: SubnetConfig, corrected: bool = True) -> float:
        """Predicted latency of one subnet in milliseconds (the sum of its layers, then the correction)."""
        subnet.validate(self.space)
        raw = self.overhead_ms + sum(self.cost(k) for k in subnet_layers(self.space, subnet, self.head))
        return float(self._corrected(raw, corrected))

    def _cost_arrays(self):
        """Per-resolution stem+head cost and a (resolution, position, kernel, expand) block cost."""
        sp, backbone = self.space, self.head.backbone(self.space)
        fixed = np.zeros(len(sp.resolutions))
        blocks = np.zeros((len(sp.resolutions), len(sp.blocks()), len(sp.kernel_sizes), len(sp.expand_ratios)))
        for r_i, r in enumerate(sp.resolutions):
            fixed[r_i] = (self.overhead_ms + self.cost(stem_key(backbone, r)) + self.cost(head_key(sp, self.head, r)))
            for p_i, (block, size) in enumerate(zip(backbone.blocks(), block_input_sizes(backbone, r))):
                for k_i, k in enumerate(sp.kernel_sizes):
                    for e_i, e in enumerate(sp.expand_ratios):
                        blocks[r_i, p_i, k_i, e_i] = self.cost(block_key(block, size, k, e))
        return fixed, blocks

    def cost_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Per resolution the fixed cost (overhead, stem, head), and a (resolution, position, kernel, expand) block
        cost, in ms before the correction: a subnet's raw prediction is the fixed cost plus its blocks' costs."""
        return self._arrays

    def predict_encoded(self, encoded: np.ndarray, corrected: bool = True) -> np.ndarray:
        """Vectorised prediction for a batch of ``SearchSpace.encode`` vectors (N, L)."""
        sp = self.space
        enc = np.atleast_2d(np.asarray(encoded))
        resolution, _, kernels, expands = sp.split(enc)
        n_pos = kernels.shape[1]
        r_i = np.searchsorted(sp.resolutions, resolution)
        active = kernels > 0
        k_i = np.searchsorted(sp.kernel_sizes, np.where(active, kernels, sp.kernel_sizes[0]))
        e_i = np.searchsorted(sp.expand_ratios, np.where(active, expands, sp.expand_ratios[0]))
        fixed, blocks = self._arrays
        per_block = blocks[r_i[:, None], np.arange(n_pos)[None, :], k_i, e_i]
        return self._corrected(fixed[r_i] + (per_block * active).sum(axis=1), corrected)

    def span_by_resolution(self) -> dict[int, tuple[float, float]]:
        """Per input resolution, the lowest and highest latency any subnet can have by this table (exact).

        Layer costs add up, so an extreme is the fixed cost plus per stage the extreme depth
        of the extreme (kernel, expand) per block position. It tells a user which budgets a
        table can meet before a search is run.
        """
        fixed, blocks = self._arrays
        m, depth_idx = self.space.max_depth, np.asarray(self.space.depths) - 1
        span = []
        for reduce in (np.min, np.max):
            extreme = reduce(blocks, axis=(2, 3)).reshape(len(self.space.resolutions), len(self.space.stages), m)
            prefix = np.cumsum(extreme, axis=2)  # cost of the first d blocks
            raw = fixed + reduce(prefix[:, :, depth_idx], axis=2).sum(axis=1)
            span.append(self._corrected(raw, True))  # the correction increases over the range: order is kept
        return {r: (float(lo), float(hi)) for r, lo, hi in zip(self.space.resolutions, *span)}

    def fastest_ms(self) -> float:
        """The lowest latency any subnet of the space can have by this table (exact)."""
        return min(lo for lo, _ in self.span_by_resolution().values())

    def predict_many(self, subnets, corrected: bool = True) -> np.ndarray:
        return self.predict_encoded(np.stack([self.space.encode(s) for s in subnets]), corrected)
