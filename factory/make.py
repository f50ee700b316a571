"""The one-command factory: data and budgets in, one int8 bundle per (device, budget) out.

Every stage leaves its output in the work directory and is skipped when that output is
already there and belongs to this space, so an interrupted ``make`` is resumed by
running it again:

    tables/SPACE__DEVICE.json     latency tables (a shipped one is used when it was measured on
                                  this hardware; a built one is calibrated on whole subnets); first,
                                  so a budget no subnet meets fails before training
    supernet/ training.json       train          (resumes from the last epoch)
    subnet_evals.json predictor/  evaluations and the accuracy predictor
    search/DEVICE__Bms.json       one search result per (device, budget)
    bundles/DEVICE__Bms/          one bundle per (device, budget)
"""

from __future__ import annotations

from pathlib import Path

from devices.profile import load_profile
from export.bundle import is_complete
from export.pipeline import ExportConfig, export_subnet
from factory.data import load_data
from factory.errors import FactoryError
from factory.files import read_json
from factory.images import check_data
from factory.search import Constraints, check_budgets
from factory.space import SubnetConfig, get_space, load_space
from factory.train import TrainConfig, train_supernet
from factory.workflow import search_workdir
from latency_tables.builder import build_table
from latency_tables.table import MIN_CALIBRATION, LatencyTable, default_table_path
from latency_tables.validate import calibrate_table


def _stage(title: str):
    print(f"\n== {title}", flush=True)


def ensure_table(space, device: str, workdir: Path, num_classes: int, calibrate_n: int = 20) -> Path:
    """The shipped table of (space, device) when it was measured on this hardware, else one built
    (resumably) in the work directory and calibrated on ``calibrate_n`` whole subnets."""
    profile = load_profile(device)
    shipped = default_table_path(space, profile)
    if shipped.exists():
        try:
            LatencyTable.load(shipped, space, profile)
            print(f"{profile.name}: shipped latency table {shipped}")
            return shipped
        except FactoryError as exc:
            print(f"{profile.name}: not using the shipped table: {exc}")
    path = workdir / "tables" / f"{space.name}__{profile.name}.json"
    if not (path.exists() and read_json(path).get("complete")):
        print(f"{profile.name}: measuring every layer of space {space.name} into {path}")
        build_table(space, profile, path, num_classes=num_classes)
    table = LatencyTable.load(path, space, profile)
    if calibrate_n >= MIN_CALIBRATION and table.correction is None:
        print(f"{profile.name}: calibrating {path} on {calibrate_n} whole subnets")
        report = calibrate_table(table, profile, calibrate_n, workdir / "tables" / f"calibrate__{profile.name}",
                                 verbose=False)
        held_out = report["corrected_cross_validated"]
        print(f"{profile.name}: stored correction; held-out MAPE {held_out['mape_percent']:.2f}% "
              f"(table alone {report['uncorrected']['mape_percent']:.2f}%)")
    print(f"{profile.name}: latency table {path}")
    return path


def bundle_path(workdir: Path, device: str, budget: float) -> Path:
    return workdir / "bundles" / f"{device}__{budget:g}ms"


def make(data: str, devices: list[str], budgets_ms: list[float], workdir: str | Path, *, space: str = "default",
         train: TrainConfig = TrainConfig(), n_eval: int = 300, strategy: str = "evolution",
         export: ExportConfig = ExportConfig(), calibrate_n: int = 20) -> list[dict]:
    """Run every stage that has not run yet; return the model card of each bundle."""
    workdir = Path(workdir)
    trained = (workdir / "training.json").exists()
    search_space = load_space(workdir / "space.json") if trained else get_space(space)
    num_classes = len(read_json(workdir / "data.json")["classes"]) if trained else len(check_data(data))

    _stage("1/4 latency tables")  # first: a budget no subnet can meet fails before any training
    given = {load_profile(d).name: d for d in devices}  # a shipped profile's name or a profile file
    tables = {d: ensure_table(search_space, d, workdir, num_classes, calibrate_n) for d in devices}
    for d, path in tables.items():
        table = LatencyTable.load(path, search_space, d)
        for budget in budgets_ms:
            check_budgets({table.device: table}, Constraints({table.device: budget}))

    _stage("2/4 supernet")
    if trained:
        print(f"{workdir} already holds a trained supernet ({read_json(workdir / 'training.json')['epochs']} epochs)")
    else:
        loaded = load_data(data, seed=train.seed)
        print(f"data {loaded.name}: {len(loaded.y_train)} train / {len(loaded.y_val)} val / "
              f"{len(loaded.y_test)} test images, {loaded.num_classes} classes")
        train_supernet(loaded, search_space, workdir, train)

    _stage("3/4 accuracy predictor and search")
    results = search_workdir(workdir, devices, budgets_ms, strategy=strategy, n_eval=n_eval,
                             seed=train.seed, tables=tables, data=data, reuse=True)

    _stage("4/4 export")
    cards = []
    for result in results:
        out = bundle_path(workdir, result["device"], result["budget_ms"])
        if is_complete(out):
            print(f"{out} is already there")
            cards.append(read_json(out / "model_card.json"))
            continue
        device = given[result["device"]]
        cards.append(export_subnet(workdir, SubnetConfig.from_dict(result["subnet"]), device, out,
                                   budget_ms=result["budget_ms"], config=export, data=data, table=tables[device]))
    _stage("done")
    for card in cards:
        lat, acc = card["latency"], card["accuracy"]
        print(f"{card['device']['name']} <= {lat['budget_ms']:g} ms: {card['precision']} test accuracy "
              f"{100 * acc[acc['shipped']]:.2f}%, measured {lat['measured']['median_ms']:.3f} ms, "
              f"{card['size_bytes']:,} bytes")
    return cards
