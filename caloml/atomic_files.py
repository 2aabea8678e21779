"""Atomic writes: every file or directory caloml writes appears whole or not at all.

A write goes to a temporary sibling named ``.<name>.caloml-tmp-<host>-<pid>-<random>.tmp`` in the destination
directory and is renamed onto the destination with :func:`os.replace` when it is complete; an exception (a full
disk, a kill signal turned into ``KeyboardInterrupt``) removes the temporary. A process killed outright (SIGKILL,
out of memory) cannot remove its temporaries: their names carry the host and process id, and every new temporary
first removes those of dead processes of this host in its directory (:func:`remove_stale_temporaries`). A
directory (TFRecord shards, a report) is built in a temporary sibling directory the same way and moved onto its
destination by :func:`atomic_directory`.
See ``docs/design.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

TEMPORARY_SUFFIX = ".tmp"
#: The marker between a temporary's target name and its owner (host, process id).
TEMPORARY_MARKER = "caloml-tmp"
_STALE_PATTERN = re.compile(
    rf"^\.(?P<target>.+)\.{TEMPORARY_MARKER}-(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-.*{re.escape(TEMPORARY_SUFFIX)}(\.[A-Za-z0-9]+)?$"
)


def _host_tag() -> str:
    """This machine's name reduced to letters and digits (a temporary's owner is a host and a process id)."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]


def temporary_name(path: Path) -> str:
    """The prefix of the temporary files written for ``path``: ``.<name>.caloml-tmp-<host>-<pid>-``.

    The temporary itself adds a random part and ends in ``.tmp`` (or ``.tmp.<suffix>``, see
    :func:`atomic_write_with`); :func:`remove_stale_temporaries` recognises it.
    """
    return f".{path.name}.{TEMPORARY_MARKER}-{_host_tag()}-{os.getpid()}-"


_TEMPORARY_IN_TEXT = re.compile(
    rf"\.([^/\\\s]+?)\.{TEMPORARY_MARKER}-[A-Za-z0-9]*-\d+-[^/\\\s]*?{re.escape(TEMPORARY_SUFFIX)}(?:\.[A-Za-z0-9]+)?"
)


def without_temporary_names(text: str) -> str:
    """``text`` (a library's error message) with every temporary's name replaced by its destination's name."""
    return _TEMPORARY_IN_TEXT.sub(lambda match: match[1], text)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def stale_temporaries(directory: Path) -> list[Path]:
    """The temporaries in ``directory`` left by dead processes of this host (sorted; none when it is missing).

    Only names written by :func:`temporary_name` count; another host's temporaries (a shared file system) and
    those of live processes are never listed.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    host = _host_tag()
    stale = []
    for name in names:
        match = _STALE_PATTERN.match(name)
        if match is None or match["host"] != host:
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and not _process_alive(pid):
            stale.append(directory / name)
    return sorted(stale)


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove the temporaries of dead runs in ``directory`` (files and directories); returns what was removed."""
    removed = []
    for path in stale_temporaries(directory):
        match = _STALE_PATTERN.match(path.name)
        assert match is not None
        target = directory / match["target"]
        try:
            if path.name.endswith(".old" + TEMPORARY_SUFFIX) and (path / target.name).exists() and not target.exists():
                os.replace(path / target.name, target)  # killed inside install_directory: put the old output back
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:  # another run cleaned it meanwhile
            continue
        except OSError:  # not ours to remove after all (permissions): leave it
            continue
        removed.append(path)
    return removed


def new_temporary_file(path: Path, suffix: str = TEMPORARY_SUFFIX) -> Path:
    """Create an empty temporary file for ``path`` in its directory (made if missing) and return its path.

    The stale temporaries of dead runs in that directory are removed first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_name(path), suffix=suffix)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` (``mode`` ``"w"`` or ``"wb"``); rename it onto ``path`` on success."""
    tmp = new_temporary_file(path)
    try:
        with open(tmp, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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


def atomic_write_with(path: Path, write: Callable[[Path], None], *, keep_suffix: bool = False) -> Path:
    """Let ``write(tmp_path)`` write a file (for libraries that want a path, such as XGBoost), then rename it.

    ``keep_suffix``: the temporary ends in ``.tmp`` followed by ``path``'s suffix, for libraries that insist on it
    (Keras wants ``.keras``).
    """
    suffix = TEMPORARY_SUFFIX + path.suffix if keep_suffix else path.suffix + TEMPORARY_SUFFIX
    tmp = new_temporary_file(path, suffix=suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
    remove_stale_temporaries(out.parent)
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
