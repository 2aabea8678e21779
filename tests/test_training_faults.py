"""Bad data met during training is one line naming the file (and the event and key where known), for every trainer.

A NaN cell, a corrupt shard and a truncated shard, wherever that kind of input applies: the 3DGAN, CaloPointFlow and
the Calorimeter Pyramid read TFRecords (a NaN cannot enter them: the conversion refuses it, the CRC guards the
records), Triforce and the baselines read LCD HDF5 files or TFRecords, the crystal generators read one HDF5 file.
Most cases run in-process through :func:`caloml.errors.run_cli` (exit status 2, one line on stderr, no traceback);
the Triforce NaN cell, which once hung the process after a wrapped TensorFlow error, runs as a user runs it, in a
subprocess bounded by a timeout. A damaged shard is usually found while the task prepares its data; the
``during_fit`` tests damage it right after that, so that ``fit`` meets it and the trainer must name the shard from
the task's ``input_records`` (those in-process runs are bounded by :data:`FIT_TIMEOUT_S`). The tiny input files are
shared by the module.
"""

from __future__ import annotations

import faulthandler
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from caloml.data.lcd import LCDWriter
from caloml.data.tfrecord import convert_to_tfrecords, shard_paths
from caloml.errors import USER_ERROR_EXIT_CODE, run_cli
from caloml.sim.run import SimulationRequest, simulate_file
from caloml.tasks.pointflow.task import PointFlowTask
from caloml.tasks.pyramid.task import PyramidTask
from caloml.tasks.triforce.task import TriforceTask
from caloml.train import main as train_main

#: Seconds a bad-data run may take before the test calls it a hang.
TIMEOUT_S = 240
#: Seconds an in-process run that meets damage inside ``fit`` may take (the process exits past it).
FIT_TIMEOUT_S = 180


def damage_last_shard(records: Path, out: Path, how: str) -> Path:
    """A copy of the TFRecord directory ``records`` at ``out`` whose last shard is ``truncate``\\ d to half its
    bytes or ``corrupt``\\ ed (64 bytes flipped in its middle)."""
    shutil.copytree(records, out)
    damage_shard(shard_paths(out)[-1], how)
    return out


def damage_shard(shard: Path, how: str) -> None:
    """``truncate`` the TFRecord file ``shard`` to half its bytes, or ``corrupt`` it (64 bytes flipped mid-file)."""
    data = bytearray(shard.read_bytes())
    if how == "truncate":
        del data[len(data) // 2 :]
    else:
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(b ^ 0x5A for b in data[middle : middle + 64])
    shard.write_bytes(bytes(data))


def damage_after_prepare(monkeypatch: pytest.MonkeyPatch, task_class: type, records: Path, how: str) -> Path:
    """Damage the last shard of ``records`` right after ``task_class.prepare_data`` has read and checked it (a
    shard damaged while a run goes on): the damage is met inside ``fit``, where the trainer verifies the
    directories of the task's ``input_records`` to name the shard. Returns that shard."""
    prepare = task_class.prepare_data
    shard = shard_paths(records)[-1]

    def prepare_then_damage(self: object, config: object, *, chief: bool) -> object:
        data = prepare(self, config, chief=chief)
        damage_shard(shard, how)
        return data

    monkeypatch.setattr(task_class, "prepare_data", prepare_then_damage)
    return shard


@pytest.fixture
def bounded() -> Iterator[None]:
    """The test's process exits (dumping every thread's stack) when the test runs past :data:`FIT_TIMEOUT_S`:
    a pipeline that hangs after an error fails the run instead of stalling it."""
    faulthandler.dump_traceback_later(FIT_TIMEOUT_S, exit=True, file=sys.__stderr__)
    yield
    faulthandler.cancel_dump_traceback_later()


def set_nan(path: Path, out: Path, key: str, index: tuple[int, ...]) -> Path:
    """A copy of the HDF5 file ``path`` at ``out`` with one NaN at ``key[index]`` (caloml's writers refuse NaN)."""
    shutil.copyfile(path, out)
    with h5py.File(out, "r+") as handle:
        handle[key][index] = np.nan
    return out


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``python -m caloml.train ARGV`` in-process as its console entry point; the single error line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_status:
        run_cli(train_main, argv)
    assert exit_status.value.code == USER_ERROR_EXIT_CODE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-2000:]
    assert lines[0].startswith("caloml: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("training-faults")


def _simulate(root: Path, geometry: str, particle: str, n: int, seed: int, energy: tuple[float, float]) -> Path:
    path = root / f"{geometry}-{particle}-{seed}.h5"
    simulate_file(SimulationRequest(geometry, particle, n, seed, energy_range_gev=energy).resolve(), path, workers=1)
    return path


@pytest.fixture(scope="module")
def gan_records(root: Path) -> dict[str, Path]:
    """3DGAN training (24 electrons, 3 shards) and validation (8) records, 100-200 GeV."""
    out = {}
    for role, n, seed in (("train", 24, 2), ("validation", 8, 3)):
        h5 = _simulate(root, "lcd-gen", "electron", n, seed, (100.0, 200.0))
        out[role] = root / f"gan-{role}"
        convert_to_tfrecords([h5], out[role], shard_events=8)
    return out


GAN_ARGS = ["gan", "--energy-range", "100", "200", "--batch-size", "4", "--steps-per-epoch", "1", "--no-progress"]


@pytest.mark.parametrize("how", ["truncate", "corrupt"])
@pytest.mark.parametrize("role", ["train", "validation"])
def test_gan_damaged_shard_is_one_line_naming_it(gan_records, root, capsys, how, role):
    damaged = damage_last_shard(gan_records[role], root / f"gan-{role}-{how}", how)
    data = {**gan_records, role: damaged}
    argv = [*GAN_ARGS, "--data", str(data["train"]), "--validation-data", str(data["validation"])]
    line = one_line_error([*argv, "--run-dir", str(root / f"run-gan-{role}-{how}")], capsys)
    assert str(shard_paths(damaged)[-1]) in line
    assert "truncated or corrupt TFRecord shard" in line
    assert "{{function_node" not in line
    assert "[Op:" not in line


# -- reconstruction: Triforce and the baselines ------------------------------------------------------------------------
def _lcd_file(path: Path, make_lcd: Callable[..., dict], pdg_id: int, seed: int, n: int = 48) -> Path:
    events = make_lcd(n, seed=seed)
    events["pdgID"] = np.full(n, pdg_id, np.int32)
    events["recoEta"], events["recoPhi"] = events["eta"], events["phi"]
    events["openingAngle"] = np.full(n, 0.001, np.float32)  # every pi0 passes the gamma-vs-pi0 cut
    with LCDWriter(path) as writer:
        writer.append(events)
    return path


@pytest.fixture(scope="module")
def reco_files(root: Path, make_lcd: Callable[..., dict]) -> dict[str, Path]:
    """Photons, and pi0s with one NaN HCAL cell in event 37 (the issue's case), as LCD HDF5 files."""
    photons = _lcd_file(root / "photons.h5", make_lcd, 22, seed=1)
    pi0 = _lcd_file(root / "pi0.h5", make_lcd, 111, seed=2)
    return {
        "photons": photons,
        "pi0": pi0,
        "pi0_nan": set_nan(pi0, root / "pi0-nan.h5", "HCAL", (37, 5, 5, 30)),
        "pi0_nan_ecal": set_nan(pi0, root / "pi0-nan-ecal.h5", "ECAL", (11, 25, 25, 12)),
    }


TRIFORCE_ARGS = ["triforce", "--arch", "dnn", "--task", "gamma-vs-pi0", "--preset", "quick", "--no-progress"]


def test_triforce_nan_cell_is_one_line_and_the_process_exits(reco_files, root):
    """The issue's command: a NaN HCAL cell read by the pipeline's generator; no wrapped error, no hang."""
    command = [sys.executable, "-m", "caloml.train", *TRIFORCE_ARGS, "--run-dir", str(root / "run-triforce-nan")]
    command += ["--data", str(reco_files["photons"]), str(reco_files["pi0_nan"])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert result.returncode == USER_ERROR_EXIT_CODE, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "UnknownError" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"caloml: error: {reco_files['pi0_nan']}: key 'HCAL': event 37 has NaN or infinite values"]
    assert not list((root / "run-triforce-nan" / "checkpoints").glob("ckpt-*"))  # no epoch finished


@pytest.fixture(scope="module")
def reco_records(root: Path, reco_files: dict[str, Path]) -> Path:
    """The pi0 file as TFRecords in 3 shards."""
    out = root / "pi0-records"
    convert_to_tfrecords([reco_files["pi0"]], out, shard_events=16)
    return out


@pytest.mark.parametrize("how", ["truncate", "corrupt"])
def test_triforce_damaged_shard_is_one_line_naming_it(reco_files, reco_records, root, capsys, how):
    damaged = damage_last_shard(reco_records, root / f"pi0-records-{how}", how)
    argv = [*TRIFORCE_ARGS, "--data", str(reco_files["photons"]), str(damaged), "--run-dir", str(root / f"rt-{how}")]
    line = one_line_error(argv, capsys)
    assert str(shard_paths(damaged)[-1]) in line


@pytest.mark.parametrize("how", ["truncate", "corrupt"])
def test_triforce_shard_damaged_during_fit_is_one_line_naming_it(
    reco_files, reco_records, root, capsys, monkeypatch, bounded, how
):
    records = root / f"pi0-records-fit-{how}"
    shutil.copytree(reco_records, records)
    shard = damage_after_prepare(monkeypatch, TriforceTask, records, how)
    argv = [*TRIFORCE_ARGS, "--data", str(reco_files["photons"]), str(records), "--run-dir", str(root / f"rtf-{how}")]
    line = one_line_error(argv, capsys)
    assert str(shard) in line
    assert "truncated or corrupt TFRecord shard" in line


def test_triforce_truncated_hdf5_file_is_one_line(reco_files, root, capsys):
    truncated = root / "pi0-truncated.h5"
    truncated.write_bytes(reco_files["pi0"].read_bytes()[: reco_files["pi0"].stat().st_size // 2])
    argv = [*TRIFORCE_ARGS, "--data", str(reco_files["photons"]), str(truncated), "--run-dir", str(root / "rt-h5")]
    line = one_line_error(argv, capsys)
    assert str(truncated) in line


BDT_ARGS = ["--set", "trainer.search_points=2", "--set", "model.n_estimators=[20]", "--set", "runtime.threads=1"]


def test_baseline_reading_features_only_names_the_keys_it_checked(reco_files, root, capsys):
    """A features-only baseline does not read the cells: it says which keys it checked (a NaN cell passes)."""
    argv = ["linreg", "--particle", "pi0", "--data", str(reco_files["pi0_nan_ecal"]), "--run-dir", str(root / "lin")]
    assert train_main([*argv, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "checked for NaN and infinite values: the per-event keys" in out
    assert "ECAL_E" in out
    assert "(it reads no cells)" in out


def test_baseline_nan_feature_is_one_line_naming_file_key_and_event(reco_files, root, capsys):
    nan_sum = set_nan(reco_files["pi0"], root / "pi0-nan-sum.h5", "ECAL_E", (9,))
    argv = ["linreg", "--particle", "pi0", "--data", str(nan_sum), "--run-dir", str(root / "lin-nan"), "--no-progress"]
    line = one_line_error(argv, capsys)
    assert str(nan_sum) in line
    assert "'ECAL_E'" in line
    assert "event 9" in line


@pytest.mark.parametrize("how", ["truncate", "corrupt"])
def test_baseline_damaged_shard_is_one_line_naming_it(reco_records, root, capsys, how):
    damaged = damage_last_shard(reco_records, root / f"pi0-records-lin-{how}", how)
    argv = ["linreg", "--particle", "pi0", "--data", str(damaged), "--run-dir", str(root / f"lin-{how}")]
    line = one_line_error([*argv, "--no-progress"], capsys)
    assert str(shard_paths(damaged)[-1]) in line


def test_baseline_reading_cells_checks_them(reco_files, root, capsys):
    """With --resample the baseline reads the cells: a NaN ECAL cell is one line naming file, key and event."""
    argv = ["bdt", "--task", "gamma-vs-pi0", "--resample", "atlas", *BDT_ARGS, "--no-progress"]
    argv += ["--data", str(reco_files["photons"]), str(reco_files["pi0_nan_ecal"]), "--run-dir", str(root / "bdt-c")]
    line = one_line_error(argv, capsys)
    assert f"{reco_files['pi0_nan_ecal']}: key 'ECAL': event 11 has NaN or infinite values" in line


# -- crystal generators ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crystal_file(root: Path) -> Path:
    return _simulate(root, "crystal-5x5", "electron", 64, 5, (0.5, 5.0))


@pytest.mark.parametrize("model", ["wgan", "vae", "vaewgan"])
def test_crystal_nan_cell_is_one_line_naming_file_and_event(crystal_file, root, capsys, model):
    with h5py.File(crystal_file, "r") as handle:
        index = (13,) + (0,) * (handle["showers"].ndim - 1)
    with_nan = set_nan(crystal_file, root / f"crystal-nan-{model}.h5", "showers", index)
    argv = [model, "--preset", "quick", "--data", str(with_nan), "--run-dir", str(root / f"c-{model}"), "--no-progress"]
    if model == "vaewgan":  # starts from a trained VAE: the file is read before its weights are
        argv += ["--init-from", str(root / "no-vae-run")]
    line = one_line_error(argv, capsys)
    assert f"{with_nan}: key 'showers': event 13 has NaN or infinite values" in line


def test_crystal_truncated_file_is_one_line(crystal_file, root, capsys):
    truncated = root / "crystal-truncated.h5"
    truncated.write_bytes(crystal_file.read_bytes()[: crystal_file.stat().st_size // 2])
    line = one_line_error(
        ["wgan", "--preset", "quick", "--data", str(truncated), "--run-dir", str(root / "ct")], capsys
    )
    assert str(truncated) in line


# -- CaloPointFlow and the Calorimeter Pyramid: CaloChallenge records --------------------------------------------------
@pytest.fixture(scope="module")
def calochallenge_records(root: Path, calochallenge_file: Path) -> Path:
    out = root / "calochallenge-records"
    convert_to_tfrecords([calochallenge_file], out, shard_events=10)
    return out


@pytest.mark.parametrize("how", ["truncate", "corrupt"])
@pytest.mark.parametrize("model", ["pointflow", "pyramid"])
def test_calochallenge_damaged_shard_is_one_line_naming_it(calochallenge_records, root, capsys, how, model):
    damaged = damage_last_shard(calochallenge_records, root / f"cc-{model}-{how}", how)
    argv = [model, "--data", str(damaged), "--validation-data", str(calochallenge_records), "--no-progress"]
    line = one_line_error([*argv, "--run-dir", str(root / f"run-{model}-{how}")], capsys)
    assert str(damaged) in line


#: One case runs by default (a quick run's first step costs tens of seconds); the others are ``slow``.
FIT_CASES = [
    pytest.param(PointFlowTask, "corrupt", id="pointflow-corrupt"),
    pytest.param(PointFlowTask, "truncate", id="pointflow-truncate", marks=pytest.mark.slow),
    pytest.param(PyramidTask, "corrupt", id="pyramid-corrupt", marks=pytest.mark.slow),
    pytest.param(PyramidTask, "truncate", id="pyramid-truncate", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("task_class", "how"), FIT_CASES)
def test_calochallenge_shard_damaged_during_fit_is_one_line_naming_it(
    calochallenge_records, root, capsys, monkeypatch, bounded, task_class, how
):
    model = task_class.name
    records = root / f"cc-fit-{model}-{how}"
    shutil.copytree(calochallenge_records, records)
    shard = damage_after_prepare(monkeypatch, task_class, records, how)
    argv = [model, "--preset", "quick", "--data", str(records), "--validation-data", str(calochallenge_records)]
    line = one_line_error([*argv, "--no-progress", "--run-dir", str(root / f"run-fit-{model}-{how}")], capsys)
    assert str(shard) in line
    assert "truncated or corrupt TFRecord shard" in line
