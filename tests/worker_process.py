"""Running a test module as its own worker process: for tests that must configure TensorFlow's devices (logical CPU
replicas) or threads before its runtime starts, which is possible only in a fresh process.

The worker is the test file itself (its ``if __name__ == "__main__":`` block), run with the repository and ``tests/``
on the path, TensorFlow's C++ log lines above warnings hidden and no GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def run_worker(
    test_file: str, *args: str | Path, cwd: Path = REPOSITORY, timeout_s: int = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``python TEST_FILE ARGS...`` in a fresh process and assert it exited with status 0 (the assertion shows
    the end of its output); returns the finished process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(REPOSITORY), str(REPOSITORY / "tests"), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, str(Path(test_file).resolve()), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]
    return result
