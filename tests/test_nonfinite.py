"""A NaN training loss stops the shared trainer with one line (epoch, step, loss) and keeps the last good checkpoint;
``trainer.on_nonfinite: skip-batch`` undoes the bad step instead; ``--on-nonfinite`` reaches the configuration.

The task is the trainer tests' line fit (:mod:`test_trainer`) whose target turns NaN at one chosen step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from test_trainer import LineConfig, LineTask, _config

from caloml.errors import CalomlError
from caloml.training.nonfinite import NonFiniteLossError, nonfinite_logs
from caloml.training.trainer import train

STEPS_PER_EPOCH = 4  # 64 events in batches of 16


class PoisonedLineTask(LineTask):
    """The line fit whose target is NaN at the global steps ``bad_steps`` (0-based, counted from the run's start)."""

    def __init__(self, bad_steps: set[int] | None = None, always: bool = False) -> None:
        super().__init__()
        self.bad_steps = sorted(bad_steps or set())
        self.always = always

    def make_dataset(self, config: LineConfig, data: Any, input_context: tf.distribute.InputContext) -> Any:
        x, y = data
        batch = config.trainer.global_batch_size
        xs = tf.constant(x.reshape(-1, batch, 1))
        ys = tf.constant(y.reshape(-1, batch, 1))
        bad = tf.constant(self.bad_steps or [-1], tf.int64)
        always = self.always

        def step(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            k = index % xs.shape[0]
            poisoned = always or tf.reduce_any(tf.equal(index, bad))
            target = tf.where(poisoned, tf.fill(tf.shape(ys[k]), np.float32(np.nan)), ys[k])
            return xs[k], target

        return tf.data.Dataset.range(1 << 30).map(step)


def test_nonfinite_logs_names_the_bad_entries():
    assert nonfinite_logs({"loss": 1.0, "d_loss": float("nan"), "g_loss": float("inf"), "val_x": float("nan")}) == {
        "d_loss": pytest.approx(float("nan"), nan_ok=True),
        "g_loss": float("inf"),
    }


def test_a_nan_loss_stops_with_epoch_step_and_loss_and_keeps_the_last_good_checkpoint(tmp_path: Path):
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as error:
        train(PoisonedLineTask({STEPS_PER_EPOCH + 1}), _config(run, "trainer.epochs=3"))
    message = str(error.value)
    assert "\n" not in message
    assert "epoch 2, step 2" in message
    assert "'loss' = nan" in message
    assert f"{run / 'checkpoints' / 'ckpt-1'}" in message
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.index")) == ["ckpt-1.index"]
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1]

    # the same run resumed with skip-batch: the resumed dataset continues at the data position of the stop (after
    # the batches of epoch 1), so it meets the same poisoned batch again, second in the resumed epoch, and undoes it
    poisoned = PoisonedLineTask({STEPS_PER_EPOCH + 1})
    result = train(poisoned, _config(run, "trainer.epochs=3", "trainer.on_nonfinite=skip-batch"))
    assert result.resumed_from_epoch == 1
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(np.isfinite(h["loss"]) for h in history)
    assert history[-1]["loss"] < history[0]["loss"]
    assert result.model is not None
    # the optimizer's step counter was put back too: one step fewer than the steps run
    assert int(result.model.optimizer.iterations.numpy()) == 3 * STEPS_PER_EPOCH - 1
    assert all(np.all(np.isfinite(w)) for w in result.model.get_weights())


def test_skip_batch_stops_when_the_loss_never_recovers(tmp_path: Path):
    run = tmp_path / "run"
    config = _config(run, "trainer.epochs=5", "trainer.on_nonfinite=skip-batch")
    with pytest.raises(NonFiniteLossError, match="the end of epoch 1 after 4 skipped steps in a row") as error:
        train(PoisonedLineTask(always=True), config)  # every step of the epoch skipped: nothing to checkpoint
    assert "no checkpoint was written yet" in str(error.value)
    assert not list((run / "checkpoints").glob("ckpt-*"))
    config = _config(run, "trainer.epochs=5", "trainer.on_nonfinite=skip-batch", "trainer.global_batch_size=4")
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 11 after 10 skipped steps in a row"):
        train(PoisonedLineTask(always=True), config)  # 16 steps per epoch: 10 skipped in a row is the limit


def test_an_unknown_on_nonfinite_value_is_refused_before_any_work(tmp_path: Path):
    with pytest.raises(CalomlError, match=r"trainer.on_nonfinite must be one of stop, skip-batch, got 'retry'"):
        train(PoisonedLineTask(), _config(tmp_path / "run", "trainer.on_nonfinite=retry"))
    assert not (tmp_path / "run").exists()


def test_the_command_line_flags_reach_the_configuration(capsys: pytest.CaptureFixture[str]):
    from caloml.train import main

    assert main(["gan", "--on-nonfinite", "skip-batch", "--deterministic", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "on_nonfinite: skip-batch" in out
    assert "deterministic: true" in out


def test_the_baselines_refuse_the_keras_trainer_flags() -> None:
    from caloml.train import main

    for flag in (["--on-nonfinite", "stop"], ["--deterministic"]):
        with pytest.raises(CalomlError, match=f"{flag[0]} does not apply to linreg"):
            main(["linreg", *flag, "--print-config"])
