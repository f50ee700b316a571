"""One run's shared state: its results doc (saved after every row, so an interrupted run resumes), the
work directory, device, table, budgets and data."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from bench.common import CLASSIFIER, provenance, results_file, three_budgets
from devices.profile import DeviceProfile, load_profile
from factory.core.errors import FactoryError
from factory.core.files import read_json, write_json
from factory.training.workdir import Workdir
from latency_tables.resolve import load_tables
from latency_tables.table import LatencyTable

SCRIPT = "bench.compare_baselines"


def results(path: str) -> dict:
    """A results file this benchmark wrote (an --out)."""
    return results_file(path, "latency_by_config", SCRIPT)


@dataclasses.dataclass
class Run:
    args: argparse.Namespace
    doc: dict
    workdir: Workdir
    profile: DeviceProfile
    table: LatencyTable
    budgets: list
    epochs: int
    raw: object
    data: object
    representative: np.ndarray  # uint8 training images: int8 calibration at any resolution

    @property
    def device(self) -> str:
        return self.profile.name

    @property
    def out(self) -> Path:
        return Path(self.args.out)

    @property
    def models(self) -> Path:
        """One folder of models per results file: runs differ in data and epochs."""
        return Path("runs/bench-export") / self.out.stem

    @property
    def weights(self) -> Path | None:
        return Path(self.args.baseline_weights) if self.args.baseline_weights else None

    @classmethod
    def start(cls, args) -> Run:
        """The run's results doc (resumed from ``--out``), budgets, baseline epochs and data, checked first."""
        workdir, out = Workdir(args.workdir), Path(args.out)
        doc = read_json(out) if out.exists() else {"rows": {}}
        matched = results(args.match_as).get("latency_by_config", {}) if args.match_as else {}
        doc["latency_by_config"] = {**matched, **doc.get("latency_by_config", {})}
        space = workdir.space()
        profile = load_profile(args.device)
        [table] = load_tables(space, [profile], CLASSIFIER, [args.table] if args.table else None).values()
        if not args.baseline_epochs and not workdir.trained:
            raise FactoryError(f"{workdir} holds no trained supernet yet: give --baseline-epochs (the epochs it will "
                               "have)")
        epochs = args.baseline_epochs or workdir.training()["epochs"]
        budgets = args.budgets_ms or three_budgets(table, space)
        fastest = table.fastest_ms()
        if min(budgets) < fastest:
            raise FactoryError(f"a budget of {min(budgets):g} ms is under the fastest subnet of {space.name} on "
                               f"{profile.name} ({fastest:.3f} ms): give budgets of at least that")
        raw = workdir.data()
        data = raw.resized(space.resolutions[-1])
        return cls(args, doc, workdir, profile, table, budgets, epochs, raw, data,
                   representative=data.x_train[:200])

    def save(self):
        self.doc.update(provenance(), device=self.device, budgets_ms=self.budgets, baseline_epochs=self.epochs,
                        qat_epochs=self.args.qat_epochs)
        write_json(self.out, self.doc)
