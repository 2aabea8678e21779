"""Quiet TensorFlow by default, loud when asked.

TensorFlow prints C++ log lines that say nothing to a caloml user: the start-up banner written before its logging
is configured (oneDNN, the CUDA stub, CPU instructions, twice per import), and known harmless error lines (``failed
call to cuInit`` on a machine without a GPU, a grappler ``remapper failed`` on the first 3DGAN step). ``import
caloml`` calls :func:`quiet_tensorflow_logs`: unless the user set ``TF_CPP_MIN_LOG_LEVEL`` themselves (to another
value than 3), it sets it to 3 (TensorFlow's errors reach Python as exceptions anyway), keeps the ``tensorflow``
Python logger at WARNING (``INFO:tensorflow:Assets written to ...``) and hides file descriptor 2 while
``tensorflow`` is first imported (the banner is written before any setting is read).
:func:`set_verbose` (the command lines' ``--verbose``) undoes all of this for the process.

The command lines import TensorFlow through :func:`import_tensorflow_quietly`, which also starts the runtime (its
device probing) with descriptor 2 hidden. TensorFlow is imported inside these functions on purpose: the command
lines parse their arguments (and answer ``--help`` or a bad argument) without paying for the import. See
``docs/cli.md`` (verbosity).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

#: TensorFlow's C++ log threshold caloml sets when the user has not: 3 hides INFO, WARNING and ERROR lines.
QUIET_CPP_LOG_LEVEL = "3"
_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
#: The user's own setting when caloml was imported (None: not set; caloml then chooses).
_USER_CPP_LOG_LEVEL = os.environ.get(_LEVEL_VARIABLE)


def is_quiet() -> bool:
    """Whether caloml hides TensorFlow's log lines: neither ``--verbose`` nor a ``TF_CPP_MIN_LOG_LEVEL`` of the user's
    own (other than caloml's 3, which a command line's subprocesses inherit)."""
    return not _STATE["verbose"] and _USER_CPP_LOG_LEVEL in (None, QUIET_CPP_LOG_LEVEL)


def quiet_tensorflow_logs() -> None:
    """Hide TensorFlow's start-up and harmless log lines from now on, unless the process is verbose.

    Sets ``TF_CPP_MIN_LOG_LEVEL`` (when the user has not), the ``tensorflow`` logger's level (when nobody has) and,
    when TensorFlow is not imported yet, an import hook that hides file descriptor 2 during its import.
    """
    if not is_quiet():
        return
    os.environ.setdefault(_LEVEL_VARIABLE, QUIET_CPP_LOG_LEVEL)
    if "tensorflow" in sys.modules:
        _quiet_python_logger()
    elif not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def _quiet_python_logger() -> None:
    """The ``tensorflow`` logger at WARNING; TensorFlow sets it to INFO in an interactive session (a notebook) when
    it creates it, so this runs after the import (and asks for the logger, which creates it)."""
    tensorflow = sys.modules.get("tensorflow")
    get_logger = getattr(tensorflow, "get_logger", None)
    logger = get_logger() if callable(get_logger) else logging.getLogger("tensorflow")
    if not _LOGGER_LEVEL_BEFORE:
        _LOGGER_LEVEL_BEFORE.append(logger.level)
    logger.setLevel(logging.WARNING)


def set_verbose(verbose: bool = True) -> None:
    """Show TensorFlow's log lines (``--verbose``): undo :func:`quiet_tensorflow_logs` for this process.

    TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL`` when it is imported: call this first (the command lines do).
    """
    _STATE["verbose"] = verbose
    if not verbose:
        quiet_tensorflow_logs()
        return
    if os.environ.get(_LEVEL_VARIABLE) == QUIET_CPP_LOG_LEVEL:
        del os.environ[_LEVEL_VARIABLE]
    if _LOGGER_LEVEL_BEFORE:
        logging.getLogger("tensorflow").setLevel(_LOGGER_LEVEL_BEFORE.pop())
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietTensorFlowImport)]


def verbose_requested(argv: Sequence[str]) -> bool:
    """Whether a command line's arguments ask for ``--verbose`` (for a command that imports before parsing)."""
    return "--verbose" in argv


@contextmanager
def hidden_stderr_descriptor() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file meanwhile; on an exception, write what was captured back."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow_quietly(configure: Callable[[], None] | None = None, *, start_runtime: bool = True) -> None:
    """Import TensorFlow and start its runtime with its start-up log lines (oneDNN, CUDA probing...) hidden.

    ``configure`` runs after the import and before the runtime starts (e.g. to split the CPU into logical
    devices, which is only possible before then). With ``start_runtime=False`` only the import happens; a later
    call starts the runtime (a command can then read its configuration between the two).

    TensorFlow writes those lines to file descriptor 2 before its logging is configured, so the descriptor is
    redirected to a temporary file meanwhile; if something fails, the captured text is written back. With
    ``--verbose`` (:func:`set_verbose`) nothing is hidden.
    """
    if "tensorflow" in sys.modules and not _STATE["imported"]:
        return  # imported elsewhere (a notebook, the tests): nothing left to hide
    if _STATE["runtime_started"] or (_STATE["imported"] and not start_runtime):
        return
    quiet_tensorflow_logs()
    with hidden_stderr_descriptor() if is_quiet() else _nothing_hidden():
        import tensorflow as tf

        if is_quiet():
            _quiet_python_logger()
        _STATE["imported"] = True
        if start_runtime:
            if configure is not None:
                configure()
            tf.config.list_logical_devices("CPU")  # initializes the runtime (device probing logs) now
            _STATE["runtime_started"] = True


@contextmanager
def _nothing_hidden() -> Iterator[None]:
    yield


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` with the other finders and hides descriptor 2 while its module executes."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow" or not is_quiet():
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]  # once: later imports are cached anyway
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """A loader running another one's ``exec_module`` with descriptor 2 hidden (everything else delegated)."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with hidden_stderr_descriptor():
            self._loader.exec_module(module)
        if is_quiet():
            _quiet_python_logger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


_STATE: dict[str, bool] = {"verbose": False, "imported": False, "runtime_started": False}
#: The ``tensorflow`` logger's level before caloml set it (restored by ``set_verbose``; empty: not set).
_LOGGER_LEVEL_BEFORE: list[int] = []
