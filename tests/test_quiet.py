"""TensorFlow's start-up and C++ log lines: hidden by default, shown with ``--verbose``.

The training command line's quiet default is checked by ``test_tensorboard.py`` (its 3DGAN run).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from command_line import run_command_line

from caloml.cli_commands import CommandRegistry
from caloml.quiet import QUIET_CPP_LOG_LEVEL

#: A line of TensorFlow's C++ logging (``I0000 00:00:17... port.cc:153] oneDNN ...``) or its absl preamble.
TF_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl::InitializeLog)", re.M)


def _environment(**variables: str) -> dict[str, str]:
    """This process's environment without the TensorFlow log level caloml set in it, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, **variables}


def test_a_converting_command_line_prints_no_tensorflow_lines_unless_verbose(lcd_file: Path, tmp_path: Path) -> None:
    quiet = run_command_line(
        "caloml.data", "convert", lcd_file, "--out", tmp_path / "quiet", cwd=tmp_path, env=_environment()
    )
    assert quiet.returncode == 0, quiet.stderr
    assert not TF_LOG_LINE.search(quiet.stderr), quiet.stderr
    assert quiet.stderr == ""
    loud = run_command_line(
        "caloml.data", "convert", lcd_file, "--out", tmp_path / "loud", "--verbose", cwd=tmp_path, env=_environment()
    )
    assert loud.returncode == 0, loud.stderr
    assert TF_LOG_LINE.search(loud.stderr), loud.stderr  # the banner (oneDNN, CUDA stub...) is back
    assert "wrote 40 events" in quiet.stdout
    assert "wrote 40 events" in loud.stdout


def test_import_caloml_then_tensorflow_is_quiet() -> None:
    script = "import caloml, tensorflow as tf; print(float(tf.reduce_sum(tf.ones(3))))"
    command = [sys.executable, "-c", script]
    result = subprocess.run(command, env=_environment(), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3.0"
    assert not TF_LOG_LINE.search(result.stderr), result.stderr


def test_the_training_command_line_takes_verbose_before_loading_its_task(tmp_path: Path) -> None:
    loud = run_command_line("caloml.train", "gan", "--print-config", "--verbose", cwd=tmp_path, env=_environment())
    assert loud.returncode == 0, loud.stderr
    assert TF_LOG_LINE.search(loud.stderr), loud.stderr
    assert "tensorboard_update_freq: 10" in loud.stdout


@pytest.mark.parametrize("where", ["before", "after"])
def test_every_registered_command_takes_verbose(where: str) -> None:
    registry = CommandRegistry("prog", "a test command line")
    seen: list[bool] = []

    def add(subparsers):  # type: ignore[no-untyped-def]
        return subparsers.add_parser("run")

    registry.register("run", add, lambda args: seen.append(args.verbose) or 0)
    argv = ["--verbose", "run"] if where == "before" else ["run", "--verbose"]
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    try:
        assert registry.main(argv) == 0
    finally:
        from caloml.quiet import set_verbose

        set_verbose(False)
    assert seen == [True]
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == level  # quiet again


def test_verbose_shows_what_quiet_hides() -> None:
    from caloml import quiet

    if not quiet.is_quiet():
        pytest.skip("the user set TF_CPP_MIN_LOG_LEVEL")
    import tensorflow as tf

    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == QUIET_CPP_LOG_LEVEL
    assert tf.get_logger().level == logging.WARNING  # no INFO:tensorflow:Assets written to ...
    try:
        quiet.set_verbose()
        assert not quiet.is_quiet()
        assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
        assert tf.get_logger().level == logging.NOTSET  # as before caloml set it (not an interactive session)
    finally:
        quiet.set_verbose(False)
    assert quiet.is_quiet()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == QUIET_CPP_LOG_LEVEL
    assert tf.get_logger().level == logging.WARNING
