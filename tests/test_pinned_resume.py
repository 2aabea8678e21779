"""Resume equivalence: a run stopped after epoch k and resumed ends where the uninterrupted run ends.

The same weights, optimizer state, random-draw counter and epoch counter (every variable of the last checkpoint,
compared exactly), the same history, and so the same data position and the same random draws. A stopped run is a
run whose ``trainer.epochs`` was k (what a run killed after the checkpoint of epoch k leaves, the interrupted epoch
is lost either way; tests/test_train_gan.py kills one mid-epoch); the same command with ``trainer.epochs`` N resumes
it.

- a line fit on the shared trainer (in process, exact: one Dense unit on CPU is deterministic);
- Triforce and the 3DGAN on their tasks, exactly, in a subprocess made deterministic by hand (the trainer's
  ``runtime.deterministic`` switch had not landed on this branch): ``tf.config.experimental.enable_op_determinism()``,
  one intra-op and one inter-op thread and the tasks' datasets delivering in order (the 3DGAN to ``GAN_RTOL``).
  Dropout is 0 there: Keras does not save the dropout layers' seed states, so with dropout a resumed run draws
  other masks (documented in ``GAN3D``); the models' own draws (noise, label flips) come from the saved counter
  and are checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_trainer import LineTask, _config
from worker_process import run_worker

from caloml.training.trainer import train

# The 3DGAN's runs are reproducible to the last bits only with one inter-op thread too: with TensorFlow's default
# inter-op pool, two runs (and a resumed one) differed by 1 ulp to 1e-4 relative (batch-norm moving statistics).
# With both pools at one thread the resumed run passes at 1e-6 (seen once; not shown to be bit-identical). Other
# batches or other random draws are a different step, not a rounding: 1e-3 and more (the line fit's Adam moment: 10%).
GAN_RTOL = 1e-6


def _checkpoint_values(run_dir: Path, epoch: int) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / f"ckpt-{epoch}"))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH" and "save_counter" not in name
    }


def _history(run_dir: Path) -> list[dict[str, float]]:
    return json.loads((run_dir / "history.json").read_text())


def assert_same_run(uninterrupted: Path, resumed: Path, epochs: int, rtol: float = 0.0) -> dict[str, np.ndarray]:
    """Every variable of the last checkpoint and every history row equal (``rtol`` 0: exactly; else to ``rtol``
    relative, of each variable's largest value for its elements), the integer ones (epoch and draw counters,
    optimizer iterations) exactly; returns the checkpoint's values."""
    expected, actual = _checkpoint_values(uninterrupted, epochs), _checkpoint_values(resumed, epochs)
    assert set(actual) == set(expected)
    for name, value in expected.items():
        if rtol == 0.0 or not np.issubdtype(value.dtype, np.floating):
            np.testing.assert_array_equal(actual[name], value, err_msg=name)
        else:
            scale = float(np.max(np.abs(value))) if value.size else 0.0
            np.testing.assert_allclose(actual[name], value, rtol=rtol, atol=rtol * scale, err_msg=name)
    history, reference = _history(resumed), _history(uninterrupted)
    assert [sorted(row) for row in history] == [sorted(row) for row in reference]
    for row, expected_row in zip(history, reference, strict=True):
        for key, value in expected_row.items():
            np.testing.assert_allclose(row[key], value, rtol=rtol, err_msg=f"epoch {row['epoch']} {key}")
    return expected


def test_a_resumed_line_fit_ends_where_the_uninterrupted_one_ends(tmp_path: Path) -> None:
    train(LineTask(), _config(tmp_path / "whole", "trainer.epochs=4"))
    stopped = train(LineTask(), _config(tmp_path / "resumed", "trainer.epochs=2"))
    assert stopped.resumed_from_epoch == 0
    resumed = train(LineTask(), _config(tmp_path / "resumed", "trainer.epochs=4"))
    assert resumed.resumed_from_epoch == 2
    values = assert_same_run(tmp_path / "whole", tmp_path / "resumed", 4)
    assert any("iteration" in name and int(value) == 16 for name, value in values.items())  # 4 epochs x 4 steps
    # the data position matters here: every epoch is one reshuffle of the 64 events, so epoch 3 of a run that
    # restarted the data from its beginning would see other batches (and end elsewhere)
    restarted = train(LineTask(), _config(tmp_path / "restarted", "trainer.epochs=2"))
    assert restarted.history[-1] != _history(tmp_path / "whole")[3]


# ------------------------------------------------------------------------------------------ model tasks


def _run_worker(mode: str, out_dir: Path) -> None:
    run_worker(__file__, mode, out_dir, cwd=out_dir, timeout_s=1200)


@pytest.mark.slow  # about 50 s single-threaded (the default run keeps the line fit)
def test_a_resumed_triforce_run_ends_where_the_uninterrupted_one_ends(tmp_path: Path) -> None:
    _run_worker("triforce", tmp_path)
    values = assert_same_run(tmp_path / "whole", tmp_path / "resumed", 3)
    assert int(values["epoch/.ATTRIBUTES/VARIABLE_VALUE"]) == 3


@pytest.mark.slow
def test_a_resumed_3dgan_run_ends_where_the_uninterrupted_one_ends(tmp_path: Path) -> None:
    _run_worker("gan", tmp_path)
    values = assert_same_run(tmp_path / "whole", tmp_path / "resumed", 3, rtol=GAN_RTOL)
    draws = [int(v) for name, v in values.items() if "random_draws" in name]
    assert draws
    assert draws[0] > 0  # the noise and label flips were drawn from the saved counter


def _triforce_runs(out_dir: Path) -> None:
    from dataclasses import replace

    from conftest import make_lcd_events

    from caloml.data.lcd import LCDWriter
    from caloml.tasks.triforce import TASK
    from caloml.tasks.triforce.config import PRESETS, TriforceConfig
    from caloml.training.config import resolve_config

    files = []
    for seed, pdg in ((1, 22), (2, 111)):
        events = make_lcd_events(48, seed=seed)
        events["pdgID"][:] = pdg
        events["recoEta"], events["recoPhi"] = events["eta"], events["phi"]
        files.append(out_dir / f"{pdg}.h5")
        with LCDWriter(files[-1]) as writer:
            writer.append(events)

    def config(run: str, epochs: int) -> TriforceConfig:
        resolved = resolve_config(
            TriforceConfig,
            preset=PRESETS["quick"],
            flags={
                "data.files": [str(f) for f in files],
                "runtime.run_dir": str(out_dir / run),
                "runtime.progress": False,
                "model.dropout": 0.0,
                "model.micro_batch_size": 2,
            },
        )
        return replace(
            resolved, trainer=replace(resolved.trainer, epochs=epochs, global_batch_size=8, steps_per_epoch=3)
        )

    train(TASK, config("whole", 3))
    train(TASK, config("resumed", 1))
    train(TASK, config("resumed", 3))


def _gan_runs(out_dir: Path) -> None:
    import caloml.train as train_cli

    tiny = ["--events", "24", "--energy-range", "100", "200", "--batch-size", "4", "--steps-per-epoch", "2"]
    tiny += ["--no-progress", "--set", "data.validation_events=8", "--set", "model.dropout=0.0"]
    for run, epochs in (("whole", 3), ("resumed", 1), ("resumed", 3)):
        train_cli.main(["gan", *tiny, "--epochs", str(epochs), "--run-dir", str(out_dir / run)])


def _ordered_delivery(task_class: type) -> None:
    """The task's datasets deliver in order (what the trainer's deterministic mode asks of every pipeline): parallel
    reads and parses otherwise hand over whatever finishes first."""
    make_dataset = task_class.make_dataset

    def ordered(self: object, *args: object) -> tf.data.Dataset:
        options = tf.data.Options()
        options.deterministic = True
        return make_dataset(self, *args).with_options(options)

    task_class.make_dataset = ordered  # type: ignore[attr-defined]


if __name__ == "__main__":
    # one intra-op thread (before the runtime starts): oneDNN's multithreaded CPU convolutions split their sums by
    # thread, which changes the last bits of a 3DGAN step from run to run even with op determinism
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    from caloml.tasks.gan3d import GAN3DTask
    from caloml.tasks.triforce import TriforceTask

    _ordered_delivery(GAN3DTask)
    _ordered_delivery(TriforceTask)
    {"triforce": _triforce_runs, "gan": _gan_runs}[sys.argv[1]](Path(sys.argv[2]))
