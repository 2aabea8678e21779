"""Report directories (the simulator's validation, the generator and reconstruction evaluations): refuse to
replace a non-empty directory without ``overwrite``, and install the finished report atomically (the mechanism is
:func:`caloml.atomic_files.atomic_directory`). See ``docs/evaluation.md``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from caloml.atomic_files import atomic_directory
from caloml.errors import CalomlError, OutputExistsError


def check_report_dir(out: Path, overwrite: bool, what: str = "report") -> None:
    """Refuse an output that is a file, or a non-empty directory without ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise CalomlError(f"{out} exists and is not a directory; the {what} is a directory")
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise OutputExistsError(f"{out} exists and is not empty; pass --overwrite (overwrite=True) to replace it")


@contextlib.contextmanager
def report_dir(out: Path, overwrite: bool, what: str = "report") -> Iterator[Path]:
    """Check ``out`` now, yield a temporary directory to write the report into, install it as ``out`` at the end.

    ``out`` is checked again just before the install (another run may have written it meanwhile); on an exception
    the temporary directory is removed and ``out`` is left as it was.
    """
    check_report_dir(out, overwrite, what)
    with atomic_directory(out, check=lambda: check_report_dir(out, overwrite, what)) as tmp:
        yield tmp
