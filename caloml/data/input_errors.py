"""Bad data met inside a ``tf.data`` pipeline surfaces as the one-line :class:`~caloml.errors.DataError` it is.

Two kinds of damage are found only while a pipeline runs:

* a check of caloml's own (a NaN cell, a negative energy) raised by a Python generator behind
  ``tf.data.Dataset.from_generator``: TensorFlow wraps it into an ``UnknownError`` with two tracebacks.
  :func:`guarded_generator` records the original error before TensorFlow wraps it;
* a corrupt or truncated TFRecord shard: TensorFlow raises a ``DataLossError`` (or an ``OpError`` of the
  decompression) that names neither the directory nor the shard. The directory is verified shard by shard
  (:func:`caloml.data.tfrecord.verify`), which names the damaged shard.

:func:`pipeline_errors` is the block around a loop over a pipeline (or around ``model.fit``) that turns both into the
one-line error, and drops the failed iteration's frames before re-raising, so that no pipeline thread is left waiting
on the Python generator of a dead iterator when the process exits. See ``docs/training.md`` ("Bad data during
training").
"""

from __future__ import annotations

import gc
import re
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import tensorflow as tf

from caloml.data.tfrecord import verify
from caloml.errors import CalomlError, DataError

__all__ = ["close_generators", "guarded_generator", "pipeline_errors", "recorded_error", "translate"]

Item = TypeVar("Item")

_lock = threading.Lock()
_recorded: list[CalomlError] = []
#: The generators behind the guarded ones that have started (closed when a pipeline fails).
_live: weakref.WeakSet[Generator[Any, None, None]] = weakref.WeakSet()


def guarded_generator(make: Callable[[], Iterator[Item]]) -> Callable[[], Iterator[Item]]:
    """``make`` (a generator function for ``from_generator``) whose first CalomlError is recorded for
    :func:`pipeline_errors` before TensorFlow wraps it; the generator then stops with that error."""

    def guarded() -> Iterator[Item]:
        inner = make()
        if isinstance(inner, Generator):
            with _lock:
                _live.add(inner)
        try:
            yield from inner
        except CalomlError as error:
            with _lock:
                if not _recorded:
                    _recorded.append(error)
            raise

    return guarded


def close_generators(timeout_s: float = 10.0) -> None:
    """Close every started guarded generator (their files close), from this thread, while Python runs.

    TensorFlow keeps the generators of ``from_generator`` alive after their pipeline fails; left to the garbage
    collection at interpreter exit, closing them (an HDF5 file each) can deadlock against a pipeline thread that
    waits for the interpreter lock, and the process hangs. A generator that a pipeline thread is running is closed
    once that thread lets go of it (at most ``timeout_s`` seconds of waiting).
    """
    with _lock:
        pending = list(_live)
    deadline = time.monotonic() + timeout_s
    while pending:
        running = []
        for generator in pending:
            try:
                generator.close()
            except ValueError:  # "generator already executing" in a pipeline thread
                running.append(generator)
            except Exception:  # a failing cleanup must not hide the user's error
                continue
        pending = running
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.02)  # lets the pipeline thread reach its next yield


def recorded_error() -> CalomlError | None:
    """The first CalomlError a guarded generator raised since the last :func:`pipeline_errors` block began."""
    with _lock:
        return _recorded[0] if _recorded else None


def _first_line(error: tf.errors.OpError) -> str:
    text = _without_graph_noise(str(error.message or ""))
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def _without_graph_noise(text: str) -> str:
    """``text`` without TensorFlow's ``{{function_node ...}}`` and ``[Op:...] name:`` decorations."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\]( name:[^)]*)?", "", text).strip()


def _damage_in(records: Sequence[str | Path]) -> DataError | None:
    """The DataError of the first damaged TFRecord directory among ``records`` (None: all verify)."""
    for directory in records:
        try:
            verify(directory)
        except DataError as error:
            return DataError(_without_graph_noise(str(error)))
    return None


def translate(error: tf.errors.OpError, records: Sequence[str | Path] = (), *, where: str = "the input") -> Exception:
    """The user error behind a TensorFlow ``error`` raised by a pipeline, or ``error`` itself when it is not one.

    A recorded generator error wins; a data-loss or decompression error is looked up in the TFRecord directories
    ``records`` (the damaged shard named), else reported for ``where``.
    """
    recorded = recorded_error()
    if recorded is not None:
        return recorded
    message = _first_line(error)
    if isinstance(error, tf.errors.DataLossError) or "corrupt" in message.lower() or "truncated" in message.lower():
        found = _damage_in(records)
        if found is not None:
            return found
        return DataError(f"{where}: truncated or corrupt data ({message}); check it with python -m caloml.data verify")
    return error


@contextmanager
def pipeline_errors(records: Sequence[str | Path] = (), *, where: str = "the input") -> Iterator[None]:
    """Run a loop over a pipeline (or ``model.fit``); bad data met inside it is raised as a one-line DataError.

    ``records``: the TFRecord directories the pipeline reads (verified on a data-loss error, to name the shard);
    ``where``: what the input is, for a data-loss error no directory explains. Other errors pass unchanged.
    """
    with _lock:
        _recorded.clear()
    failure: Exception | None = None
    try:
        yield
    except tf.errors.OpError as error:
        failure = translate(error, records, where=where)
        if failure is error:
            raise
    finally:
        with _lock:
            _recorded.clear()
    if failure is not None:
        # raised outside the except block: the TensorFlow error, its traceback and the failed iterator's frames
        # are released here, and the generators closed, in this thread, before the process unwinds
        gc.collect()
        close_generators()
        raise failure.with_traceback(None) from None
