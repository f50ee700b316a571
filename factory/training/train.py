"""Training a supernet into a work directory (``Workdir``), resumably."""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path

from factory.core.backend import keras, tf
from factory.training.data import ImageData, make_dataset
from factory.core.errors import FactoryError
from factory.training.portable.recipe import TrainConfig, epochs_for, loss, make_optimizer, recalibrate_batch_norm
from factory.nas.space import SearchSpace, SubnetConfig
from factory.nas.supernet import Supernet
from factory.training.workdir import Workdir, transfer_source, writes_workdir


class SortChannels(keras.callbacks.Callback):
    """Re-order hidden channels by importance at the start of every epoch after the first."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch > 0:
            self.model.sort_channels()


def train_model(model: keras.Model, data: ImageData, config: TrainConfig, verbose: int = 2,
                backup_dir: str | Path | None = None) -> float:
    """Train a plain Keras model from scratch as the supernet is trained (optimizer, schedule,
    label smoothing, augmentation): the fair standalone baseline. Returns the wall seconds.

    Its batch-norm statistics are then recalibrated, as every subnet's are before it is
    evaluated. With ``backup_dir``, an interrupted run resumes from its last finished epoch."""
    n = data.num_classes
    data = data.resized(model.input_shape[1])  # the factory's one resize, as every subnet's input gets
    train = make_dataset(data.x_train, data.y_train, config.batch_size, training=True, flip=data.flip,
                         seed=config.seed)
    train = train.map(lambda x, y: (x, tf.one_hot(y, n)))
    model.compile(optimizer=make_optimizer(config, int(train.cardinality().numpy()), model.trainable_variables),
                  loss=loss(config),
                  metrics=[keras.metrics.CategoricalAccuracy(name="acc")])
    start = time.time()
    callbacks = [keras.callbacks.BackupAndRestore(str(backup_dir))] if backup_dir else []
    model.fit(train, epochs=config.epochs, verbose=verbose, callbacks=callbacks)
    recalibrate_batch_norm(model, calibration_batches(data, config).map(lambda x, y: x))
    return time.time() - start


def calibration_batches(data: ImageData, config: TrainConfig):
    return data.calibration(config.calibration_images, config.batch_size)


def _check_workdir(workdir: Workdir, space: SearchSpace, data: ImageData, config: TrainConfig):
    """Refuse a work directory that belongs to another space, data set or schedule."""
    if workdir.space_file.exists():
        recorded = workdir.space().fingerprint
        if recorded != space.fingerprint:
            raise FactoryError(
                f"{workdir} holds a supernet of another search space (fingerprint {recorded}, "
                f"asked for {space.name} {space.fingerprint}): use another --workdir"
            )
    if workdir.data_file.exists():
        recorded = workdir.data_record()
        if recorded.get("task", "classification") != data.task:
            raise FactoryError(f"{workdir} was trained for {recorded.get('task', 'classification')}, not "
                               f"{data.task}: use another --workdir")
        if recorded.get("classes") != data.class_names:
            raise FactoryError(
                f"{workdir} was trained on data with classes {recorded.get('classes')}, not "
                f"{data.class_names}: use another --workdir"
            )
    if workdir.train_config_file.exists() and not workdir.supernet_dir.exists():
        recorded = {**dataclasses.asdict(TrainConfig()), **workdir.train_config()}  # fields added since: defaults
        if recorded != dataclasses.asdict(config):
            diff = {k: (recorded.get(k), v) for k, v in dataclasses.asdict(config).items()
                    if recorded.get(k) != v}
            raise FactoryError(
                f"{workdir} holds an interrupted run with other settings {diff} "
                "(recorded, asked): rerun with the recorded settings or use another --workdir"
            )


def transfer_weights(source: Supernet, target: Supernet) -> int:
    """Copy every weight of ``source`` into ``target`` but the classifier's, which stays freshly initialised for
    the new classes; the batch-norm statistics come too (every subnet is recalibrated before use anyway).
    Returns the number of weights copied."""
    copied = 0
    for mine, theirs in zip(target.layers, source.layers):
        if mine.name != "classifier" and mine.weights:
            mine.set_weights(theirs.get_weights())
            copied += len(mine.weights)
    return copied


def build_supernet(space: SearchSpace, head, config: TrainConfig) -> Supernet:
    return Supernet(space, head, n_random=config.n_random,
                    label_smoothing=config.label_smoothing,
                    zero_init_residual=config.zero_init_residual, seed=config.seed,
                    anchored_statistics=bool(config.pretrained))


@writes_workdir
def train_supernet(data: ImageData, space: SearchSpace, workdir: Workdir,
                   config: TrainConfig = TrainConfig(), *, strategy=None, callbacks=(),
                   verbose: int | None = None) -> Supernet:
    """Train (or resume training) a supernet in ``workdir`` and return it.

    A finished work directory is loaded instead of retrained; an interrupted one
    resumes from its last completed epoch.
    """
    data = data.resized(space.resolutions[-1])
    _check_workdir(workdir, space, data, config)
    source = transfer_source(config.init_from, space) if config.init_from else None
    if workdir.trained:
        done = workdir.training()["epochs"]
        if done >= config.epochs:
            print(f"{workdir} already holds a supernet trained for {done} epochs; loading it")
            return workdir.supernet()
        raise FactoryError(
            f"{workdir} holds a supernet trained for {done} epochs: train {config.epochs} "
            "epochs in another --workdir"
        )
    workdir.record_start(space, data.summary(), dataclasses.asdict(config))

    strategy = strategy or tf.distribute.get_strategy()
    train_ds = make_dataset(data.x_train, data.y_train, config.batch_size, training=True,
                            flip=data.flip, seed=config.seed)
    steps = int(train_ds.cardinality().numpy())
    epochs = epochs_for(config, steps)
    if epochs > config.epochs:
        print(f"{steps} steps an epoch: training {epochs} epochs to reach {config.min_steps} steps", flush=True)
    with strategy.scope():
        supernet = build_supernet(space, data.head, config)
        supernet.compile(optimizer=make_optimizer(dataclasses.replace(config, epochs=epochs), steps,
                                                  supernet.trainable_variables))
    if config.schedule == "progressive":
        supernet.shrink_progressively(epochs * steps)
    pretrained = _start_from_pretrained(supernet, data, workdir, config) if config.pretrained else None
    init = None
    if source is not None:  # an interrupted run's backup, restored by fit, overrides these weights
        origin = source.data_record()
        init = {"workdir": str(source.path.resolve()), "data": origin.get("name"), "classes": origin.get("classes"),
                "epochs": source.training()["epochs"]}
        transfer_weights(source.supernet(), supernet)
        print(f"starting from the supernet of {source} ({init['epochs']} epochs on {init['data']}, "
              f"{len(init['classes'])} classes); the classifier is new, for {data.num_classes} classes", flush=True)
    backup = workdir.backup_dir
    if backup.is_dir() and any(backup.iterdir()):
        if not _has_checkpoint(backup):  # killed (or out of disk) while saving the first epoch
            shutil.rmtree(backup)
            print(f"restarting the interrupted run in {workdir}: it had completed no epoch")
        else:
            print(f"resuming the interrupted run in {workdir} after epoch {len(_logged_epochs(workdir))} of "
                  f"{epochs}")
    cbs = [keras.callbacks.BackupAndRestore(str(backup)),
           keras.callbacks.CSVLogger(str(workdir.train_log), append=True),
           keras.callbacks.TensorBoard(str(workdir.tensorboard_dir), write_graph=False)]
    if config.sort_channels:
        cbs.insert(0, SortChannels())
    start = time.time()
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    supernet.fit(train_ds, epochs=epochs, callbacks=cbs + list(callbacks), verbose=verbose)
    seconds = time.time() - start
    shutil.rmtree(backup, ignore_errors=True)

    val = make_dataset(data.x_val, data.y_val, config.batch_size, training=False)
    accuracy = {}
    for label, subnet in (("largest", SubnetConfig.largest(space)), ("smallest", SubnetConfig.smallest(space))):
        supernet.recalibrate(subnet, calibration_batches(data, config))
        accuracy[label] = supernet.evaluate_subnet(subnet, val)
    workdir.save_supernet(supernet, {"epochs": epochs, "seconds_this_run": round(seconds, 1),
                                     "val_accuracy_recalibrated": accuracy, "space_fingerprint": space.fingerprint,
                                     "init_from": init, "pretrained": pretrained})
    print(f"val accuracy after BN recalibration: largest {accuracy['largest']:.4f}, "
          f"smallest {accuracy['smallest']:.4f}")
    return supernet


def _start_from_pretrained(supernet: Supernet, data: ImageData, workdir: Workdir, config: TrainConfig) -> dict:
    """Load the ImageNet weights, train (or reload) the classifier on their frozen features, and make the frozen
    network the teacher; returns what the card says of it. An interrupted run's backup, restored by ``fit``,
    overrides these weights; the classifier is saved, so a resumed run has the same teacher."""
    from factory.nas.pretrained import load_into_supernet, load_pretrained
    from factory.training.teacher import fit_head, load_head, save_head, teacher_logits_fn, teacher_model

    weights = load_pretrained(config.pretrained, supernet.space)
    load_into_supernet(supernet, weights)
    source = weights.source
    record = {"name": source.name, "licence": source.licence, "origin": source.origin,
              "reference_subnet": weights.subnet.to_dict(),
              "teacher": config.teacher and supernet.task_head.pretrained_classifier}
    if not supernet.task_head.pretrained_classifier:
        print(f"starting from {source.name} ({source.licence}): its backbone, with a new "
              f"{supernet.task_head.task} head", flush=True)
        return record
    if workdir.teacher_head_file.exists():
        head, accuracy = load_head(workdir.teacher_head_file)
    else:
        head, accuracy = fit_head(weights, data.resized(weights.subnet.resolution),
                                  label_smoothing=config.label_smoothing, seed=config.seed)
        save_head(workdir.teacher_head_file, head, accuracy)
    supernet.classifier.set_weights(head)
    print(f"starting from {source.name} ({source.licence}): its frozen features with a new classifier score "
          f"{accuracy:.4f} on the validation split{'; every subnet learns from it' if config.teacher else ''}",
          flush=True)
    if config.teacher:
        supernet.set_teacher(teacher_logits_fn(teacher_model(weights, head)))
    return {**record, "head_val_accuracy": round(accuracy, 4)}


def _has_checkpoint(backup: Path) -> bool:
    """Whether BackupAndRestore completed a save (it writes under a per-worker subfolder, ``chief/``)."""
    return any(tf.train.latest_checkpoint(str(d)) for d in (backup, *backup.iterdir()) if d.is_dir())


def _logged_epochs(workdir: Workdir) -> list[str]:
    """The epochs train_log.csv records as completed (one row each after its header)."""
    path = workdir.train_log
    return path.read_text().splitlines()[1:] if path.exists() else []
