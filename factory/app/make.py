"""The one-command factory: data and budgets in, one int8 bundle per (device, budget) out.

Every stage leaves its output in the ``Workdir`` and is skipped when that output is
already there and belongs to this space, so an interrupted ``make`` is resumed by
running it again. Tables come first, so a budget no subnet meets fails before training.
"""

from __future__ import annotations

from devices.profile import DeviceProfile
from export.bundle import is_complete
from export.config import ExportConfig
from factory.app.stages import export_within_budget, search_workdir
from factory.core.files import read_json
from factory.nas.space import SearchSpace
from factory.search.strategies import Constraints, SearchConfig, check_budgets
from factory.training.data import load_data
from factory.training.portable.images import DEFAULT_RESIZE, check_data
from factory.training.portable.recipe import TrainConfig
from factory.training.train import train_supernet
from factory.training.workdir import Workdir
from latency_tables.resolve import ensure_table
from latency_tables.table import CALIBRATE_N


def _stage(title: str):
    print(f"\n== {title}", flush=True)


def make(data: str, profiles: list[DeviceProfile], budgets_ms: list[float], workdir: Workdir, *,
         space: SearchSpace, train: TrainConfig = TrainConfig(), search: SearchConfig = SearchConfig(),
         export: ExportConfig = ExportConfig(), calibrate_n: int = CALIBRATE_N,
         resize: str = DEFAULT_RESIZE) -> list[dict]:
    """Run every stage that has not run yet; return the model card of each bundle.

    A trained work directory keeps its own space and data (and ``resize`` policy): ``space`` and ``resize``
    then only apply to a new one."""
    trained = workdir.trained
    space = workdir.space() if trained else space
    num_classes = len(workdir.data_record()["classes"]) if trained else len(check_data(data))

    _stage("1/4 latency tables")  # first: a budget no subnet can meet fails before any training
    tables = {p.name: ensure_table(space, p, workdir.table_file(space, p.name), workdir.calibration_dir(p.name),
                                   num_classes, calibrate_n) for p in profiles}
    for device, table in tables.items():
        for budget in budgets_ms:
            check_budgets({device: table}, Constraints({device: budget}))

    _stage("2/4 supernet")
    if trained:
        print(f"{workdir} already holds a trained supernet ({workdir.training()['epochs']} epochs)")
    else:
        loaded = load_data(data, seed=train.seed, image_size=space.resolutions[-1], resize=resize,
                           cache=workdir.cache_dir)
        print(f"data {loaded.name}: {len(loaded.y_train)} train / {len(loaded.y_val)} val / "
              f"{len(loaded.y_test)} test images, {loaded.num_classes} classes")
        train_supernet(loaded, space, workdir, train)

    _stage("3/4 accuracy predictor and search")
    results = search_workdir(workdir, tables, budgets_ms, data=data, config=search, reuse=True)

    _stage("4/4 export")
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
    _stage("done")
    for card in cards:
        lat, acc = card["latency"], card["accuracy"]
        print(f"{card['device']['name']} <= {lat['budget_ms']:g} ms: {card['precision']} test accuracy "
              f"{100 * acc[acc['shipped']]:.2f}%, measured {lat['measured']['median_ms']:.3f} ms, "
              f"{card['size_bytes']:,} bytes")
    return cards
