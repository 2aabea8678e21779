"""Atomic writes: every file or directory caloml writes appears whole or not at all.

A write goes to a temporary sibling named ``.<name>.<random>.tmp`` in the destination directory and is renamed
onto the destination with :func:`os.replace` when it is complete; an exception (a full disk, a kill signal turned
into ``KeyboardInterrupt``) removes the temporary. The temporary's name is recognisable so that a later run can
clean up after one that died (see :func:`temporary_name`). A directory (TFRecord shards, a report) is built in
a temporary sibling directory the same way and moved onto its destination by :func:`atomic_directory`.
See ``docs/design.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

TEMPORARY_SUFFIX = ".tmp"


def temporary_name(path: Path) -> str:
    """The prefix of the temporary files written for ``path`` (``.<name>.``); they end in ``.tmp``."""
    return f".{path.name}."


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` (``mode`` ``"w"`` or ``"wb"``); rename it onto ``path`` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_name(path), suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    with atomic_file(path, "w") as handle:
        handle.write(text)
    return path


def atomic_write_json(path: Path, value: Any) -> Path:
    """JSON version of :func:`atomic_write_text` (indented, keys in insertion order)."""
    return atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an uncompressed ``.npz`` to ``path`` atomically."""
    with atomic_file(path, "wb") as handle:
        np.savez(handle, **dict[str, Any](arrays))
    return path


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> Path:
    """Let ``write(tmp_path)`` write a file (for libraries that want a path, such as XGBoost), then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_name(path), suffix=path.suffix + TEMPORARY_SUFFIX)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def install_directory(tmp: Path, out: Path) -> None:
    """Move the finished directory ``tmp`` onto ``out`` (a sibling), replacing whatever ``out`` is.

    An existing ``out`` is first moved aside into a temporary sibling, then removed once ``tmp`` is in place (or
    put back if the move fails), so ``out`` is at every moment either the old content or the new.
    """
    if not out.exists() and not out.is_symlink():
        os.replace(tmp, out)
        return
    aside = Path(tempfile.mkdtemp(prefix=temporary_name(out), suffix=".old" + TEMPORARY_SUFFIX, dir=out.parent))
    os.replace(out, aside / out.name)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(aside / out.name, out)
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(out: Path, check: Callable[[], None] | None = None) -> Iterator[Path]:
    """Yield a new empty temporary directory next to ``out``; when the block succeeds, move it onto ``out``.

    ``check()`` runs just before the move (to refuse an output that appeared meanwhile); an exception in the block
    or in ``check`` removes the temporary directory and leaves ``out`` as it was. The directory gets the usual
    permissions (``0o777`` less the umask), not the private ones of :func:`tempfile.mkdtemp`.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temporary_name(out), suffix=TEMPORARY_SUFFIX, dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        yield tmp
        if check is not None:
            check()
        install_directory(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
