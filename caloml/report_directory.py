"""Report directories (the simulator's validation, the generator evaluation): JSON-ready values and an atomic
install of a finished directory, never replacing a non-empty one without ``overwrite``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from caloml.errors import CalomlError, OutputExistsError


def check_report_dir(out: Path, overwrite: bool, what: str = "report") -> None:
    """Refuse an output that is a file, or a non-empty directory without ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise CalomlError(f"{out} exists and is not a directory; the {what} is a directory")
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise OutputExistsError(f"{out} exists and is not empty; pass --overwrite (overwrite=True) to replace it")


def install_report_dir(tmp: Path, out: Path, overwrite: bool, what: str = "report") -> None:
    """Move the finished directory ``tmp`` to ``out``, replacing an empty (or, with ``overwrite``, any) ``out``."""
    check_report_dir(out, overwrite, what)
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old / out.name, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out.is_dir():
            out.rmdir()
        os.replace(tmp, out)
