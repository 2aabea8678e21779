"""Hyperparameter scans over the shared trainer, on a tiny regression task registered for the test."""

from __future__ import annotations

import argparse
import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

import caloml.train
from caloml.errors import CalomlError
from caloml.scan import main as scan_main
from caloml.training.config import RuntimeConfig, TaskConfig
from caloml.training.scan import (
    GRID_PRESETS,
    ScanRun,
    baseline_selection,
    grid_points,
    parse_grid_axis,
    point_name,
    preset_points,
    sample_points,
    summarize,
)
from caloml.training.task import SelectionMetric, TrainerSection


@dataclass
class TinyData:
    events: int = 64


@dataclass
class TinyModel:
    units: int = 4
    learning_rate: float = 0.01


@dataclass
class TinyConfig(TaskConfig):
    data: TinyData = field(default_factory=TinyData)
    model: TinyModel = field(default_factory=TinyModel)
    trainer: TrainerSection = field(default_factory=lambda: TrainerSection(epochs=2, selection_window=2))
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(progress=False))


class TinyTask:
    """y = 2 x + 1 + noise with a Dense(units) -> Dense(1) network; selection: validation MSE."""

    name = "tiny"
    config_class = TinyConfig
    presets: dict[str, dict[str, Any]] = {"short": {"trainer": {"epochs": 1, "selection_window": 1}}}  # noqa: RUF012

    def __init__(self) -> None:
        self.trained: list[tuple[int, int, float]] = []  # (seed, units, learning rate) of every model built

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--units", type=int)

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"model.units": args.units}

    def default_run_dir(self, config: TinyConfig) -> Path:
        raise AssertionError("the scan always gives a run directory")

    def prepare_data(self, config: TinyConfig, *, chief: bool) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2 * config.data.events, 1)).astype(np.float32)
        y = (2.0 * x + 1.0 + 0.1 * rng.normal(size=x.shape)).astype(np.float32)
        n = config.data.events
        return {"x": x[:n], "y": y[:n], "x_val": x[n:], "y_val": y[n:]}

    def make_dataset(self, config: TinyConfig, data: Any, input_context: tf.distribute.InputContext) -> Any:
        batch = input_context.get_per_replica_batch_size(config.trainer.global_batch_size)
        dataset = tf.data.Dataset.from_tensor_slices((data["x"], data["y"]))
        return dataset.shuffle(64, seed=config.runtime.seed).repeat().batch(batch)

    def steps_per_epoch(self, config: TinyConfig, data: Any) -> int:
        return max(1, config.data.events // config.trainer.global_batch_size)

    def build_model(self, config: TinyConfig, data: Any) -> keras.Model:
        self.trained.append((config.runtime.seed, config.model.units, config.model.learning_rate))
        model = keras.Sequential(
            [keras.Input((1,)), keras.layers.Dense(config.model.units, activation="relu"), keras.layers.Dense(1)]
        )
        model.compile(keras.optimizers.Adam(config.model.learning_rate), "mse")
        model.optimizer.build(model.trainable_variables)
        return model

    def optimizers(self, model: keras.Model) -> dict[str, Any]:
        return {"optimizer": model.optimizer}

    def selection_metric(self, config: TinyConfig, data: Any) -> SelectionMetric:
        def compute(model: keras.Model) -> float:
            predicted = model(data["x_val"], training=False).numpy()
            return float(np.mean((predicted - data["y_val"]) ** 2))

        return SelectionMetric("validation_mse", compute, "mean squared error on the validation events")

    def check_init_source(self, config: TinyConfig, source: keras.Model) -> None:
        pass

    def export(self, model: keras.Model, config: TinyConfig, run_dir: Path) -> Path | None:
        return None


@pytest.fixture
def tiny_task(monkeypatch: pytest.MonkeyPatch) -> TinyTask:
    task = TinyTask()
    module = types.ModuleType("caloml_test_tiny_task")
    module.TASK = task  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "caloml_test_tiny_task", module)
    monkeypatch.setitem(caloml.train.TASKS, "tiny", "caloml_test_tiny_task:TASK")
    return task


def test_scan_trains_every_point_and_repeat_then_reads_them(tiny_task: TinyTask, tmp_path: Path) -> None:
    root = tmp_path / "scan"
    argv = [
        "tiny",
        "--grid",
        "model.units=2,8",
        "--grid",
        "model.learning_rate=2e-2",
        "--repeats",
        "2",
        "--run-root",
        str(root),
        "--seed",
        "10",
        "--batch-size",
        "16",
        "--epochs",
        "1",
    ]
    assert scan_main(argv) == 0
    assert len(tiny_task.trained) == 2 * 2  # 2 points, 2 repeats
    assert sorted(tiny_task.trained) == [(10, 2, 2e-2), (10, 8, 2e-2), (11, 2, 2e-2), (11, 8, 2e-2)]
    summary = json.loads((root / "scan.json").read_text())
    assert summary["metric"] == "validation_mse"
    assert summary["lower_is_better"] is True
    assert summary["seeds"] == [10, 11]
    assert summary["grid"] == {"model.units": [2, 8], "model.learning_rate": [2e-2]}
    assert summary["n_finished"] == summary["n_runs"] == 4
    points = summary["points"]
    assert len(points) == 2
    for point in points:
        values = []
        for repeat in point["repeats"]:
            run_dir = Path(repeat["run_dir"])
            assert run_dir == root / point["name"] / f"seed-{repeat['seed']}"
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
            assert config["runtime"]["seed"] == repeat["seed"]
            assert config["model"]["units"] == point["values"]["model.units"]
            assert config["model"]["learning_rate"] == 2e-2
            assert config["trainer"]["global_batch_size"] == 16  # the training flags pass through
            record = json.loads((run_dir / "selection.json").read_text())
            selected = {e["epoch"]: e["value"] for e in record["epochs"]}[record["selected_epoch"]]
            assert repeat["value"] == selected
            assert repeat["status"] == "trained"
            values.append(selected)
        assert values[0] != values[1]  # different seeds, different runs
        assert point["mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert point["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    means = [p["mean"] for p in points]
    assert means == sorted(means)  # best (lowest) first
    assert summary["best"] == points[0]["name"]
    table = (root / "scan.md").read_text()
    assert points[0]["name"] in table
    assert "validation_mse" in table

    # rerunning the same command reads the finished runs: nothing is trained again, same summary values
    assert scan_main(argv) == 0
    assert len(tiny_task.trained) == 4
    again = json.loads((root / "scan.json").read_text())
    assert [p["mean"] for p in again["points"]] == means
    assert {r["status"] for p in again["points"] for r in p["repeats"]} == {"read"}

    # one more repeat trains only the new seed
    assert scan_main([*argv[:5], "--repeats", "3", *argv[7:]]) == 0
    assert len(tiny_task.trained) == 4 + 2
    assert {seed for seed, _, _ in tiny_task.trained[4:]} == {12}


def test_scan_command_line_errors(tiny_task: TinyTask, tmp_path: Path) -> None:
    root = ["--run-root", str(tmp_path / "scan")]
    with pytest.raises(CalomlError, match="nothing to scan"):
        scan_main(["tiny", *root])
    with pytest.raises(CalomlError, match=r"unknown configuration key 'model\.depth'"):
        scan_main(["tiny", "--grid", "model.depth=1,2", *root])
    with pytest.raises(CalomlError, match="expected an integer"):
        scan_main(["tiny", "--grid", "model.units=1.5,2", *root])
    with pytest.raises(CalomlError, match="scanned and also set"):
        scan_main(["tiny", "--grid", "model.units=2,4", "--units", "3", *root])
    with pytest.raises(CalomlError, match="--run-dir"):
        scan_main(["tiny", "--grid", "model.units=2,4", "--run-dir", "x", *root])
    with pytest.raises(CalomlError, match="runtime keys"):
        scan_main(["tiny", "--grid", "runtime.seed=1,2", *root])
    with pytest.raises(CalomlError, match="unknown model"):
        scan_main(["nonexistent", "--grid", "model.units=2,4", *root])
    assert tiny_task.trained == []


def test_scan_of_a_self_fitting_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``caloml.scan xgb``: each run is the task's own fit; its value is the validation relative RMS error of its
    summary.json; a rerun reads the finished fits; the Keras trainer's flags are refused."""
    from caloml.sim.run import SimulationRequest, simulate_file

    data = tmp_path / "electron.h5"
    simulate_file(SimulationRequest("lcd-rec", "electron", 120, 7).resolve(), data, workers=1, progress=False)
    root = tmp_path / "scan"
    argv = ["xgb", "--particle", "electron", "--data", str(data), "--grid", "model.max_depth=1,3", "--repeats", "2"]
    argv += ["--run-root", str(root), "--seed", "4", "--set", "runtime.threads=1", "--set", "trainer.max_rounds=40"]
    assert scan_main(argv) == 0
    summary = json.loads((root / "scan.json").read_text())
    assert (summary["metric"], summary["lower_is_better"]) == ("validation_relative_rms", True)
    assert summary["n_finished"] == summary["n_runs"] == 4
    for point in summary["points"]:
        for repeat in point["repeats"]:
            run_dir = Path(repeat["run_dir"])
            fitted = json.loads((run_dir / "summary.json").read_text())
            assert fitted["seed"] == repeat["seed"]
            assert (
                yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["max_depth"]
                == point["values"]["model.max_depth"]
            )
            validation = fitted["validation_metrics"]
            expected = np.hypot(validation["relative_bias"], validation["relative_resolution"])
            assert repeat["value"] == pytest.approx(expected, rel=1e-12)
            assert (repeat["status"], repeat["selected_epoch"]) == ("trained", None)
            assert 0.0 < repeat["value"] < 1.0
        assert point["mean"] == pytest.approx(np.mean([r["value"] for r in point["repeats"]]), rel=1e-12)
    assert [p["mean"] for p in summary["points"]] == sorted(p["mean"] for p in summary["points"])
    assert scan_main(argv) == 0  # finished fits are read, not refitted
    again = json.loads((root / "scan.json").read_text())
    assert {r["status"] for p in again["points"] for r in p["repeats"]} == {"read"}
    assert [p["mean"] for p in again["points"]] == [p["mean"] for p in summary["points"]]
    capsys.readouterr()
    with pytest.raises(CalomlError, match=r"^--epochs does not apply to xgb") as error:
        scan_main([*argv, "--epochs", "3"])
    assert "\n" not in str(error.value)


def test_baseline_selection_values(tmp_path: Path) -> None:
    bdt = tmp_path / "bdt"
    bdt.mkdir()
    (bdt / "summary.json").write_text(json.dumps({"chosen": {"validation_logloss": 0.25}, "validation_metrics": {}}))
    assert baseline_selection(bdt)[:4] == (0.25, None, True, "validation_logloss")
    regression = tmp_path / "linreg"
    regression.mkdir()
    metrics = {"relative_bias": 0.03, "relative_resolution": 0.04, "n": 10}
    (regression / "summary.json").write_text(json.dumps({"validation_metrics": metrics}))
    assert baseline_selection(regression)[:4] == (pytest.approx(0.05), None, True, "validation_relative_rms")
    (regression / "summary.json").write_text(json.dumps({"test_metrics": metrics}))
    with pytest.raises(CalomlError, match="records no validation"):
        baseline_selection(regression)
    with pytest.raises(CalomlError, match=r"no readable summary\.json"):
        baseline_selection(tmp_path / "missing")


def test_grid_parsing_naming_and_presets() -> None:
    assert parse_grid_axis("model.learning_rate=1e-4,4e-4") == ("model.learning_rate", (1e-4, 4e-4))
    assert parse_grid_axis("model.arch=dnn,cnn") == ("model.arch", ("dnn", "cnn"))
    assert parse_grid_axis("model.dropout=null,0.1") == ("model.dropout", (None, 0.1))
    with pytest.raises(CalomlError, match=r"expected section\.key"):
        parse_grid_axis("hidden_units=1,2")
    points = grid_points({"model.hidden_units": (128, 512), "model.learning_rate": (1e-4,)})
    assert [p.name for p in points] == ["hidden_units-128", "hidden_units-512"]  # one-value axes are not named
    product = grid_points({"model.hidden_units": (128, 512), "model.learning_rate": (1e-4, 4e-4)})
    assert [p.name for p in product] == [
        "hidden_units-128__learning_rate-0.0001",
        "hidden_units-128__learning_rate-0.0004",
        "hidden_units-512__learning_rate-0.0001",
        "hidden_units-512__learning_rate-0.0004",
    ]
    assert point_name({"model.units": 2, "data.units": 3}) == "model.units-2__data.units-3"
    # the paper's grids are subsampled with a seed, the published best point first
    dnn = preset_points("paper-dnn", 10, seed=3)
    assert len(dnn) == 10
    assert len({p.name for p in dnn}) == 10
    assert dict(dnn[0].values) == {"model.arch": "dnn", **GRID_PRESETS["paper-dnn"].best}
    assert [p.name for p in preset_points("paper-dnn", 10, seed=3)] == [p.name for p in dnn]
    assert [p.name for p in preset_points("paper-dnn", 10, seed=4)] != [p.name for p in dnn]
    cnn = preset_points("paper-cnn", 5, seed=1)
    full = grid_points(GRID_PRESETS["paper-cnn"].axes)
    assert len(full) == 5 * 5 * 7 * 7 * 6 * 5
    assert all(p.values["model.arch"] == "cnn" and 2 <= p.values["model.ecal_kernel"] <= 6 for p in cnn)
    assert sample_points(points, 5, seed=0) == points  # fewer points than asked: all of them


def test_summary_statistics_direction_and_diverged_runs(tmp_path: Path) -> None:
    points = grid_points({"model.units": (1, 2, 3)})
    values = {"units-1": [0.3, 0.5, 0.4], "units-2": [0.2, 0.1, None], "units-3": [None, None, None]}
    runs = [
        ScanRun(name, seed, tmp_path / name / f"seed-{seed}", value, 1, "read")
        for name, each in values.items()
        for seed, value in enumerate(each)
    ]
    rows = summarize(runs, points)
    assert [row["name"] for row in rows] == ["units-2", "units-1", "units-3"]  # lower first, no value last
    assert rows[0]["n"] == 2
    assert rows[0]["mean"] == pytest.approx(0.15)
    assert rows[1]["std"] == pytest.approx(np.std([0.3, 0.5, 0.4], ddof=1))
    assert rows[1]["sem"] == pytest.approx(np.std([0.3, 0.5, 0.4], ddof=1) / np.sqrt(3))
    assert rows[2]["mean"] is None
    assert rows[2]["std"] is None
    higher = summarize(runs, points, lower_is_better=False)
    assert [row["name"] for row in higher] == ["units-1", "units-2", "units-3"]
