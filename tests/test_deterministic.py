"""``--deterministic``: two runs of the same command with the same seed give bit-identical weights and history.

The reruns (a quick 3DGAN and a quick Triforce run, each twice, in their own processes as a user runs them: the
CPU thread pools are configured before TensorFlow's runtime starts) are slow; the default run checks the switch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_training_faults import TRIFORCE_ARGS, _lcd_file

from caloml.training.config import TaskConfig, resolve_config
from caloml.training.determinism import apply_determinism, deterministic_dataset, op_determinism


def _run_twice(cwd: Path, argv: list[str], timeout: float = 900) -> tuple[Path, Path]:
    runs = []
    for name in ("first", "second"):
        command = [sys.executable, "-m", "caloml.train", *argv, "--run-dir", name, "--no-progress", "--seed", "5"]
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(cwd / name)
    return runs[0], runs[1]


def _assert_identical_runs(first: Path, second: Path) -> None:
    """Same history and selection, and every variable of every epoch checkpoint equal bit for bit."""
    assert json.loads((first / "history.json").read_text()) == json.loads((second / "history.json").read_text())
    if (first / "selection.json").exists():
        assert (first / "selection.json").read_text() == (second / "selection.json").read_text()
    prefixes = sorted(p.with_suffix("").name for p in (first / "checkpoints").glob("ckpt-*.index"))
    assert prefixes
    for prefix in prefixes:
        a = tf.train.load_checkpoint(str(first / "checkpoints" / prefix))
        b = tf.train.load_checkpoint(str(second / "checkpoints" / prefix))
        names = sorted(a.get_variable_to_shape_map())
        assert names == sorted(b.get_variable_to_shape_map())
        for name in names:
            np.testing.assert_array_equal(a.get_tensor(name), b.get_tensor(name), err_msg=f"{prefix}: {name}")


@pytest.mark.slow
def test_quick_3dgan_reruns_are_bit_identical(tmp_path: Path) -> None:
    argv = ["gan", "--deterministic", "--events", "24", "--energy-range", "100", "200", "--batch-size", "4"]
    argv += ["--steps-per-epoch", "2", "--epochs", "2", "--set", "data.validation_events=8"]
    argv += ["--set", "trainer.selection_window=2"]
    _assert_identical_runs(*_run_twice(tmp_path, argv))


@pytest.mark.slow
def test_quick_triforce_reruns_are_bit_identical(tmp_path: Path, make_lcd) -> None:
    photons = _lcd_file(tmp_path / "photons.h5", make_lcd, 22, seed=1)
    pi0 = _lcd_file(tmp_path / "pi0.h5", make_lcd, 111, seed=2)
    argv = [*TRIFORCE_ARGS, "--deterministic", "--data", str(photons), str(pi0), "--epochs", "2"]
    _assert_identical_runs(*_run_twice(tmp_path, argv))


def test_the_switch_turns_op_determinism_on_and_orders_the_pipelines() -> None:
    config = resolve_config(TaskConfig, assignments=["runtime.deterministic=true", "runtime.seed=7"])
    with op_determinism(False):
        assert apply_determinism(config) is True
        draws = tf.random.uniform([3]).numpy()
        apply_determinism(config)
        np.testing.assert_array_equal(tf.random.uniform([3]).numpy(), draws)  # seeded again: the same draws
        dataset = tf.data.Dataset.range(4)
        assert deterministic_dataset(dataset, True).options().deterministic is True
        assert deterministic_dataset(dataset, False) is dataset
    with op_determinism(False):
        assert apply_determinism(resolve_config(TaskConfig)) is False  # off by default
