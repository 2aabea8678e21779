"""After a kill: the re-run of a command gives what a clean run gives, and nothing of the dead run is left.

``simulate`` is killed with SIGKILL while its worker processes write the file: the workers must die with it, its
temporary file (recognisable by its name: host and process id) must be removed by the next run, and the re-run's
file must equal a clean run's. ``generate`` (slow: a full-size GAN) is killed the same way. ``caloml.train``
resumes from its last checkpoint (``tests/test_train_gan.py`` checks the history; here, slow, that the resumed run
leaves no temporaries). The real-limit cases (a full tmpfs, ``ulimit -f``) run the command lines in subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from command_line import run_command_line

from caloml.atomic_files import TEMPORARY_MARKER
from caloml.sim.run import SimulationRequest, simulate_file

ROOT = Path(__file__).resolve().parents[1]


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _descendants(pid: int) -> set[int]:
    """The process ids of every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        frontier = children - found
        found |= children
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie has died


def _temporaries(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if TEMPORARY_MARKER in path.name)


def _kill_when(command: list[str], cwd: Path, ready: Callable[[], bool], timeout_s: float = 300) -> set[int]:
    """Start ``command``, SIGKILL it once ``ready()``; returns the descendants it had then."""
    with (cwd / "killed.out").open("w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=_environment(), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while not ready() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, (cwd / "killed.out").read_text()[-3000:]
        children = _descendants(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
    return children


def _datasets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as file:
        return {key: file[key][()] for key in file}


SIMULATE = ["simulate", "-n", "512", "--energy", "10", "--seed", "4", "--no-progress"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_killed_simulate_workers_die_and_the_rerun_equals_a_clean_run(tmp_path: Path) -> None:
    out = tmp_path / "showers.h5"
    command = [sys.executable, "-m", "caloml.data", *SIMULATE, "--workers", "2", "--out", str(out)]

    def writing() -> bool:  # a temporary file that already holds a few chunks
        return any(path.stat().st_size > 100_000 for path in _temporaries(tmp_path))

    workers = _kill_when(command, tmp_path, writing)
    assert workers, "simulate --workers 2 started no worker processes"
    deadline = time.monotonic() + 15
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_alive, workers)), f"processes outlived the killed command: {sorted(filter(_alive, workers))}"
    stale = _temporaries(tmp_path)
    assert len(stale) == 1
    assert not out.exists()

    rerun = run_command_line("caloml.data", *SIMULATE, "--workers", "1", "--out", out, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _temporaries(tmp_path) == []  # the dead run's temporary was recognised and removed

    clean = tmp_path / "clean.h5"
    simulate_file(SimulationRequest("lcd-gen", "electron", 512, 4, energy_range_gev=(10.0, 10.0)), clean, workers=1)
    rerun_data, clean_data = _datasets(out), _datasets(clean)
    assert rerun_data.keys() == clean_data.keys()
    for key in clean_data:
        np.testing.assert_array_equal(rerun_data[key], clean_data[key], err_msg=key)


def test_a_live_runs_temporary_is_kept_and_another_hosts_too(tmp_path: Path) -> None:
    from caloml.atomic_files import new_temporary_file, remove_stale_temporaries, temporary_name

    mine = new_temporary_file(tmp_path / "a.h5")  # this process is alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / temporary_name(tmp_path / "b.h5").replace(f"-{os.getpid()}-", f"-{dead_pid}-")
    stale = stale.with_name(stale.name + "x1y2.tmp")
    stale.write_bytes(b"left by a killed run")
    other_host = tmp_path / f".c.h5.{TEMPORARY_MARKER}-otherhost-{dead_pid}-abcd.tmp"
    other_host.write_bytes(b"a run on another machine of a shared file system")
    unrelated = tmp_path / ".d.h5.abcdef.tmp"
    unrelated.write_bytes(b"not caloml's naming")

    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists()
    assert [path.exists() for path in (mine, other_host, unrelated)] == [True, True, True]


def test_a_run_killed_while_replacing_a_directory_gets_its_old_output_back(tmp_path: Path) -> None:
    from caloml.atomic_files import remove_stale_temporaries, temporary_name

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    aside = tmp_path / (temporary_name(tmp_path / "report").replace(f"-{os.getpid()}-", f"-{dead.stdout.strip()}-"))
    aside = aside.with_name(aside.name + "q.old.tmp")
    (aside / "report").mkdir(parents=True)
    (aside / "report" / "metrics.json").write_text("{}")

    remove_stale_temporaries(tmp_path)
    assert (tmp_path / "report" / "metrics.json").read_text() == "{}"
    assert not aside.exists()


# -- real limits: a full file system (a tmpfs in a private mount namespace), the file-size limit ----------------------
def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True, check=False
    )
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(not _can_mount_tmpfs(), reason="cannot mount a tmpfs (unshare -rm) here")


def _on_full_tmpfs(size: str, mount: Path, *args: object) -> subprocess.CompletedProcess:
    """``python -m ARGS`` with ``mount`` a fresh tmpfs of ``size``; prints the tmpfs' listing after ``--listing--``."""
    mount.mkdir(exist_ok=True)
    script = f'mount -t tmpfs -o size={size} tmpfs {mount} && "$@"; status=$?; echo --listing--; ls -A {mount}; '
    script += "exit $status"
    command = ["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, "-m", *map(str, args)]
    return subprocess.run(
        command, cwd=mount.parent, env=_environment(), capture_output=True, text=True, timeout=600, check=False
    )


def _assert_one_line_and_empty(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "Segmentation" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("caloml: error: "), result.stderr
    assert fragment in result.stderr
    assert result.stdout.split("--listing--")[-1].split() == [], result.stdout  # nothing half-written


@needs_tmpfs
def test_simulate_onto_a_full_tmpfs_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    mount = tmp_path / "full"
    args = ["simulate", "-n", "16", "--energy", "10", "--workers", "1", "--out", mount / "x.h5", "--no-progress"]
    result = _on_full_tmpfs("64k", mount, "caloml.data", *args)
    _assert_one_line_and_empty(result, "no space left on the device")


@pytest.mark.slow  # TensorFlow starts in the subprocess; the in-process matrix row convert-disk-full is quick
@needs_tmpfs
def test_convert_onto_a_full_tmpfs_is_one_line_and_leaves_nothing(tmp_path: Path, lcd_file: Path) -> None:
    mount = tmp_path / "full"
    result = _on_full_tmpfs("64k", mount, "caloml.data", "convert", lcd_file, "--out", mount / "records")
    _assert_one_line_and_empty(result, "no space left on the device")
    assert ".caloml-tmp" not in result.stderr  # the output is named, not its temporary


def test_the_file_size_limit_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    command = (
        f'ulimit -f 40 && exec "{sys.executable}" -m caloml.data simulate -n 8 --energy 10 --workers 1 --out {out}'
    )
    result = subprocess.run(["sh", "-c", command], env=_environment(), capture_output=True, text=True, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith("caloml: error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "file too large" in result.stderr
    assert list(tmp_path.iterdir()) == []


# -- generate and train (slow: a full-size GAN, a training run) -------------------------------------------------------
@pytest.fixture(scope="module")
def gan_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of a full-size 3DGAN with random weights (as the trainer writes it)."""
    import keras
    import yaml
    from random_gan import random_theta_gan

    run = tmp_path_factory.mktemp("runs") / "gan-electron"
    run.mkdir()
    keras.saving.save_model(random_theta_gan(seed=3), run / "model.keras")
    (run / "config.yaml").write_text(yaml.safe_dump({"runtime": {"seed": 7}, "data": {"particle": "electron"}}))
    return run


@pytest.mark.slow
def test_killed_generate_reruns_to_the_clean_result(tmp_path: Path, gan_run: Path) -> None:
    args = ["gan", "--model", str(gan_run), "-n", "192", "--batch-size", "8", "--seed", "5", "--no-progress"]
    out = tmp_path / "generated.h5"

    def writing() -> bool:
        return any(path.stat().st_size > 50_000 for path in _temporaries(tmp_path))

    _kill_when([sys.executable, "-m", "caloml.generate", *args, "--out", str(out)], tmp_path, writing)
    assert not out.exists()
    assert len(_temporaries(tmp_path)) == 1

    rerun = run_command_line("caloml.generate", *args, "--out", out, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _temporaries(tmp_path) == []
    clean = tmp_path / "clean.h5"
    first = run_command_line("caloml.generate", *args, "--out", clean, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    rerun_data, clean_data = _datasets(out), _datasets(clean)
    for key in clean_data:
        np.testing.assert_allclose(rerun_data[key], clean_data[key], rtol=1e-5, atol=1e-7, err_msg=key)


@pytest.mark.slow
def test_killed_training_resumes_and_leaves_no_temporaries(tmp_path: Path) -> None:
    args = [
        "gan", "--events", "24", "--energy-range", "100", "200", "--batch-size", "4", "--steps-per-epoch", "2",
        "--no-progress", "--set", "data.validation_events=8", "--set", "trainer.selection_window=2",
        "--epochs", "3", "--run-dir", "run",
    ]  # fmt: skip
    first_checkpoint = tmp_path / "run" / "checkpoints" / "ckpt-1.index"
    _kill_when([sys.executable, "-m", "caloml.train", *args], tmp_path, first_checkpoint.exists, timeout_s=500)
    resumed = run_command_line("caloml.train", *args, cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2, 3]
    assert _temporaries(tmp_path) == []


def test_a_rerun_of_a_killed_training_removes_its_half_written_files(tmp_path: Path) -> None:
    from caloml.training.run_directory import RunDirectory

    run = RunDirectory(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    run.config.write_text("runtime: {seed: 1}\n")
    (run.checkpoints / "ckpt-1.index").write_bytes(b"finished")
    (run.checkpoints / "ckpt-2_temp").mkdir()  # TensorFlow's shards of a save that never finished
    (run.checkpoints / "ckpt-2_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"half")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    model_tmp = run.path / f".model.keras.{TEMPORARY_MARKER}-x-{dead.stdout.strip()}-abc.tmp.keras"
    model_tmp.write_bytes(b"half a model")
    model_tmp = model_tmp.with_name(model_tmp.name.replace("-x-", f"-{_host()}-"))
    model_tmp.write_bytes(b"half a model")

    removed = run.remove_leftovers()
    assert sorted(path.name for path in removed) == sorted([model_tmp.name, "ckpt-2_temp"])
    assert (run.checkpoints / "ckpt-1.index").exists()


def _host() -> str:
    from caloml.atomic_files import temporary_name

    return temporary_name(Path("x")).split(f"{TEMPORARY_MARKER}-")[1].split("-")[0]


@pytest.mark.slow
@needs_tmpfs
def test_training_onto_a_full_tmpfs_is_one_line(tmp_path: Path) -> None:
    mount = tmp_path / "full"
    args = [
        "caloml.train", "gan", "--events", "24", "--energy-range", "100", "200", "--batch-size", "4",
        "--steps-per-epoch", "2", "--epochs", "1", "--no-progress", "--set", "data.validation_events=8",
        "--run-dir", mount / "run",
    ]  # fmt: skip
    result = _on_full_tmpfs("300k", mount, *args)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]  # TensorFlow's own log lines may come before
    assert last.startswith("caloml: error: ")
    assert "cannot write: no space left on the device" in last
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@needs_tmpfs
@pytest.mark.parametrize("command", ["generate", "export"])
def test_generating_and_exporting_onto_a_full_tmpfs_is_one_line(tmp_path: Path, gan_run: Path, command: str) -> None:
    mount = tmp_path / "full"
    if command == "generate":
        args = ["caloml.generate", "gan", "--model", gan_run, "-n", "64", "--no-progress", "--out", mount / "g.h5"]
    else:
        args = ["caloml.export", "gan", "--model", gan_run, "--saved-models", mount / "saved_models"]
    result = _on_full_tmpfs("200k", mount, *args)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]  # TensorFlow's own log lines may come before
    assert last.startswith("caloml: error: ")
    assert ": no space left on the device" in last
    assert "Traceback" not in result.stderr
    assert TEMPORARY_MARKER not in last
    listing = result.stdout.split("--listing--")[-1].split()
    assert all(TEMPORARY_MARKER not in name for name in listing), listing
