"""Non-chief workers' scratch directories: named after their process, and removed by a re-run once it has died."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from caloml.atomic_files import temporary_name
from caloml.training.trainer import worker_scratch_directory


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_scratch_name_carries_the_worker_and_this_process(tmp_path: Path) -> None:
    scratch = worker_scratch_directory("worker-1", tmp_path)
    assert scratch.is_dir()
    assert scratch.parent == tmp_path
    assert scratch.name.startswith(temporary_name(tmp_path / "caloml-worker-1"))
    assert f"-{os.getpid()}-" in scratch.name
    assert worker_scratch_directory("worker-1", tmp_path) != scratch  # two runs never share one


def test_a_rerun_removes_the_scratch_of_a_killed_worker_only(tmp_path: Path) -> None:
    live = worker_scratch_directory("worker-2", tmp_path)  # this process: alive
    (live / "checkpoints").mkdir()
    dead_pid = _dead_pid()
    dead = tmp_path / temporary_name(tmp_path / "caloml-worker-1").replace(f"-{os.getpid()}-", f"-{dead_pid}-")
    dead = dead.with_name(dead.name + "abc123.tmp")
    (dead / "checkpoints").mkdir(parents=True)
    (dead / "checkpoints" / "ckpt-1.index").write_bytes(b"weights")
    unrelated = tmp_path / "caloml-worker-1-not-ours"  # a name without the owner's pid is never touched
    unrelated.mkdir()

    fresh = worker_scratch_directory("worker-1", tmp_path)

    assert not dead.exists()
    assert (live / "checkpoints").is_dir()
    assert unrelated.is_dir()
    assert fresh.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, fresh.name, unrelated.name])
