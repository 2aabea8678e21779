"""Progress displays: plain lines in logs (counts, rate, time left, no escape codes), bars on terminals, and the
training display whose epoch line comes before the validation summary."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest
from command_line import run_command_line

from caloml.progress import ProgressLines, format_duration, progress_bar
from caloml.training.progress_callback import TrainingProgress, progress_mode


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fake_clock() -> tuple[list[float], Callable[[], float]]:
    now = [0.0]
    return now, lambda: now[0]


def test_log_lines_every_ten_percent_with_rate_and_time_left() -> None:
    now, clock = _fake_clock()
    out = io.StringIO()
    lines = ProgressLines(100, desc="simulate electron", unit="shower", stream=out, clock=clock)
    for _ in range(100):
        now[0] += 0.5
        lines.update(1)
    lines.close()
    text = out.getvalue().splitlines()
    assert text[0] == "simulate electron: 10/100 showers (10%), 2 showers/s, 45 s left"
    assert text[4] == "simulate electron: 50/100 showers (50%), 2 showers/s, 25 s left"
    assert len(text) == 10  # 9 steps of 10% and the closing line
    assert text[-1] == "simulate electron: 100 showers in 50 s, 2 showers/s"
    assert "\x1b" not in out.getvalue()
    assert "\r" not in out.getvalue()


def test_log_lines_every_30_seconds_when_slow_and_not_more_often_than_every_2_seconds() -> None:
    now, clock = _fake_clock()
    out = io.StringIO()
    lines = ProgressLines(10_000, desc="generate", unit="shower", stream=out, clock=clock)
    for _ in range(20):  # 20 showers in 200 s: far from 10%, a line every 30 s
        now[0] += 10.0
        lines.update(1)
    assert len(out.getvalue().splitlines()) == 6
    assert out.getvalue().splitlines()[0] == "generate: 3/10000 showers (0%), 10 s/shower, 27 h 46 min left"
    fast = io.StringIO()
    lines = ProgressLines(1000, desc="convert", unit="event", stream=fast, clock=clock)
    for _ in range(1000):  # all in 1 s: the 10% steps come faster than one line per 2 s
        now[0] += 0.001
        lines.update(1)
    lines.close()
    assert fast.getvalue().splitlines() == ["convert: 1000 events in 1.0 s, 1e+03 events/s"]


def test_unknown_total_and_error_exit() -> None:
    now, clock = _fake_clock()
    out = io.StringIO()
    lines = ProgressLines(None, desc="read", unit="file", stream=out, clock=clock)
    now[0] += 31.0
    lines.update(2)
    lines.__exit__(RuntimeError, RuntimeError("stop"), None)
    assert out.getvalue() == "read: 2 files, 15.5 s/file\n"  # no closing line after an error


def test_the_display_fits_the_stream() -> None:
    out = io.StringIO()
    assert isinstance(progress_bar(5, desc="x", stream=out), ProgressLines)
    terminal = _Terminal()
    with progress_bar(5, desc="bar", unit="shower", stream=terminal) as bar:
        bar.update(5)
    assert "bar" in terminal.getvalue()
    assert "\r" in terminal.getvalue()
    silent = io.StringIO()
    with progress_bar(5, desc="x", stream=silent, enabled=False) as bar:
        bar.update(5)
    assert silent.getvalue() == ""
    assert progress_mode(True, io.StringIO()) == "lines"
    assert progress_mode(True, _Terminal()) == "bar"
    assert progress_mode(False, _Terminal()) == "epochs"


@pytest.mark.parametrize("duration", [(5.04, "5.0 s"), (42.4, "42 s"), (200, "3 min 20 s"), (7500, "2 h 05 min")])
def test_durations(duration: tuple[float, str]) -> None:
    assert format_duration(duration[0]) == duration[1]


class _Summary(keras.callbacks.Callback):
    """Prints a validation summary at the end of every epoch, as the trainer's selection logger does."""

    def __init__(self, out: io.StringIO) -> None:
        super().__init__()
        self.out = out

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.out.write(f"epoch {epoch + 1}: metric = 0.5\n")


@pytest.mark.parametrize("mode", ["lines", "bar", "epochs"])
def test_the_validation_summary_is_on_its_own_line(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _Terminal() if mode == "bar" else io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)  # where Keras' bar writes
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.linspace(-1, 1, 32, dtype=np.float32)[:, None]
    model.fit(x, 2 * x, batch_size=8, epochs=2, verbose=0, callbacks=[TrainingProgress(mode), _Summary(out)])
    text = out.getvalue()
    lines = text.splitlines()
    assert lines.count("epoch 1: metric = 0.5") == 1, text
    assert lines.count("epoch 2: metric = 0.5") == 1, text
    if mode != "bar":
        assert "\x1b" not in text
        assert "\r" not in text
        epoch_lines = [line for line in lines if line.startswith("epoch 1/2: 4 steps in")]
        assert len(epoch_lines) == 1, text
        assert "loss=" in epoch_lines[0]
        assert lines[lines.index(epoch_lines[0]) + 1] == "epoch 1: metric = 0.5"
    else:
        assert "Epoch 1/2" in lines
        bar_line = lines[lines.index("epoch 1: metric = 0.5") - 1]
        assert "4/4" in bar_line.rsplit("\r", 1)[-1]  # the finished bar, then the summary


def test_a_simulation_logged_to_a_file_has_plain_progress_lines(tmp_path: Path) -> None:
    result = run_command_line(
        "caloml.data", "simulate", "-n", "40", "--workers", "1", "--out", tmp_path / "x.h5", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # progress goes to stdout in a log; stderr stays for errors
    assert "\x1b" not in result.stdout
    assert "\r" not in result.stdout
    assert re.search(r"^simulate electron: 40 showers in [0-9.]+ s, .*showers/s$", result.stdout, re.M), result.stdout
