"""Running a caloml command line in a subprocess, as a user does (shared by the command-line tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_command_line(
    module: str, *args: object, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS...`` with its output captured as text; never raises on a non-zero exit status.

    ``env``: the environment of the command (None: this process's)."""
    command = [sys.executable, "-m", module, *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
