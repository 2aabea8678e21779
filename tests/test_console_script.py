"""The one ``caloml`` console script: subcommands beside ``python -m``, help without TensorFlow, one-line errors."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from caloml.__main__ import COMMAND_LINES, cli, main
from tests.command_line import run_command_line

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_command_without_importing_tensorflow() -> None:
    code = "import sys; from caloml.__main__ import main; main(['--help']); print('tf', 'tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    for name in ("data", "train", "scan", "generate", "export", "evaluate", "bench"):
        assert f"\n  {name} " in result.stdout
    assert result.stdout.strip().endswith("tf False")


def test_python_m_caloml_runs_a_data_command(lcd_file: Path) -> None:
    result = run_command_line("caloml", "data", "inspect", lcd_file, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "lcd" in result.stdout.lower()
    assert "ECAL" in result.stdout


def test_an_unknown_command_is_one_line_with_status_2() -> None:
    unknown = run_command_line("caloml", "simulate", timeout=60)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "caloml: error: unknown command 'simulate'; choose one of data, train, scan, generate, export, evaluate,"
        " bench (caloml --help)"
    ]


def test_the_entry_function_exits_with_the_commands_status(
    lcd_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as done:
        cli(["data", "inspect", str(lcd_file)])
    assert done.value.code == 0
    assert "ECAL" in capsys.readouterr().out
    with pytest.raises(SystemExit) as failed:
        cli(["nosuch"])
    assert failed.value.code == 2
    assert capsys.readouterr().err.startswith("caloml: error: unknown command 'nosuch'")
    with pytest.raises(SystemExit) as missing:
        cli(["data", "inspect", str(tmp_path / "missing.h5")])
    assert missing.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("caloml: error: ")
    assert "missing.h5" in line
    assert main(["--version"]) == 0


def test_every_console_script_points_at_a_cli_function() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["caloml"] == "caloml.__main__:cli"
    for name in ("data", "train", "scan", "generate", "export", "evaluate", "bench"):
        assert f"caloml-{name}" in scripts
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function))
    for module, _ in COMMAND_LINES.values():
        assert callable(importlib.import_module(module).main)
