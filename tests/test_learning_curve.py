"""``python -m caloml.evaluate curve``: the learning curve of a 3DGAN run from its checkpoints.

The default-run tests use a run directory laid out as the trainer writes it (``config.yaml``, two epochs'
checkpoints saved with the trainer's ``tf.train.Checkpoint``, ``timing.json``, no ``model.keras``), built from the
shared test records with random weights for epoch 1 and perturbed weights for epoch 2. The slow test trains a tiny
3DGAN for two epochs with the real trainer and removes ``model.keras``. The command's errors are rows of
``tests/test_fault_matrix.py``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from command_line import run_command_line

from caloml.evaluate import learning_curve
from caloml.evaluate.__main__ import main as evaluate_main
from caloml.evaluate.learning_curve import CSV_COLUMNS
from caloml.models.precision import bf16_support
from caloml.tasks.gan3d import TASK, GanConfig
from caloml.training.config import resolve_config, write_config

#: The fake run's trainer settings: showers seen after epoch e are e x STEPS x BATCH.
STEPS, BATCH = 2, 4
#: Training seconds of the fake run's epochs 1 and 2 (timing.json).
TRAINING_SECONDS = (30.0, 90.0)
METRICS = (
    "sampling_fraction_error_percent",
    "width_x_relative_error_percent",
    "width_y_relative_error_percent",
    "hits_relative_error_percent",
    "largest_separation_power",
)


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory: pytest.TempPathFactory, records_dir: Path) -> Path:
    """A 3DGAN run directory with the checkpoints of epochs 1 and 2, timing.json and no model.keras."""
    run = tmp_path_factory.mktemp("curve-run") / "run"
    config = resolve_config(
        GanConfig,
        flags={
            "data.records": str(records_dir),
            "data.validation_records": str(records_dir),
            "data.energy_range_gev": [2.0, 500.0],
            "model.condition_angle": "theta",
            "trainer.global_batch_size": BATCH,
            "trainer.steps_per_epoch": STEPS,
            "runtime.run_dir": str(run),
        },
    )
    model = TASK.build_model(config, TASK.prepare_data(config, chief=True))
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, epoch=epoch, **TASK.optimizers(model))  # as the trainer's
    manager = tf.train.CheckpointManager(checkpoint, str(run / "checkpoints"), max_to_keep=3)
    write_config(config, run / "config.yaml")
    epoch.assign(1)
    manager.save(checkpoint_number=1)
    rng = np.random.default_rng(5)
    for variable in model.generator.trainable_variables:  # "epoch 2": other generator weights
        variable.assign(variable + rng.normal(0.0, 0.05, variable.shape).astype(np.float32))
    epoch.assign(2)
    manager.save(checkpoint_number=2)
    timing = [
        {"epoch": e, "training_seconds": s, "validation_seconds": 1.0, "examples_seen": e * STEPS * BATCH}
        for e, s in enumerate(TRAINING_SECONDS, start=1)
    ]
    (run / "timing.json").write_text(json.dumps(timing))
    assert not (run / "model.keras").exists()
    return run


@pytest.fixture(scope="module")
def curve(checkpointed_run: Path, lcd_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The command line's report directory on the fake run (8 showers, no classifier) and its stdout."""
    out = tmp_path_factory.mktemp("curve-out") / "curve"
    stdout = io.StringIO()
    args = ["curve", "--run", str(checkpointed_run), "--reference", str(lcd_file), "--out", str(out)]
    with contextlib.redirect_stdout(stdout):
        status = evaluate_main([*args, "-n", "8", "--no-classifier", "--no-progress"])
    assert status == 0
    return out, stdout.getvalue()


def test_rows_for_both_epochs_on_the_time_axis_of_timing_json(curve: tuple[Path, str], checkpointed_run: Path) -> None:
    out, stdout = curve
    assert sorted(p.name for p in out.iterdir()) == ["curve.csv", "curve.json", "curve.png", "curve_time.png"]
    record = json.loads((out / "curve.json").read_text())
    rows = record["rows"]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert [row["examples_seen"] for row in rows] == [1 * STEPS * BATCH, 2 * STEPS * BATCH]
    assert rows[0]["training_minutes"] == pytest.approx(TRAINING_SECONDS[0] / 60)
    assert rows[1]["training_minutes"] == pytest.approx(sum(TRAINING_SECONDS) / 60)  # cumulative
    for row in rows:
        assert row["label"] == "run (float32)"
        for key in METRICS:
            assert math.isfinite(row[key]), key
        assert row["largest_separation_power"] <= 1.0
        assert row["auc_low_level"] is None  # --no-classifier
    assert record["arguments"]["n_showers"] == 8
    assert record["seed"] == 1
    assert record["runs"][0]["config"] == str(checkpointed_run / "config.yaml")
    with (out / "curve.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert tuple(table[0]) == CSV_COLUMNS
    assert [int(row["examples_seen"]) for row in table] == [8, 16]
    assert stdout.count("run (float32)") == 2


def test_each_epoch_restores_its_own_checkpoint(curve: tuple[Path, str]) -> None:
    rows = json.loads((curve[0] / "curve.json").read_text())["rows"]
    assert rows[0]["sampling_fraction_error_percent"] != rows[1]["sampling_fraction_error_percent"]
    assert rows[0]["width_x_relative_error_percent"] != rows[1]["width_x_relative_error_percent"]


def test_a_run_without_timing_json_counts_showers_from_its_config(
    curve: tuple[Path, str], checkpointed_run: Path, lcd_file: Path, tmp_path: Path
) -> None:
    old_run = tmp_path / "old-run"
    shutil.copytree(checkpointed_run, old_run, ignore=shutil.ignore_patterns("timing.json"))
    record = learning_curve([old_run], lcd_file, tmp_path / "out", epochs=[2], n_showers=8, classifier=False)
    (row,) = record["rows"]
    assert row["examples_seen"] == 2 * STEPS * BATCH
    assert row["training_minutes"] is None
    assert any("no timing.json" in note for note in record["notes"])
    full = json.loads((curve[0] / "curve.json").read_text())["rows"][1]
    for key in METRICS:  # the same seed gives the same showers: the same metrics
        assert row[key] == pytest.approx(full[key], rel=1e-6), key


@pytest.mark.slow
def test_a_trained_run_without_model_keras(tmp_path: Path) -> None:
    """Two epochs of the real trainer (default data, 2 steps of 4 showers), model.keras removed: the curve works."""
    tiny = ["--events", "24", "--energy-range", "100", "200", "--batch-size", "4", "--steps-per-epoch", "2"]
    settings = ["--set", "data.validation_events=8", "--set", "trainer.selection_window=2"]
    trained = run_command_line(
        "caloml.train", "gan", *tiny, *settings, "--epochs", "2", "--run-dir", "run", "--no-progress", cwd=tmp_path
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    (tmp_path / "run" / "model.keras").unlink()
    reference = run_command_line(
        "caloml.data",
        *("simulate", "--geometry", "lcd-gen", "-n", "40", "--seed", "99", "--energy-range", "100", "200"),
        *("--theta-range", "60deg", "120deg", "--out", "reference.h5", "--no-progress"),
        cwd=tmp_path,
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    args = ["curve", "--run", "run", "--reference", "reference.h5", "--out", "curve", "-n", "8", "--no-classifier"]
    result = run_command_line("caloml.evaluate", *args, "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "curve" / "curve.json").read_text())["rows"]
    timing = json.loads((tmp_path / "run" / "timing.json").read_text())
    assert [row["epoch"] for row in rows] == [1, 2]
    assert [row["examples_seen"] for row in rows] == [8, 16]
    assert rows[1]["training_minutes"] == pytest.approx(sum(t["training_seconds"] for t in timing) / 60)
    for row in rows:
        for key in METRICS:
            assert math.isfinite(row[key]), key
    assert rows[0]["sampling_fraction_error_percent"] != rows[1]["sampling_fraction_error_percent"]


def test_bfloat16_generation_reaches_the_generator_and_is_recorded(
    curve: tuple[Path, str], checkpointed_run: Path, lcd_file: Path, tmp_path: Path
) -> None:
    record = learning_curve(
        checkpointed_run, lcd_file, tmp_path / "out", epochs=[2], n_showers=8, precision="bfloat16", classifier=False
    )  # one run given bare
    expected = "bfloat16" if bf16_support(gpus=0)[0] else "float32"  # no bfloat16 units: float32, with a note
    assert record["arguments"]["precision"] == expected
    assert record["arguments"]["precision_requested"] == "bfloat16"
    (row,) = record["rows"]
    full = json.loads((curve[0] / "curve.json").read_text())["rows"][1]
    if expected == "bfloat16":
        assert row["label"] == "run (float32) generated in bfloat16"
        assert row["sampling_fraction_error_percent"] != full["sampling_fraction_error_percent"]  # it computed
        assert row["sampling_fraction_error_percent"] == pytest.approx(
            full["sampling_fraction_error_percent"], rel=0.05
        )
    else:
        assert any("no bfloat16 units" in note for note in record["notes"])
