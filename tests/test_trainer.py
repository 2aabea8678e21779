"""The shared trainer on a small regression task: checkpoints, resume, selection, transfer, outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

import caloml.training.trainer as trainer_module
from caloml.errors import CalomlError
from caloml.models.precision import resolve_policy
from caloml.training.config import TaskConfig, resolve_config
from caloml.training.task import SelectionMetric
from caloml.training.trainer import train


@dataclass
class LineData:
    slope: float = 2.0
    events: int = 64


@dataclass
class LineConfig(TaskConfig):
    data: LineData = field(default_factory=LineData)
    model: dict[str, float] = field(default_factory=dict)


class LineTask:
    """Fit y = slope x + 1 with one Dense unit; the selection metric can be scripted per epoch."""

    name = "line"
    config_class = LineConfig
    presets: dict[str, dict[str, Any]] = {}  # noqa: RUF012 - the protocol's class attribute

    def __init__(self, scripted_metric: list[float] | None = None) -> None:
        self.scripted = list(scripted_metric or [])
        self.weights_seen: list[np.ndarray] = []

    def default_run_dir(self, config: LineConfig) -> Path:
        raise AssertionError("tests always give a run directory")

    def prepare_data(self, config: LineConfig, *, chief: bool) -> tuple[np.ndarray, np.ndarray]:
        x = np.random.default_rng(0).normal(size=(config.data.events, 1)).astype(np.float32)
        return x, (config.data.slope * x + 1.0).astype(np.float32)

    def make_dataset(self, config: LineConfig, data: Any, input_context: tf.distribute.InputContext) -> Any:
        x, y = data
        batch = input_context.get_per_replica_batch_size(config.trainer.global_batch_size)
        return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(64, seed=config.runtime.seed).repeat().batch(batch)

    def steps_per_epoch(self, config: LineConfig, data: Any) -> int:
        return config.data.events // config.trainer.global_batch_size

    def build_model(self, config: LineConfig, data: Any) -> keras.Model:
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.Adam(0.05), "mse")
        model.optimizer.build(model.trainable_variables)
        return model

    def optimizers(self, model: keras.Model) -> dict[str, Any]:
        return {"optimizer": model.optimizer}

    def selection_metric(self, config: LineConfig, data: Any) -> SelectionMetric:
        x, y = data

        def compute(model: keras.Model) -> float:
            self.weights_seen.append(model.layers[0].kernel.numpy().copy())
            if self.scripted:
                return self.scripted.pop(0)
            return float(np.mean((model.predict(x, verbose=0) - y) ** 2))

        return SelectionMetric("mse", compute)

    def check_init_source(self, config: LineConfig, source: keras.Model) -> None:
        if not isinstance(source, keras.Sequential):
            raise CalomlError("not a line model")

    def export(self, model: keras.Model, config: LineConfig, run_dir: Path) -> Path | None:
        return None


def _config(run_dir: Path, *assignments: str) -> LineConfig:
    base = [f"runtime.run_dir={run_dir}", "runtime.progress=false", "trainer.global_batch_size=16"]
    return resolve_config(LineConfig, assignments=[*base, *assignments])


def test_training_writes_the_run_directory_and_lowers_the_loss(tmp_path):
    run = tmp_path / "run"
    result = train(LineTask(), _config(run, "trainer.epochs=3"))
    assert (run / "config.yaml").exists()
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.index")) == [
        "ckpt-1.index",
        "ckpt-2.index",
        "ckpt-3.index",
    ]
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]
    assert any((run / "logs").rglob("events.out.tfevents.*"))
    selection = json.loads((run / "selection.json").read_text())
    assert selection["metric"] == "mse"
    assert len(selection["epochs"]) == 3
    assert selection["selected_epoch"] == result.selected_epoch
    reloaded = keras.saving.load_model(run / "model.keras")
    x = np.array([[0.5]], np.float32)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), result.model.predict(x, verbose=0), rtol=1e-6)


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    first = train(LineTask(), _config(run, "trainer.epochs=2"))
    steps = 64 // 16
    assert int(first.model.optimizer.iterations.numpy()) == 2 * steps
    # the same command with more epochs continues: optimizer state, epoch counter and history carry over
    second = train(LineTask(), _config(run, "trainer.epochs=4"))
    assert second.resumed_from_epoch == 2
    assert int(second.model.optimizer.iterations.numpy()) == 4 * steps
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2, 3, 4]
    # timing.json: one row per epoch, the first run's rows kept, showers seen = epoch x steps x batch
    timing = json.loads((run / "timing.json").read_text())
    assert [row["epoch"] for row in timing] == [1, 2, 3, 4]
    assert [row["examples_seen"] for row in timing] == [64, 128, 192, 256]
    assert all(row["training_seconds"] > 0 for row in timing)
    # the same command again: nothing left to do, and the run is not restarted
    third = train(LineTask(), _config(run, "trainer.epochs=4"))
    assert third.resumed_from_epoch == 4
    assert json.loads((run / "timing.json").read_text()) == timing
    # an unreadable timing.json does not stop a resumed run: it starts afresh, with a warning
    (run / "timing.json").write_text("{not json")
    with pytest.warns(UserWarning, match="timing.json"):
        train(LineTask(), _config(run, "trainer.epochs=5"))
    assert [row["epoch"] for row in json.loads((run / "timing.json").read_text())] == [5]


def test_selection_restores_the_best_epoch_of_the_window(tmp_path):
    task = LineTask(scripted_metric=[5.0, 1.0, 3.0, 4.0])
    result = train(task, _config(tmp_path / "run", "trainer.epochs=4", "trainer.selection_window=3"))
    assert result.selected_epoch == 2  # the minimum, inside the last three epochs
    np.testing.assert_allclose(result.model.layers[0].kernel.numpy(), task.weights_seen[1])
    task = LineTask(scripted_metric=[0.1, 1.0, 3.0, 4.0])
    result = train(task, _config(tmp_path / "run2", "trainer.epochs=4", "trainer.selection_window=3"))
    assert result.selected_epoch == 2  # epoch 1 is better but outside the window


def test_init_from_copies_weights_but_not_the_optimizer(tmp_path, monkeypatch):
    source = train(LineTask(), _config(tmp_path / "a", "trainer.epochs=2"))
    steps = 64 // 16
    source_optimizer = {v.path: v.numpy().copy() for v in source.model.optimizer.variables}
    assert int(source.model.optimizer.iterations.numpy()) == 2 * steps
    state = {path: value for path, value in source_optimizer.items() if "learning_rate" not in path}
    assert len(state) == 5  # iterations, 2 x (m, v)
    assert all(np.any(value != 0) for value in state.values())
    # the state right after the initialization, before the first step of the new run
    seen: list[tuple[list[np.ndarray], dict[str, np.ndarray]]] = []
    initialize = trainer_module._initialize_from

    def record(task: Any, config: Any, model: keras.Model, path: Path) -> None:
        initialize(task, config, model, path)
        seen.append(([w.copy() for w in model.get_weights()], {v.path: v.numpy() for v in model.optimizer.variables}))

    monkeypatch.setattr(trainer_module, "_initialize_from", record)
    # from the run directory (its model.keras) and from its checkpoints (which also hold the source's optimizer)
    for name, init_from in (("b", tmp_path / "a"), ("b2", tmp_path / "a" / "checkpoints")):
        target = train(LineTask(), _config(tmp_path / name, "trainer.epochs=1", f"trainer.init_from={init_from}"))
        weights, optimizer = seen.pop()
        for copied, original in zip(weights, source.model.get_weights(), strict=True):
            np.testing.assert_array_equal(copied, original)  # the weights are the source's last epoch's
        fresh = {path: value for path, value in optimizer.items() if "learning_rate" not in path}
        assert len(fresh) == len(state)
        for path, value in fresh.items():  # a fresh optimizer: iteration 0, Adam's moments all zero
            assert not np.any(value), (name, path, value)
        assert target.resumed_from_epoch == 0
        assert int(target.model.optimizer.iterations.numpy()) == steps  # counted from 0, not from the source's 8
        first_epoch_loss = target.history[0]["loss"]
        assert first_epoch_loss < source.history[0]["loss"]  # starts where the source ended
    with pytest.raises(CalomlError, match=r"no run directory, \.keras file or checkpoint"):
        train(LineTask(), _config(tmp_path / "c", f"trainer.init_from={tmp_path / 'nothing'}"))


def test_keep_checkpoints_must_cover_the_selection_window(tmp_path):
    with pytest.raises(CalomlError, match="keep_checkpoints"):
        train(LineTask(), _config(tmp_path / "run", "trainer.keep_checkpoints=2", "trainer.selection_window=5"))


def test_the_dtype_policy_of_a_run_is_restored_afterwards_also_on_error(tmp_path):
    before = keras.mixed_precision.global_policy().name
    train(LineTask(), _config(tmp_path / "run", "runtime.mixed_precision=mixed_bfloat16"))
    assert keras.mixed_precision.global_policy().name == before

    class FailingTask(LineTask):
        def build_model(self, config: LineConfig, data: Any) -> keras.Model:
            # mixed_bfloat16 where the machine computes in bfloat16, float32 (with a log line) where it does not
            assert keras.mixed_precision.global_policy().name == resolve_policy("mixed_bfloat16")
            raise CalomlError("no model today")

    with pytest.raises(CalomlError, match="no model today"):
        train(FailingTask(), _config(tmp_path / "failed", "runtime.mixed_precision=mixed_bfloat16"))
    assert keras.mixed_precision.global_policy().name == before
    # a later run in the same process trains in float32 again
    later = train(LineTask(), _config(tmp_path / "later"))
    assert later.model.layers[0].kernel.dtype == "float32"
    assert later.model.layers[0].compute_dtype == "float32"


def test_export_calls_the_given_exporter_on_the_selected_model(tmp_path):
    calls: list[tuple[keras.Model, Any, Path]] = []

    def export_trained(model: keras.Model, config: Any, run_dir: Path) -> Path:
        calls.append((model, config, run_dir))
        return run_dir / "exported"

    run = tmp_path / "run"
    result = train(LineTask(), _config(run, "trainer.epochs=1", "trainer.export=true"), exporter=export_trained)
    assert result.export_dir == run / "exported"
    assert len(calls) == 1
    assert calls[0][0] is result.model
    assert calls[0][2] == run
    assert calls[0][1].trainer.export is True
    # --export without an exporter fails before anything is written
    with pytest.raises(CalomlError, match="no exporter"):
        train(LineTask(), _config(tmp_path / "other", "trainer.export=true"))
    assert not (tmp_path / "other").exists()
    train(LineTask(), _config(tmp_path / "quiet", "trainer.epochs=1"), exporter=export_trained)
    assert len(calls) == 1  # not called without trainer.export
