"""Batches of the reconstruction evaluation: the test events read chunk by chunk, prepared for every model.

Each chunk (HDF5 rows or TFRecord records, by event index) passes through the ECAL resampling, the task's filters,
labels and crop; its events carry :data:`ROW_KEY`, their event indices in the source. See
``docs/reconstruction.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from caloml.data.checks import check_values
from caloml.data.lcd import LCDReader
from caloml.data.reconstruction import ordered_records
from caloml.data.reconstruction_tasks import ReconstructionTask, prepare_events, raw_energy_fraction, regression_subject
from caloml.data.resampling import resample_events
from caloml.data.tfrecord import decode_batch, read_metadata
from caloml.errors import CalomlError
from caloml.evaluate.reconstruction_sources import TestSource, open_records
from caloml.particles import PDG_PARTICLE

__all__ = ["ROW_KEY", "SourceBatch", "iter_test_batches"]

#: Key added to each batch of :func:`iter_test_batches`: the events' row indices in their file.
ROW_KEY = "caloml_row"


def _expected_label(source: TestSource, task: ReconstructionTask) -> int | None:
    if source.expected_pdg is None:
        return None
    if source.expected_pdg < 0:
        return -1 - source.expected_pdg
    if source.expected_pdg not in task.label_of:
        raise CalomlError(
            f"{source.path}: test_events.json gives particle {PDG_PARTICLE[source.expected_pdg]},"
            f" which is not in task {task.name}"
        )
    return task.label_of[source.expected_pdg]


@dataclass
class SourceBatch:
    """Prepared events of one chunk of a source, and the bookkeeping of the rows read."""

    source_index: int
    events: dict[str, np.ndarray]
    rows_read: int


def _check_count(source: TestSource, n: int, indices: np.ndarray) -> None:
    if source.n_events is not None and source.n_events != n:
        raise CalomlError(
            f"{source.path}: holds {n} events, its test_events.json says {source.n_events} (the data changed since"
            " the run; its test indices would name other events)"
        )
    if indices.size and indices[-1] >= n:
        raise CalomlError(f"{source.path}: test index {int(indices[-1])} out of range for {n} events")


def _hdf5_chunks(source: TestSource, chunk_events: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """``(rows, events)`` chunks of the test rows of an LCD HDF5 file (GeV, the file's window, every key)."""
    if not source.path.is_file():
        raise CalomlError(f"{source.path}: no such test file (named by {', '.join(source.origins)})")
    with LCDReader(source.path, chunk_events=chunk_events) as reader:
        if "HCAL" not in reader.keys:
            raise CalomlError(
                f"{source.path}: no 'HCAL' in the file (the reconstruction needs the 11 x 11 x 60 HCAL files)"
            )
        n = len(reader)
        indices = np.arange(n) if source.indices is None else source.indices
        _check_count(source, n, indices)
        for start in range(0, indices.size, chunk_events):
            chunk = indices[start : start + chunk_events]
            contiguous = chunk[-1] - chunk[0] + 1 == chunk.size
            yield chunk, reader.read(slice(int(chunk[0]), int(chunk[-1]) + 1) if contiguous else chunk)


def _tfrecord_chunks(source: TestSource, chunk_events: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """``(record numbers, events)`` chunks of the test records of a TFRecord directory.

    The records are numbered as the trainers number them (the shards in the order of ``metadata.json``, through
    the Triforce task's reader); only the test records are decoded, into every stored array (dense, GeV) and
    scalar (the expert features included), as :class:`caloml.data.lcd.LCDReader` gives them for an HDF5 file.
    Non-finite values and negative energies are refused like the HDF5 reader does.
    """
    import tensorflow as tf  # lazy: python -m caloml.evaluate parses its arguments without TensorFlow

    records = open_records(source)
    metadata = read_metadata(records.path)
    if "HCAL" not in metadata["arrays"]:
        raise CalomlError(
            f"{source.path}: no 'HCAL' in the records (the reconstruction needs the 11 x 11 x 60 HCAL showers)"
        )
    n = records.n_events
    indices = np.arange(n) if source.indices is None else source.indices
    _check_count(source, n, indices)
    if not indices.size:
        return
    wanted = np.zeros(n, dtype=bool)
    wanted[indices] = True
    keep = tf.constant(wanted)

    def selected(number: tf.Tensor, serialized: tf.Tensor) -> tf.Tensor:
        return tf.gather(keep, number)

    def decode(numbers: tf.Tensor, serialized: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        return numbers, decode_batch(serialized, metadata)

    dataset = (
        ordered_records(records.path, metadata)
        .take(int(indices[-1]) + 1)
        .enumerate()
        .filter(selected)
        .batch(chunk_events)
        .map(decode)
        .prefetch(1)
    )
    done = 0
    try:
        for numbers, decoded in dataset.as_numpy_iterator():
            rows = np.asarray(numbers, dtype=np.int64)
            events = {key: np.asarray(value) for key, value in decoded.items()}
            check_values(events, file=source.path, energy_keys=LCDReader.energy_keys, offset=rows)
            done += rows.size
            yield rows, events
    except tf.errors.OpError as error:
        message = str(error.message).strip().splitlines()[0][:200] if error.message else type(error).__name__
        raise CalomlError(f"{source.path}: unreadable TFRecord shard ({message})") from None
    if done != indices.size:
        raise CalomlError(
            f"{source.path}: the shards end after {done} of the {indices.size} test records (metadata says {n} events)"
        )


def iter_test_batches(
    sources: Sequence[TestSource],
    task: ReconstructionTask,
    *,
    chunk_events: int = 128,
    resample: str = "none",
) -> Iterator[SourceBatch]:
    """Read the test events chunk by chunk (HDF5 rows or TFRecord records), pass each chunk through
    :func:`caloml.data.resampling.resample_events` (``resample``), then the task's filters, labels and crop
    (:func:`caloml.data.reconstruction_tasks.prepare_events`). Each batch's events carry :data:`ROW_KEY`, their event
    indices in the source.

    Memory is bounded by one chunk (ECAL + HCAL about 0.33 MB per event before the crop). Raises CalomlError for
    a source that is missing, unreadable, lacks HCAL or another input, holds NaN, holds another number of events
    than its test_events.json says, or whose events contradict the particle of its test_events.json entry.
    """
    for number, source in enumerate(sources):
        expected = _expected_label(source, task)
        chunks = (
            _tfrecord_chunks(source, chunk_events)
            if source.format == "tfrecords"
            else _hdf5_chunks(source, chunk_events)
        )
        for rows, raw in chunks:
            raw[ROW_KEY] = rows.astype(np.int64)
            events = prepare_events(resample_events(raw, resample), task, source=str(source.path), require_all=False)
            if source.restrictions:
                events = _apply_restrictions(events, source.restrictions)
            if expected is not None and np.any(events["class_label"] != expected):
                found = int(np.abs(events["pdgID"][events["class_label"] != expected][0]))
                raise CalomlError(
                    f"{source.path}: test_events.json says class {task.classes[expected]} "
                    f"({PDG_PARTICLE[task.classes[expected]]}), the file holds pdgID {found}"
                )
            yield SourceBatch(number, events, int(rows.size))


def _apply_restrictions(
    events: dict[str, np.ndarray], restrictions: Sequence[tuple[int, np.ndarray, str]]
) -> dict[str, np.ndarray]:
    """Drop the events a per-particle regression run given as ``--test`` did not test on: those of its particle
    (charged pions: passing the raw-sum cut, :func:`regression_subject`) whose index is not in its test indices."""
    rows = np.asarray(events[ROW_KEY])
    raw_fraction = raw_energy_fraction(events)
    keep = np.ones(rows.size, dtype=bool)
    for pdg, allowed, _origin in restrictions:
        keep &= ~regression_subject(events["pdgID"], raw_fraction, pdg) | np.isin(rows, allowed)
    if keep.all():
        return events
    return {key: np.asarray(value)[keep] for key, value in events.items()}
