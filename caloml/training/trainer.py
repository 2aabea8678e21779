"""The shared trainer: strategy, run directory, checkpoints, resume, TensorBoard, progress and model selection.

:func:`train` runs any :class:`~caloml.training.task.TrainingTask` with ``model.fit`` under the configured
``tf.distribute`` strategy:

1. the strategy is created first (it must see TensorFlow's devices before anything else does);
2. the run directory is checked (resume, refuse or move aside);
3. the task prepares its data (simulating and caching the embedded default when no data is given), then the
   resolved configuration is written to the run directory;
4. inside ``strategy.scope()`` the task builds and compiles the model; the last checkpoint is restored when the
   run resumes, or ``trainer.init_from`` weights are loaded for transfer training;
5. ``fit`` runs with a checkpoint after every epoch, the selection metric per epoch, TensorBoard logs and a
   progress bar;
6. the epoch with the best selection metric among the last ``selection_window`` is restored and saved as
   ``model.keras``; with ``trainer.export`` the exporter handed over by the command line exports it.

Resuming restores the weights, the optimizer state, the models' random-draw counters and the epoch counter, and
the data position: the seeded dataset skips the batches of the epochs done, so a resumed run sees the batches of
the uninterrupted run (bit-identical with ``tf.config.experimental.enable_op_determinism``). Under
``multi_worker`` only the chief writes the run directory; the other workers checkpoint into a scratch directory
that is removed at the end (or, after a kill, by the next run: its name carries the process id).

See ``docs/training.md``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import caloml
from caloml.atomic_files import (
    TEMPORARY_SUFFIX,
    atomic_write_json,
    atomic_write_with,
    remove_stale_temporaries,
    temporary_name,
)
from caloml.data.input_errors import pipeline_errors
from caloml.errors import CalomlError
from caloml.models.precision import resolve_policy
from caloml.training.config import config_to_dict, write_config
from caloml.training.determinism import apply_determinism, deterministic_dataset
from caloml.training.nonfinite import NonFiniteLossGuard, check_on_nonfinite
from caloml.training.run_directory import RunDirectory
from caloml.training.run_logging import logging_callbacks
from caloml.training.strategy import is_chief, make_strategy, worker_tag
from caloml.training.task import SelectionMetric, TrainingTask


@dataclass
class TrainingResult:
    """What a run produced.

    Attributes:
        run_dir: the run directory.
        model_path: ``RUN/model.keras`` (None on non-chief workers).
        selected_epoch: epoch (1-based) of the selected model.
        history: per-epoch metrics of this invocation and the earlier ones of a resumed run.
        resumed_from_epoch: epochs already done when this invocation started (0: a fresh run).
        seconds: wall time of this invocation.
        export_dir: the serving export, when ``trainer.export`` is set.
    """

    run_dir: Path
    model_path: Path | None
    selected_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int = 0
    seconds: float = 0.0
    export_dir: Path | None = None
    model: keras.Model | None = field(default=None, repr=False)


#: What exports a trained model after training: ``export_trained(model, config, run_dir)`` returns the export
#: directory (each exporter module ``caloml.export.<model>`` provides one; the command line resolves it by name).
Exporter = Callable[[keras.Model, Any, Path], Path]


def train(
    task: TrainingTask,
    config: Any,
    *,
    overwrite: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    exporter: Exporter | None = None,
) -> TrainingResult:
    """Train ``task`` with the resolved ``config`` (see the module docstring); returns the result.

    ``strategy``: one already made from ``config.runtime`` (a command line makes it before TensorFlow's runtime
    starts, which ``multi_worker`` and ``cpu_replicas`` need); by default it is made here.
    ``exporter``: called on the selected model when ``trainer.export`` is set (required then).
    Keras' process-wide dtype policy (``runtime.mixed_precision``) is restored when training ends, also on error.
    """
    if config.trainer.export and exporter is None:
        raise CalomlError(f"trainer.export is set but no exporter is given for {task.name}")
    if strategy is None:  # first: it must see TensorFlow's devices before anything else does
        strategy = make_strategy(config.runtime.strategy, cpu_replicas=config.runtime.cpu_replicas)
    policy = keras.mixed_precision.global_policy()
    try:
        if config.runtime.mixed_precision:  # bfloat16 without bfloat16 units: float32, with one line saying so
            keras.mixed_precision.set_global_policy(resolve_policy(config.runtime.mixed_precision))
        return _train(task, config, overwrite=overwrite, strategy=strategy, exporter=exporter)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _train(
    task: TrainingTask,
    config: Any,
    *,
    overwrite: bool,
    strategy: tf.distribute.Strategy,
    exporter: Exporter | None,
) -> TrainingResult:
    start = time.perf_counter()
    chief = is_chief(strategy)
    run_path = Path(config.runtime.run_dir) if config.runtime.run_dir else task.default_run_dir(config)
    config = replace(config, runtime=replace(config.runtime, run_dir=str(run_path)))
    run = RunDirectory(run_path)
    config_dict = config_to_dict(config)
    trainer = config.trainer
    if trainer.keep_checkpoints < max(trainer.selection_window, 1):
        raise CalomlError(
            f"trainer.keep_checkpoints ({trainer.keep_checkpoints}) must be at least trainer.selection_window "
            f"({trainer.selection_window}) so that the selected epoch can be restored"
        )
    check_on_nonfinite(trainer.on_nonfinite)
    resume = run.prepare(config_dict, overwrite=overwrite) if chief else run.has_checkpoint()
    data = task.prepare_data(config, chief=chief)
    if chief:
        run.path.mkdir(parents=True, exist_ok=True)
        write_config(config, run.config)
    deterministic = apply_determinism(config)  # seeds everything; op determinism with runtime.deterministic
    scratch = None if chief else worker_scratch_directory(worker_tag(strategy))
    checkpoint_dir = run.checkpoints if chief else scratch / "checkpoints"  # type: ignore[operator]

    with strategy.scope():
        model = task.build_model(config, data)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        checkpoint = tf.train.Checkpoint(model=model, epoch=epoch, **task.optimizers(model))
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir), max_to_keep=trainer.keep_checkpoints)
    latest = tf.train.latest_checkpoint(str(run.checkpoints))
    if resume and latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        print(f"resuming {run.path} after epoch {int(epoch.numpy())} ({latest})")
    elif trainer.init_from:
        _initialize_from(task, config, model, Path(trainer.init_from))
    initial_epoch = int(epoch.numpy())
    history = _read_history(run) if resume else []

    selection = task.selection_metric(config, data)
    guard = NonFiniteLossGuard(trainer.on_nonfinite, checkpoint_dir, optimizers=task.optimizers(model).values())
    callbacks: list[keras.callbacks.Callback] = [guard]  # first: a NaN epoch is never checkpointed
    steps = trainer.steps_per_epoch or task.steps_per_epoch(config, data)
    timer = EpochTimer(run, steps * trainer.global_batch_size) if chief else None
    if timer is not None:
        callbacks.append(timer)
    if selection is not None:  # before the checkpoint and logging callbacks, so that its value reaches their logs
        callbacks.append(SelectionLogger(selection, run, write=chief, timer=timer))
    callbacks.append(EpochCheckpoint(manager, epoch, run, history if chief else None, timer))
    log_dir = run.logs if chief else scratch / "logs"  # type: ignore[operator]
    callbacks += logging_callbacks(task, config, data, log_dir=log_dir, chief=chief)  # progress, TensorBoard

    if initial_epoch < trainer.epochs:
        dataset = strategy.distribute_datasets_from_function(
            lambda context: deterministic_dataset(
                _resumed_dataset(task.make_dataset(config, data, context), context, initial_epoch * steps),
                deterministic,
            )
        )
        _vector_step_outputs_for(model, strategy)
        records = task.input_records(config, data) if hasattr(task, "input_records") else []
        with pipeline_errors(records, where=f"the training data of {task.name}"):  # bad data: one line
            model.fit(
                dataset,
                epochs=trainer.epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps,
                callbacks=callbacks,
                verbose=0,  # the progress display is one of the logging callbacks
                shuffle=False,  # the task's dataset shuffles (seeded)
            )
    else:
        print(f"{run.path}: already trained for {initial_epoch} epochs (trainer.epochs = {trainer.epochs})")

    selected = _select_and_restore(checkpoint, manager, run, selection, trainer.selection_window, chief)
    result = TrainingResult(
        run_dir=run.path,
        model_path=None,
        selected_epoch=selected,
        history=history,
        resumed_from_epoch=initial_epoch,
        model=model,
    )
    if chief:
        _save_model_atomically(model, run.model)
        result.model_path = run.model
        if trainer.export and exporter is not None:
            result.export_dir = Path(exporter(model, config, run.path))
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    result.seconds = time.perf_counter() - start
    return result


def worker_scratch_directory(worker: str, root: Path | None = None) -> Path:
    """A new scratch directory for a non-chief ``worker``'s checkpoints and logs, in ``root`` (the system's
    temporary folder by default), after removing those of dead processes there: its name carries the host and
    process id (``.caloml-<worker>.caloml-tmp-<host>-<pid>-<random>.tmp``, :mod:`caloml.atomic_files`), so that a
    re-run cleans up after a killed run."""
    root = Path(root if root is not None else tempfile.gettempdir())
    remove_stale_temporaries(root)
    prefix = temporary_name(root / f"caloml-{worker}")
    return Path(tempfile.mkdtemp(prefix=prefix, suffix=TEMPORARY_SUFFIX, dir=root))


def _resumed_dataset(dataset: tf.data.Dataset, context: tf.distribute.InputContext, steps_done: int) -> Any:
    """The task's (seeded, repeated) dataset from the position after ``steps_done`` steps: a resumed run sees the
    batches the uninterrupted run would have seen (each step takes one batch per replica of this pipeline)."""
    if steps_done == 0:
        return dataset
    return dataset.skip(steps_done * (context.num_replicas_in_sync // context.num_input_pipelines))


def _vector_step_outputs_for(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Work around Keras 3.15 under ``MultiWorkerMirroredStrategy`` (nothing changes under other strategies).

    Keras 3.15 reduces every output of a step with ``strategy.reduce("MEAN", value, axis=0)`` under that strategy
    (``fit`` ignores ``distribute_reduction_method``), which fails on scalar losses: the step's outputs become
    vectors of one value (the epoch logs come from the metrics' results, scalars). Keras' other multi-worker
    failure, the symbolic build, is skipped by caloml's models themselves (:class:`caloml.models.base.CalomlModel`).
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    step = model.train_step

    def train_step_with_vector_outputs(data: Any) -> dict[str, tf.Tensor]:
        return {name: tf.reshape(value, [1]) for name, value in step(data).items()}

    model.train_step = train_step_with_vector_outputs


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: advance the epoch counter, save a checkpoint and append the metrics to ``history.json``."""

    def __init__(
        self,
        manager: tf.train.CheckpointManager,
        epoch: tf.Variable,
        run: RunDirectory,
        history: list[dict[str, float]] | None,
        timer: EpochTimer | None = None,
    ) -> None:
        super().__init__()
        self.manager = manager
        self.epoch = epoch
        self.run = run
        self.history = history
        self.timer = timer

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)
        if self.history is not None:
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
            self.history[:] = [h for h in self.history if h["epoch"] != epoch + 1] + [row]
            atomic_write_json(self.run.history, self.history)
            if self.timer is not None:
                self.timer.record(epoch + 1)


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock time of every epoch, in ``timing.json`` (seconds; the learning curve's time axis).

    Rows: ``epoch``, ``training_seconds`` (the steps), ``validation_seconds`` (the selection metric; recorded by
    :class:`SelectionLogger`), ``examples_seen`` (epochs x steps x global batch) and ``finished_unix`` (seconds since
    1970). Resumed runs append; timings are not part of ``history.json``, which must be exactly reproducible.
    """

    def __init__(self, run: RunDirectory, examples_per_epoch: int) -> None:
        super().__init__()
        self.run = run
        self.examples_per_epoch = int(examples_per_epoch)
        try:
            self.rows: list[dict[str, float]] = _read_json_list(run.timing)
            if not all(isinstance(row, dict) and isinstance(row.get("epoch"), int) for row in self.rows):
                raise ValueError("rows without an epoch")
        except (ValueError, TypeError, OSError) as error:  # timings are not essential: start the file afresh
            warnings.warn(f"{run.timing}: unreadable ({error}); it is started afresh", stacklevel=2)
            self.rows = []
        self.started = time.monotonic()
        self.training_seconds = 0.0
        self.validation_seconds = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = time.monotonic()
        self.validation_seconds = 0.0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.training_seconds = time.monotonic() - self.started

    def record(self, epoch: int) -> None:
        row = {
            "epoch": epoch,
            "training_seconds": round(self.training_seconds, 3),
            "validation_seconds": round(self.validation_seconds, 3),
            "examples_seen": epoch * self.examples_per_epoch,
            "finished_unix": round(time.time(), 3),
        }
        self.rows = [r for r in self.rows if r["epoch"] < epoch] + [row]
        atomic_write_json(self.run.timing, self.rows)


class SelectionLogger(keras.callbacks.Callback):
    """After every epoch: compute the selection metric, log it and record it in ``selection.json``."""

    def __init__(
        self, metric: SelectionMetric, run: RunDirectory, *, write: bool, timer: EpochTimer | None = None
    ) -> None:
        super().__init__()
        self.metric = metric
        self.run = run
        self.write = write
        self.timer = timer

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        started = time.monotonic()
        value = float(self.metric.compute(self.model))
        if self.timer is not None:
            self.timer.validation_seconds = time.monotonic() - started
        if logs is not None:
            logs[f"val_{self.metric.name}"] = value
        print(f"epoch {epoch + 1}: {self.metric.name} = {value:.4g}")
        if self.write:
            record = _read_selection(self.run, self.metric)
            record["epochs"] = [e for e in record["epochs"] if e["epoch"] != epoch + 1] + [
                {"epoch": epoch + 1, "value": value}
            ]
            atomic_write_json(self.run.selection, record)


def _read_history(run: RunDirectory) -> list[dict[str, float]]:
    return _read_json_list(run.history)


def _read_json_list(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    return list(json.loads(path.read_text()))


def _read_selection(run: RunDirectory, metric: SelectionMetric) -> dict[str, Any]:
    if run.selection.exists():
        record = json.loads(run.selection.read_text())
        if record.get("metric") == metric.name:
            return dict(record)
    return {"metric": metric.name, "description": metric.description, "lower_is_better": True, "epochs": []}


def _select_and_restore(
    checkpoint: tf.train.Checkpoint,
    manager: tf.train.CheckpointManager,
    run: RunDirectory,
    metric: SelectionMetric | None,
    window: int,
    chief: bool,
) -> int:
    """Restore the best epoch among the last ``window`` with a checkpoint; returns it (1-based)."""
    available = {int(Path(p).name.rsplit("-", 1)[1]): p for p in manager.checkpoints}
    if not available:
        return 0
    last = max(available)
    candidates = [e for e in available if e > last - window]
    chosen = last
    if metric is not None and run.selection.exists():
        record = json.loads(run.selection.read_text())
        values = {e["epoch"]: e["value"] for e in record["epochs"] if e["epoch"] in candidates}
        finite = {e: v for e, v in values.items() if math.isfinite(v)}
        if finite:
            chosen = min(finite, key=lambda e: (finite[e], -e))
        if chief:
            record.update(selected_epoch=chosen, window=sorted(candidates))
            atomic_write_json(run.selection, record)
    if chosen != last:
        checkpoint.restore(available[chosen]).assert_existing_objects_matched()
    print(f"selected epoch {chosen}" + (f" by {metric.name}" if metric is not None else " (the last)"))
    return chosen


def _initialize_from(task: TrainingTask, config: Any, model: keras.Model, source: Path) -> None:
    """Copy the weights of a run directory, ``.keras`` file or checkpoint prefix into ``model``."""
    if source.is_dir() and (source / "model.keras").exists():
        source = source / "model.keras"
    if source.suffix == ".keras":
        if not source.is_file():
            raise CalomlError(f"--init-from {source}: file not found")
        try:
            loaded = keras.saving.load_model(source, compile=False)
        except Exception as exc:  # any failure to load is the user's file
            raise CalomlError(f"--init-from {source}: cannot load the model ({type(exc).__name__})") from None
        task.check_init_source(config, loaded)
        try:
            model.set_weights(loaded.get_weights())
        except ValueError:
            raise CalomlError(f"--init-from {source}: the weights do not fit this model's architecture") from None
    else:
        prefix = tf.train.latest_checkpoint(str(source)) if source.is_dir() else str(source)
        if not prefix or not tf.io.gfile.exists(f"{prefix}.index"):
            raise CalomlError(f"--init-from {source}: no run directory, .keras file or checkpoint there")
        # the model tracks its optimizers, which the checkpoint restores too: their fresh state is put back
        optimizer_variables = [v for optimizer in task.optimizers(model).values() for v in optimizer.variables]
        fresh_state = [v.numpy() for v in optimizer_variables]
        try:
            tf.train.Checkpoint(model=model).restore(prefix).expect_partial().assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError):
            raise CalomlError(f"--init-from {source}: the checkpoint does not fit this model") from None
        for variable, value in zip(optimizer_variables, fresh_state, strict=True):
            variable.assign(value)
    print(f"initialized the weights from {source}")


def _save_model_atomically(model: keras.Model, path: Path) -> None:
    atomic_write_with(path, lambda tmp: keras.saving.save_model(model, tmp), keep_suffix=True)


def describe(result: TrainingResult) -> str:
    """A JSON summary of a run for the command line."""
    last = result.history[-1] if result.history else {}
    summary = {
        "run_dir": str(result.run_dir),
        "model": str(result.model_path) if result.model_path else None,
        "selected_epoch": result.selected_epoch,
        "resumed_from_epoch": result.resumed_from_epoch,
        "last_epoch_metrics": {k: round(v, 5) for k, v in last.items() if np.isfinite(v)},
        "export": str(result.export_dir) if result.export_dir else None,
        "seconds": round(result.seconds, 1),
        "caloml_version": caloml.__version__,
    }
    return json.dumps(summary, indent=2)
