"""The simulator's commands: ``simulate``, ``validate`` and the main job ``prepare``."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pytest
from command_line import run_command_line

from caloml.cli_args import parse_angle
from caloml.data.__main__ import main
from caloml.data.lcd import LCDReader
from caloml.errors import OutputExistsError

_simulate_cli = partial(run_command_line, "caloml.data", "simulate")


def test_parse_angle() -> None:
    assert parse_angle("90deg") == pytest.approx(np.pi / 2)
    assert parse_angle("1.2") == pytest.approx(1.2)


def test_simulate_command_writes_the_requested_showers(tmp_path: Path) -> None:
    out = tmp_path / "pi0.h5"
    result = _simulate_cli(
        "--geometry", "lcd-gen", "--particle", "pi0", "-n", 20, "--seed", 4, "--energy", 50,
        "--theta", "70deg", "--out", out, "--workers", 1, "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with LCDReader(out) as reader:
        events = reader.read(slice(None))
        config = reader.attrs["caloml_config"]
    np.testing.assert_allclose(events["energy"], 50.0)
    np.testing.assert_allclose(events["theta"], np.deg2rad(70.0), rtol=1e-6)
    assert np.all(events["pdgID"] == 111)
    assert config["seed"] == 4
    assert config["particle"] == "pi0"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--theta", "20deg"), "outside the LCD window"),
        (("--energy", "-5"), "energy range"),
        (("--energy", "nan"), "energy range"),
    ],
)
def test_simulate_bad_request_is_one_line(args: tuple[str, ...], fragment: str, tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    result = _simulate_cli("-n", 4, "--out", out, *args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("caloml: error:")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_simulate_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "keep.h5"
    out.write_bytes(b"user data")
    result = _simulate_cli("-n", 4, "--out", out, "--workers", 1, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        r"caloml: error: .*keep\.h5: output exists; pass overwrite=True \(--overwrite\) to replace it", lines[0]
    )
    assert out.read_bytes() == b"user data"


def test_prepare_runs_reuses_and_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The main job end to end on a small sample: simulate, convert, validate; a rerun reuses the outputs and a
    different configuration is refused without --overwrite."""
    run_dir, records = tmp_path / "run", tmp_path / "records"
    common = ["prepare", "-n", "64", "--quick-validation", "--no-progress", "--run-dir", str(run_dir)]
    common += ["--records", str(records)]
    assert main(common) == 0
    h5_path = run_dir / "lcd-gen-electron.h5"
    with h5py.File(h5_path) as file:
        assert file["ECAL"].shape == (64, 51, 51, 25)
    metadata = json.loads((records / "metadata.json").read_text())
    assert metadata["n_events"] == 64
    assert (run_dir / "validation" / "validation.json").exists()
    assert list((run_dir / "validation").glob("*.png"))

    mtime = h5_path.stat().st_mtime_ns
    capsys.readouterr()
    assert main(common) == 0
    assert "reusing" in capsys.readouterr().out
    assert h5_path.stat().st_mtime_ns == mtime

    with pytest.raises(OutputExistsError, match="different configuration"):
        main([*common[:2], "65", *common[3:]])
    assert h5_path.stat().st_mtime_ns == mtime
