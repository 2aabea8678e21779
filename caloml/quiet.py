"""Quiet TensorFlow start-up for the command lines.

TensorFlow prints its C++ start-up lines (oneDNN, CUDA probing) to file descriptor 2 before its logging is
configured; a command line that imports it through :func:`import_tensorflow_quietly` keeps its stderr to its own
one-line messages. TensorFlow is imported here inside the function on purpose: the command lines parse their
arguments (and answer ``--help`` or a bad argument) without paying for the import. See ``docs/cli.md``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable


def import_tensorflow_quietly(configure: Callable[[], None] | None = None, *, start_runtime: bool = True) -> None:
    """Import TensorFlow and start its runtime with its start-up log lines (oneDNN, CUDA probing...) hidden.

    ``configure`` runs after the import and before the runtime starts (e.g. to split the CPU into logical
    devices, which is only possible before then). With ``start_runtime=False`` only the import happens; a later
    call starts the runtime (a command can then read its configuration between the two).

    TensorFlow writes those lines to file descriptor 2 before its logging is configured, so the descriptor is
    redirected to a temporary file meanwhile; if something fails, the captured text is written back.
    ``TF_CPP_MIN_LOG_LEVEL`` defaults to 2 (warnings and errors of the runtime become exceptions anyway).
    """
    global _IMPORTED, _RUNTIME_STARTED
    if "tensorflow" in sys.modules and not _IMPORTED:
        return  # imported elsewhere (a notebook, the tests): nothing left to hide
    if _RUNTIME_STARTED or (_IMPORTED and not start_runtime):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            _IMPORTED = True
            if start_runtime:
                if configure is not None:
                    configure()
                tf.config.list_logical_devices("CPU")  # initializes the runtime (device probing logs) now
                _RUNTIME_STARTED = True
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_IMPORTED = False
_RUNTIME_STARTED = False
