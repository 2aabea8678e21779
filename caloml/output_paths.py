"""Output paths checked before any work starts, and failed writes (a full disk...) as one-line user errors.

:func:`check_output_path` refuses an output that cannot be written (a parent that is a regular file, a missing
parent that cannot be created, an unwritable directory, an existing output of the wrong kind or without
``--overwrite``) before a command simulates, trains or generates anything. :func:`write_errors_as_one_line` turns
the errors of a write that fails later (no space left on the device, a quota, the file-size limit ``ulimit -f``, a
read-only file system), whether Python's ``OSError``, h5py's or TensorFlow's, into a :class:`OutputWriteError`:
one line on the command line, exit status 2. The atomic writes of :mod:`caloml.atomic_files` have already removed
their temporary files by then, so nothing half-written is left. See ``docs/cli.md`` (section "Faults").
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

from caloml.atomic_files import without_temporary_names
from caloml.errors import CalomlError, OutputExistsError


class OutputWriteError(CalomlError):
    """An output cannot be written where it was asked for (a full disk, a file as parent, no permission)."""


#: errno of a failed write -> the explanation the user reads.
WRITE_FAILURES: dict[int, str] = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (the file system's or the process's file-size limit, ulimit -f)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a parent of the path is not a directory",
    errno.ENAMETOOLONG: "file name too long",
}


def _first_line(text: str, limit: int = 200) -> str:
    lines = text.strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _failed_write(error: BaseException) -> tuple[str, BaseException] | None:
    """(explanation, the exception that carries it) for a failed write in ``error`` or its causes, else None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in WRITE_FAILURES:
            return WRITE_FAILURES[current.errno], current
        if type(current).__module__.startswith("tensorflow"):
            text = str(current)
            for number, explanation in WRITE_FAILURES.items():
                if os.strerror(number) in text:
                    return explanation, current
        current = current.__cause__ or current.__context__
    return None


def write_failure(error: BaseException) -> str | None:
    """The explanation of ``error`` when it is a failed write (see :data:`WRITE_FAILURES`), else None.

    Recognised: an ``OSError`` (h5py's included) with one of those errno values, and a TensorFlow error (for
    example ``ResourceExhaustedError`` from a TFRecord writer) whose message carries the system's text of one;
    the exception's cause and context are searched too (libraries that re-raise).
    """
    found = _failed_write(error)
    return found[0] if found else None


def _where(error: BaseException, output: str | os.PathLike | None) -> str:
    """The path named by ``error`` (an OSError's filename, a path in its message), else ``output``."""
    filename = getattr(error, "filename", None)
    if filename:
        text = str(filename)
    elif isinstance(error, OSError):
        text = ""  # "[Errno 28] No space left on device": the explanation says it
    else:
        text = re.sub(r"^\{\{[^}]*\}\}\s*", "", _first_line(str(error)))  # TensorFlow's "{{function_node ...}}"
        for number in WRITE_FAILURES:  # TensorFlow's "PATH; No space left on device"
            text = text.replace(f"; {os.strerror(number)}", "")
    text = without_temporary_names(text)
    return text or (str(output) if output is not None else "an output")


@contextlib.contextmanager
def write_errors_as_one_line(output: str | os.PathLike | None = None) -> Iterator[None]:
    """Turn a failed write inside the block into an :class:`OutputWriteError` (one line naming the path).

    ``output``: the path to name when the error names none (the command's output).
    """
    try:
        yield
    except CalomlError:
        raise
    except Exception as error:
        found = _failed_write(error)
        if found is None:
            raise
        explanation, carrier = found
        raise OutputWriteError(f"{_where(carrier, output)}: cannot write: {explanation}") from error


#: Argument names (argparse ``dest``) of the commands' outputs, for :func:`output_of`.
OUTPUT_ARGUMENTS = ("out", "output", "saved_models", "run_dir", "run_root", "records")


def output_of(args: object) -> str | None:
    """The output a command's parsed arguments name (the first of :data:`OUTPUT_ARGUMENTS` given), or None."""
    for name in OUTPUT_ARGUMENTS:
        value = getattr(args, name, None)
        if value:
            return str(value)
    return None


def check_output_path(path: str | os.PathLike, *, directory: bool = False, overwrite: bool | None = None) -> Path:
    """``path`` as a Path, once it is known that an output can be written there; OutputWriteError otherwise.

    Checked without writing anything: the nearest existing ancestor of ``path`` is a directory (not a regular
    file) and writable, so that the missing ones can be created; an existing ``path`` is a directory when
    ``directory`` is true and not a directory otherwise. ``overwrite=False`` also refuses an existing ``path``
    (:class:`OutputExistsError`); ``None`` leaves that to the command, which may reuse or resume it.
    """
    path = Path(path)
    if os.path.lexists(path):
        if directory and not path.is_dir():
            raise OutputWriteError(f"{path}: exists and is not a directory; an output directory was expected")
        if not directory and path.is_dir():
            raise OutputWriteError(f"{path}: is a directory; an output file was expected")
        if overwrite is False:
            raise OutputExistsError(f"{path}: output exists; pass --overwrite to replace it")
    for ancestor in path.absolute().parents:
        if not os.path.lexists(ancestor):
            continue
        if not ancestor.is_dir():
            raise OutputWriteError(f"{path}: cannot be written: {ancestor} is a file, not a directory")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise OutputWriteError(f"{path}: cannot be written: the directory {ancestor} is not writable")
        break
    return path
