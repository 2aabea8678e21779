"""User errors and the one-line reporting every caloml command uses.

A :class:`CalomlError` is a problem with the user's input (a missing file or key, a wrong shape,
NaN energies, an existing output without ``--overwrite``...). Command-line entry points wrap their
``main`` with :func:`run_cli`, which prints such errors as a single line on stderr, without a
traceback, and exits with status 2. Programming errors still raise with their traceback. See ``docs/cli.md``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

#: Exit status of a command that stopped on a user error.
USER_ERROR_EXIT_CODE = 2


class CalomlError(Exception):
    """A user error; its message is one line that names the file or value and the problem."""


class DataError(CalomlError):
    """Input data is missing, malformed or physically invalid (NaN, negative energy, wrong shape)."""


class OutputExistsError(CalomlError):
    """An output path exists and the caller did not ask to overwrite it."""


def _hosted() -> bool:
    """Whether a test runner or an interactive shell runs this process (an ``os._exit`` would end it too)."""
    if "pytest" in sys.modules or "ipykernel" in sys.modules:
        return True
    ipython = sys.modules.get("IPython")  # imported by some libraries without a shell: only a running shell counts
    get_ipython = getattr(ipython, "get_ipython", None)
    return callable(get_ipython) and get_ipython() is not None


def run_cli(
    main: Callable[[Sequence[str] | None], int | None],
    argv: Sequence[str] | None = None,
    *,
    process_exit: bool = False,
) -> NoReturn:
    """Run a command's ``main`` and exit; a :class:`CalomlError` becomes one line on stderr and exit 2.

    ``process_exit`` (the console entry points): after a user error the process ends at once (``os._exit``, streams
    flushed first) instead of through the interpreter's shutdown, unless a test runner or an interactive shell
    (pytest, IPython/Jupyter) owns the process: there the usual ``SystemExit`` is raised. A
    failed ``tf.data`` pipeline can leave TensorFlow threads and Python generators holding open HDF5 readers, and the
    interpreter's final garbage collection then deadlocks against them now and then: the error line was printed and
    the process hung. Nothing is lost by skipping the shutdown: every caloml output is written atomically, and a
    half-written temporary is removed by the next run (:mod:`caloml.atomic_files`).
    """
    try:
        status = main(argv)
    except CalomlError as error:
        message = " ".join(str(error).split())  # always a single line
        print(f"caloml: error: {message}", file=sys.stderr)
        if process_exit and not _hosted():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(USER_ERROR_EXIT_CODE)
        sys.exit(USER_ERROR_EXIT_CODE)
    except KeyboardInterrupt:
        print("caloml: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(int(status or 0))
