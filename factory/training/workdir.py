"""The work directory: the one place that names its files, with typed loaders for what they hold."""

from __future__ import annotations

import functools
from pathlib import Path

from factory.core.errors import FactoryError
from factory.core.lock import command_line, hold
from factory.core.files import read_json, write_json
from factory.nas.space import SearchSpace, SubnetConfig, load_space, space_document
from factory.training.portable.images import DEFAULT_RESIZE


class Workdir:
    """What every stage leaves in a work directory, by name.

    Each stage writes its output atomically and is skipped when that output is already
    there and belongs to the same space, so an interrupted run resumes by running again::

        space.json               the search space and its fingerprint
        data.json                the data's name, source, classes, image size and split seed
        cache/                   an image folder's splits decoded once, read a batch at a time
        train_config.json        the training settings (a resumed run must match them)
        teacher_head.npz         with pretrained weights: the classifier trained on their frozen features
        backup/                  Keras BackupAndRestore state, saved every epoch, removed when done
        train_log.csv            one row per epoch (CSVLogger)
        tensorboard/             TensorBoard logs
        supernet/                the trained weights and model config
        training.json            epochs done, recalibrated validation accuracy, wall time
        tables/SPACE__DEVICE.json    latency tables built here, calibrate__DEVICE/ their calibration runs
        subnet_evals.json        validation accuracy of evaluated subnets (resumable)
        predictor/               the accuracy predictor and its held-out report
        search/DEVICE__Bms.json  one search result per (device, budget)
        bundles/DEVICE__Bms/     one bundle per (device, budget)
        pareto__DEVICE.png       accuracy against predicted latency
        diverse__DEVICE.json/.png    a diverse Pareto set (``factory pareto --diverse K``)
        factory.log              the last command's native logging (and a bug's traceback)
        .lock                    held by the one process writing here (its PID, host and command)

    Checks that need no TensorFlow (``check_trained``) stay cheap: the supernet and the data
    are imported only when loaded.
    """

    def __init__(self, path: str | Path, wait: bool = False):
        self.path = Path(path).expanduser()
        self.wait = wait  # a writer queues behind another instead of being refused
        self._supernet = None  # loaded (or trained) once per Workdir: its traced functions are reused by later stages

    def writing(self):
        """Hold the directory's lock while writing it (``factory.core.lock``): a second writer is refused, or waits."""
        return hold(self.path, command_line(), self.wait)

    def __repr__(self) -> str:
        return f"Workdir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    # ----------------------------------------------------------------- files
    @property
    def space_file(self) -> Path:
        return self.path / "space.json"

    @property
    def data_file(self) -> Path:
        return self.path / "data.json"

    @property
    def train_config_file(self) -> Path:
        return self.path / "train_config.json"

    @property
    def cache_dir(self) -> Path:
        return self.path / "cache"

    @property
    def backup_dir(self) -> Path:
        return self.path / "backup"

    @property
    def train_log(self) -> Path:
        return self.path / "train_log.csv"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    @property
    def supernet_dir(self) -> Path:
        return self.path / "supernet"

    @property
    def teacher_head_file(self) -> Path:
        return self.path / "teacher_head.npz"

    @property
    def training_file(self) -> Path:
        return self.path / "training.json"

    @property
    def subnet_evals_file(self) -> Path:
        return self.path / "subnet_evals.json"

    @property
    def predictor_dir(self) -> Path:
        return self.path / "predictor"

    @property
    def log_file(self) -> Path:
        return self.path / "factory.log"

    @property
    def timings_file(self) -> Path:
        """Wall time of each stage of the last ``factory make`` run."""
        return self.path / "timings.json"

    def table_file(self, space: SearchSpace, device: str, head) -> Path:
        task = "" if head.task == "classification" else f"-{head.task}"
        return self.path / "tables" / f"{space.name}{task}__{device}.json"

    def calibration_dir(self, device: str) -> Path:
        return self.path / "tables" / f"calibrate__{device}"

    def search_result_file(self, device: str, budget_ms: float) -> Path:
        return self.path / "search" / f"{device}__{budget_ms:g}ms.json"

    def bundle_dir(self, device: str, budget_ms: float) -> Path:
        return self.path / "bundles" / f"{device}__{budget_ms:g}ms"

    def pareto_png(self, device: str) -> Path:
        return self.path / f"pareto__{device}.png"

    def diverse_file(self, device: str, suffix: str = ".json") -> Path:
        return self.path / f"diverse__{device}{suffix}"

    # ----------------------------------------------------------------- state
    @property
    def trained(self) -> bool:
        """``factory train`` finished here (its supernet and record are written)."""
        return self.training_file.is_file()

    @property
    def pretrained(self) -> dict | None:
        """What the trained supernet started from when it started from ImageNet weights (its name and the subnet that
        holds it), else None; a pretrained run's defaults differ: fewer evaluations, post-training int8."""
        return (self.training().get("pretrained") or None) if self.trained else None

    def check_trained(self) -> "Workdir":
        if not (self.supernet_dir / "config.json").is_file():
            raise FactoryError(f"{self.path} holds no trained supernet: run `factory train --workdir {self.path}` first")
        return self

    # --------------------------------------------------------------- loaders
    def space(self) -> SearchSpace:
        return load_space(self.space_file)

    def data_record(self) -> dict:
        """What ``data.json`` says of the training data (``ImageData.summary``)."""
        return read_json(self.data_file)

    def training(self) -> dict:
        return read_json(self.training_file)

    def train_config(self) -> dict:
        return read_json(self.train_config_file)

    def subnet_evals(self) -> list[dict]:
        return read_json(self.subnet_evals_file)["results"] if self.subnet_evals_file.exists() else []

    def search_results(self, device: str) -> list[dict]:
        """Every search result of ``device`` written here, by budget file name."""
        return [read_json(p) for p in sorted((self.path / "search").glob(f"{device}__*ms.json"))]

    def search_result(self, device: str, budget_ms: float) -> dict | None:
        """The result of (device, budget) if it was searched for this work directory's space."""
        path = self.search_result_file(device, budget_ms)
        if not path.exists():
            return None
        result = read_json(path)
        return result if result.get("space_fingerprint") == read_json(self.space_file).get("fingerprint") else None

    def data(self, spec: str | None = None):
        """The data this work directory was trained on (``spec`` when given: the same classes, other files)."""
        from factory.training.data import load_data

        recorded = self.data_record()
        spec = spec or recorded.get("source")
        if not spec:
            raise FactoryError(f"{self.data_file} does not say where its data came from: pass --data")
        loaded = load_data(spec, seed=recorded.get("seed", 0), image_size=recorded.get("image_size"),
                           resize=recorded.get("resize", DEFAULT_RESIZE), cache=self.cache_dir)
        if loaded.class_names != recorded["classes"]:
            raise FactoryError(f"{spec} has classes {loaded.class_names}, {self.path} was trained on "
                               f"{recorded['classes']}: pass the training data")
        return loaded

    def anchor_subnets(self) -> list:
        """The pretrained network at every resolution of the space (none for a supernet not started from one): the
        subnets that hold it exactly, evaluated and searched beside the random ones."""
        import dataclasses

        from factory.nas.space import SubnetConfig

        pretrained = self.pretrained
        if not pretrained:
            return []
        reference = SubnetConfig.from_dict(pretrained["reference_subnet"])
        return [dataclasses.replace(reference, resolution=r) for r in reversed(self.space().resolutions)]

    def teacher(self):
        """The frozen pretrained teacher of a supernet trained from pretrained weights (its classifier as trained
        first), or None."""
        pretrained = self.pretrained
        if not pretrained or not self.teacher_head_file.exists():
            return None
        from factory.nas.pretrained import load_pretrained
        from factory.training.teacher import load_head, teacher_model

        return teacher_model(load_pretrained(pretrained["name"], self.space()), load_head(self.teacher_head_file)[0])

    def head(self):
        """The task head of the trained supernet, from its saved config (without loading its weights)."""
        from factory.nas.heads import head_from_dict

        config = read_json(self.check_trained().supernet_dir / "config.json")
        return head_from_dict(config.get("head") or {"num_classes": config["num_classes"]})

    def supernet(self):
        """The trained supernet, loaded on the first call. Every user recalibrates a subnet's batch norm before
        using it, so one object serves every stage of a run, and its graphs are traced once (seconds each)."""
        from factory.nas.supernet import Supernet

        if self._supernet is None:
            path = self.check_trained().supernet_dir
            config = read_json(path / "config.json")
            supernet = Supernet(**{k: v for k, v in config.items() if k != "name"})
            supernet.load_weights(str(path / "weights")).expect_partial()
            self._supernet = supernet
        return self._supernet

    # ---------------------------------------------------------------- writers
    def record_start(self, space: SearchSpace, data_summary: dict, train_config: dict):
        """What a training run fixes before its first epoch: space, data and settings."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.space_file, space_document(space))
        write_json(self.data_file, data_summary)
        write_json(self.train_config_file, train_config)

    def save_supernet(self, supernet, record: dict):
        """The trained weights and config, then ``training.json``: a work directory is trained once both are."""
        from factory.core.files import atomic_directory

        with atomic_directory(self.supernet_dir) as tmp:
            supernet.save_weights(str(tmp / "weights"))
            write_json(tmp / "config.json", supernet.get_config())
        write_json(self.training_file, record)
        self._supernet = supernet


def writes_workdir(function):
    """Run ``function`` holding the lock of the ``Workdir`` among its arguments: the Python API takes the lock the
    CLI's commands take."""
    @functools.wraps(function)
    def locked(*args, **kwargs):
        workdir = kwargs.get("workdir") or next(a for a in args if isinstance(a, Workdir))
        with workdir.writing():
            return function(*args, **kwargs)

    return locked


def transfer_source(path: str | Path, space: SearchSpace | None = None) -> Workdir:
    """The work directory a transfer (``--init-from``) starts from, refused unless it holds a trained supernet
    (of ``space``, when given: weights only transfer between equal spaces)."""
    source = Workdir(path).check_trained()
    recorded = source.space()
    if space is not None and recorded.fingerprint != space.fingerprint:
        raise FactoryError(f"--init-from {source} holds a supernet of space {recorded.name} ({recorded.fingerprint}), "
                           f"not {space.name} ({space.fingerprint}): transfer needs the same space; pass --space "
                           f"{recorded.name} or a source trained in {space.name}")
    return source


def load_subnet(path: str | Path) -> tuple[SubnetConfig, float | None]:
    """A SubnetConfig from a `factory search` result or a SubnetConfig JSON, with its budget if any."""
    doc = read_json(path)
    if "subnet" in doc:
        return SubnetConfig.from_dict(doc["subnet"]), doc.get("budget_ms")
    return SubnetConfig.from_dict(doc), None
