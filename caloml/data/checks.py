"""Validation of event arrays read from or written to files.

Every check raises :class:`caloml.errors.DataError` with one line naming the file, the key and, for value checks,
the first bad event (its index in the file, counted from ``offset`` when the array is a chunk of the file).
Arrays are batches of events: axis 0 is the event axis. See ``docs/data.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from caloml.errors import DataError

__all__ = [
    "check_event_counts",
    "check_event_shape",
    "check_finite",
    "check_non_negative",
    "check_values",
    "first_bad_event",
    "format_shape",
]


def format_shape(shape: Iterable[int | str]) -> str:
    """``(N, 51, 51, 25)``-style text of a shape (one-element shapes without the trailing comma)."""
    return "(" + ", ".join(str(s) for s in shape) + ")"


def first_bad_event(bad: np.ndarray) -> int | None:
    """Index along axis 0 of the first event with any True in ``bad`` (shape (N, ...)), or None if none is bad."""
    per_event = bad.reshape(bad.shape[0], -1).any(axis=1) if bad.ndim > 1 else bad
    hits = np.flatnonzero(per_event)
    return int(hits[0]) if hits.size else None


Offset = int | np.ndarray
"""Index in the file of event 0 of a batch, or the file index of every event of the batch (shape (N,))."""


def _file_index(offset: Offset, index: int) -> int:
    return int(offset[index]) if isinstance(offset, np.ndarray) else int(offset) + index


def check_finite(array: np.ndarray, *, file: str | Path, key: str, offset: Offset = 0) -> None:
    """Raise DataError if a float ``array`` (N, ...) holds NaN or infinite values; no-op for integer arrays."""
    if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
        return
    if np.isfinite(array.min()) and np.isfinite(array.max()):  # fast path: min/max propagate NaN, show inf
        return
    index = first_bad_event(~np.isfinite(array))
    assert index is not None
    raise DataError(f"{file}: key '{key}': event {_file_index(offset, index)} has NaN or infinite values")


def check_non_negative(array: np.ndarray, *, file: str | Path, key: str, offset: Offset = 0, unit: str = "GeV") -> None:
    """Raise DataError if ``array`` (N, ...) holds negative values (energies), naming the first bad event."""
    if array.size == 0 or not np.issubdtype(array.dtype, np.number):
        return
    if array.min() >= 0:
        return
    index = first_bad_event(array < 0)
    assert index is not None
    value = float(np.min(array[index]))
    raise DataError(
        f"{file}: key '{key}': event {_file_index(offset, index)} has a negative energy ({value:.6g} {unit})"
    )


def check_values(
    events: Mapping[str, np.ndarray],
    *,
    file: str | Path,
    energy_keys: Iterable[str],
    offset: Offset = 0,
) -> None:
    """Check a batch of events: every float array finite, the ``energy_keys`` present in ``events`` non-negative."""
    energy_keys = set(energy_keys)
    for key, array in events.items():
        check_finite(array, file=file, key=key, offset=offset)
        if key in energy_keys:
            check_non_negative(array, file=file, key=key, offset=offset)


def check_event_shape(
    shape: tuple[int, ...],
    expected: Iterable[tuple[int, ...]],
    *,
    file: str | Path,
    key: str,
) -> None:
    """Raise DataError unless ``shape[1:]`` (the per-event shape) is one of ``expected``."""
    expected = list(expected)
    if tuple(shape[1:]) in [tuple(e) for e in expected]:
        return
    wanted = " or ".join(format_shape(("N", *e)) for e in expected)
    raise DataError(f"{file}: key '{key}' has shape {format_shape(shape)}, expected {wanted}")


def check_event_counts(counts: Mapping[str, int], *, file: str | Path) -> int:
    """Return the common number of events of the keys in ``counts``; DataError naming the keys that disagree."""
    if not counts:
        raise DataError(f"{file}: no event arrays")
    values = sorted(set(counts.values()))
    if len(values) == 1:
        return values[0]
    described = ", ".join(f"'{k}' {n}" for k, n in counts.items())
    raise DataError(f"{file}: keys disagree on the number of events ({described})")
