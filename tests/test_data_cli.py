"""``python -m caloml.data``: conversion and inspection, and one-line errors (exit 2, no traceback) on bad input."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pytest
from command_line import run_command_line

from caloml.data.__main__ import SUBCOMMANDS, build_parser, register

_cli = partial(run_command_line, "caloml.data")


def _assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("caloml: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _lcd(path: Path, **overrides: np.ndarray) -> Path:
    datasets = {"ECAL": np.zeros((4, 51, 51, 25), np.float32), "energy": np.array([10.0, 20.0, 30.0, 40.0])}
    datasets.update(overrides)
    with h5py.File(path, "w") as file:
        for key, value in datasets.items():
            if value is not None:
                file[key] = value
    return path


def _truncated(lcd_file: Path, path: Path) -> Path:
    data = lcd_file.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BAD_INPUTS = {
    "missing-file": (lambda d, f: d / "missing.h5", ["missing.h5", "no such file"]),
    "missing-key": (lambda d, f: _lcd(d / "nokey.h5", energy=None), ["nokey.h5", "missing required key 'energy'"]),
    "wrong-shape": (
        lambda d, f: _lcd(d / "shape.h5", ECAL=np.zeros((4, 50, 51, 25))),
        ["shape.h5", "key 'ECAL' has shape (4, 50, 51, 25), expected (N, 51, 51, 25) or (N, 25, 25, 25)"],
    ),
    "nan-energy": (
        lambda d, f: _lcd(d / "nan.h5", energy=np.array([1.0, 2.0, np.nan, 4.0])),
        ["nan.h5", "key 'energy': event 2 has NaN"],
    ),
    "negative-energy": (
        lambda d, f: _lcd(d / "neg.h5", energy=np.array([1.0, -2.0, 3.0, 4.0])),
        ["neg.h5", "key 'energy': event 1 has a negative energy (-2 GeV)"],
    ),
    "truncated": (lambda d, f: _truncated(f, d / "cut.h5"), ["cut.h5", "truncated or corrupt"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line(case: str, tmp_path: Path, lcd_file: Path) -> None:
    make, fragments = BAD_INPUTS[case]
    source = make(tmp_path, lcd_file)
    result = _cli("convert", source, "--out", tmp_path / "out", cwd=tmp_path)
    _assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()


def test_existing_output_is_left_untouched(tmp_path: Path, lcd_file: Path) -> None:
    out = tmp_path / "records"
    out.mkdir()
    (out / "metadata.json").write_text("{}")
    result = _cli("convert", lcd_file, "--out", out, cwd=tmp_path)
    _assert_one_line_error(result, "records", "output exists", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["metadata.json"]
    assert (out / "metadata.json").read_text() == "{}"


def test_corrupt_shard(tmp_path: Path, records_dir: Path) -> None:
    corrupt = tmp_path / "corrupt"
    shutil.copytree(records_dir, corrupt)
    shard = sorted(corrupt.glob("shard-*"))[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 100] = b"\xff" * 100
    shard.write_bytes(bytes(data))
    result = _cli("verify", corrupt, cwd=tmp_path)
    _assert_one_line_error(result, shard.name, "truncated or corrupt TFRecord shard")


def test_convert_inspect_verify(tmp_path: Path, lcd_file: Path) -> None:
    out = tmp_path / "tf_records" / "ele"
    result = _cli("convert", lcd_file, "--out", out, "--shard-events", "16", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote 40 events in 3 shards" in result.stdout
    assert result.stderr == ""  # TensorFlow's start-up lines are hidden
    result = _cli("inspect", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "3 shards, all present" in result.stdout
    assert "seed:      1234" in result.stdout
    # inspecting an HDF5 file never imports TensorFlow
    code = (
        "import sys; from caloml.data.__main__ import main; "
        f"main(['inspect', {str(lcd_file)!r}]); assert 'tensorflow' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "layout:    lcd (clic-ecal), 40 events" in result.stdout
    assert "particle:  Ele (pdgID 11, from the file name)" in result.stdout
    assert "caloml_config:" in result.stdout


def test_parser_registry() -> None:
    parser = build_parser()
    args = parser.parse_args(["convert", "a.h5", "b.h5", "--out", "tf_records/x", "--shard-events", "64"])
    assert args.files == ["a.h5", "b.h5"]
    assert args.shard_events == 64
    assert not args.overwrite
    assert set(SUBCOMMANDS) >= {"convert", "inspect", "verify"}

    def add_hello(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        parser = subparsers.add_parser("hello", help="say hello")
        parser.add_argument("--name", default="world")
        return parser

    def run_hello(args: argparse.Namespace) -> int:
        return 7 if args.name == "calo" else 0

    register("hello", add_hello, run_hello)
    try:
        args = build_parser().parse_args(["hello", "--name", "calo"])
        assert args.run(args) == 7
    finally:
        del SUBCOMMANDS["hello"]


def test_convert_refuses_to_replace_its_input(tmp_path: Path, lcd_file: Path) -> None:
    source = tmp_path / "input.h5"
    shutil.copy(lcd_file, source)
    before = source.read_bytes()
    result = _cli("convert", source, "--out", source, "--overwrite", cwd=tmp_path)
    _assert_one_line_error(result, "would replace the input")
    assert source.read_bytes() == before
