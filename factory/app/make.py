"""The one-command factory: data and budgets in, one int8 bundle per (device, budget) out.

Every stage leaves its output in the ``Workdir`` and is skipped when that output is
already there and belongs to this space, so an interrupted ``make`` is resumed by
running it again. Tables come first, so a budget no subnet meets fails before training.
"""

from __future__ import annotations

import datetime
import time

from devices.hardware import host_hardware
from devices.profile import DeviceProfile
from export.bundle import is_complete
from export.config import ExportConfig
from factory.app.stages import export_within_budget, search_workdir
from factory.core.files import read_json, write_json
from factory.nas.heads import make_head
from factory.nas.space import SearchSpace
from factory.search.strategies import MAKE_SEARCH, Constraints, SearchConfig, check_budgets
from factory.training.data import load_data
from factory.training.portable.images import DEFAULT_RESIZE, check_data, data_task
from factory.training.portable.recipe import TrainConfig
from factory.training.train import train_supernet
from factory.training.workdir import Workdir, writes_workdir
from latency_tables.resolve import ensure_table
from latency_tables.table import CALIBRATE_N


class StageClock:
    """Wall time of each stage of a run: printed at its end and written to the work directory, so a user sees
    where the time went (a stage skipped because its output was there takes no time)."""

    def __init__(self):
        self.rows: list[tuple[str, float]] = []
        self.start = time.perf_counter()
        self._open: tuple[str, float] | None = None

    def stage(self, title: str):
        self._close()
        print(f"\n== {title}", flush=True)
        self._open = (title, time.perf_counter())

    def _close(self):
        if self._open:
            title, start = self._open
            self.rows.append((title, time.perf_counter() - start))
            self._open = None

    def finish(self, path) -> dict:
        self._close()
        doc = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "hardware": host_hardware(),
               "stages": [{"stage": t, "seconds": round(s, 1)} for t, s in self.rows],
               "total_seconds": round(time.perf_counter() - self.start, 1)}
        write_json(path, doc)
        width = max(len(t) for t, _ in self.rows)
        for title, seconds in self.rows:
            print(f"  {title:<{width}}  {seconds:7.1f} s")
        print(f"  {'total':<{width}}  {doc['total_seconds']:7.1f} s  -> {path}")
        return doc


@writes_workdir
def make(data: str, profiles: list[DeviceProfile], budgets_ms: list[float], workdir: Workdir, *,
         space: SearchSpace, train: TrainConfig = TrainConfig(), search: SearchConfig = MAKE_SEARCH,
         export: ExportConfig = ExportConfig(), calibrate_n: int = CALIBRATE_N,
         resize: str = DEFAULT_RESIZE) -> list[dict]:
    """Run every stage that has not run yet; return the model card of each bundle.

    A trained work directory keeps its own space and data (and ``resize`` policy): ``space`` and ``resize``
    then only apply to a new one."""
    clock = StageClock()
    trained = workdir.trained
    space = workdir.space() if trained else space
    record = workdir.data_record() if trained else None
    head = make_head(record.get("task", "classification"), len(record["classes"])) if trained else \
        make_head(data_task(data), len(check_data(data)))

    clock.stage("1/4 latency tables")  # first: a budget no subnet can meet fails before any training
    tables = {p.name: ensure_table(space, p, workdir.table_file(space, p.name, head),
                                   workdir.calibration_dir(p.name), head, calibrate_n) for p in profiles}
    for device, table in tables.items():
        for budget in budgets_ms:
            check_budgets({device: table}, Constraints({device: budget}))

    clock.stage("2/4 supernet")
    if trained:
        print(f"{workdir} already holds a trained supernet ({workdir.training()['epochs']} epochs)")
    else:
        loaded = load_data(data, seed=train.seed, image_size=space.resolutions[-1], resize=resize,
                           cache=workdir.cache_dir)
        print(f"data {loaded.name}: {len(loaded.y_train)} train / {len(loaded.y_val)} val / "
              f"{len(loaded.y_test)} test images, {loaded.num_classes} classes")
        train_supernet(loaded, space, workdir, train)

    clock.stage("3/4 accuracy predictor and search")
    results = search_workdir(workdir, tables, budgets_ms, data=data, config=search, reuse=True)

    clock.stage("4/4 export")
    by_name = {p.name: p for p in profiles}
    cards = []
    for result in results:
        out = workdir.bundle_dir(result["device"], result["budget_ms"])
        if is_complete(out):
            print(f"{out} is already there")
            cards.append(read_json(out / "model_card.json"))
            continue
        cards.append(export_within_budget(workdir, result, by_name[result["device"]], tables, out, config=export,
                                          search=search, data=data))
    print("\n== done", flush=True)
    for card in cards:
        lat, acc = card["latency"], card["accuracy"]
        print(f"{card['device']['name']} <= {lat['budget_ms']:g} ms: {card['precision']} test accuracy "
              f"{100 * acc[acc['shipped']]:.2f}%, measured {lat['measured']['median_ms']:.3f} ms, "
              f"{card['size_bytes']:,} bytes" + (f", peak memory {card['memory']['predicted']['peak_bytes'] / 1024:,.0f} KiB"
                                                 if card.get("memory") else ""))
    print("\ntime per stage:")
    clock.finish(workdir.timings_file)
    return cards
