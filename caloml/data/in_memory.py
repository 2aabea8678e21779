"""``tf.data`` datasets from events in memory, with the same transforms as the TFRecord pipeline.

:func:`dataset_from_events` takes the dict :func:`caloml.sim.simulate_events` returns, the events an HDF5 reader
returns, or any dict of NumPy arrays with the files' keys (``ECAL`` (N, 51, 51, 25) GeV, ``energy`` (N,) GeV,
``mtheta`` (N,) rad, ...), and yields batches exactly as :func:`caloml.data.pipeline.make_dataset` would from the
TFRecords of the same events: cell arrays (``ECAL``, ``HCAL``, ``showers``) as float32 GeV, scalars in their own
dtype after the records' float32 / int64 round trip, event filters per event on the scalars and the ``K/sum`` array
sums, then the value transforms per batch. See ``docs/python-api.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from caloml.data.checks import check_finite, format_shape
from caloml.data.pipeline import per_replica_batch_size
from caloml.data.transforms import CELL_KEYS, Transform, split_transforms
from caloml.errors import DataError

__all__ = ["dataset_from_events", "record_round_trip"]

_AUTOTUNE = tf.data.AUTOTUNE
_SOURCE = "in-memory events"


def record_round_trip(events: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The events as the TFRecord encoding stores and decodes them.

    Cell arrays (:data:`~caloml.data.transforms.CELL_KEYS`) become float32; float scalars pass through float32 and
    back to their dtype, integer and boolean scalars through int64. DataError for an empty dict, arrays of
    different lengths or non-finite values.
    """
    if not isinstance(events, Mapping) or not events:
        raise DataError(f"{_SOURCE}: need a non-empty dict of arrays keyed like the files (ECAL, energy, ...)")
    arrays = {str(key): np.asarray(value) for key, value in events.items()}
    lengths = {key: (len(value) if value.ndim else -1) for key, value in arrays.items()}
    n_events = next(iter(lengths.values()))
    if any(length != n_events or length < 1 for length in lengths.values()):
        shapes = ", ".join(f"{k} {format_shape(v.shape)}" for k, v in arrays.items())
        raise DataError(f"{_SOURCE}: every array needs the same number (> 0) of events on axis 0; got {shapes}")
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        check_finite(value, file=_SOURCE, key=key)
        if key in CELL_KEYS:
            out[key] = value.astype(np.float32)
        elif np.issubdtype(value.dtype, np.floating):
            out[key] = value.astype(np.float32).astype(value.dtype)
        elif np.issubdtype(value.dtype, np.integer) or value.dtype == np.bool_:
            out[key] = value.astype(np.int64).astype(value.dtype)
        else:
            raise DataError(f"{_SOURCE}: key '{key}' has dtype {value.dtype}; need numbers")
    return out


def _filter_inputs(events: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the TFRecord pipeline's event filters see: scalars as float32 / int64 and ``K/sum`` float32 (GeV)."""
    inputs: dict[str, np.ndarray] = {}
    for key, value in events.items():
        if key in CELL_KEYS:
            sums = value.reshape(len(value), -1).sum(axis=1, dtype=np.float64)
            inputs[f"{key}/sum"] = sums.astype(np.float32)
        elif np.issubdtype(value.dtype, np.floating):
            inputs[key] = value.astype(np.float32)
        else:
            inputs[key] = value.astype(np.int64)
    return inputs


def dataset_from_events(
    events: Mapping[str, Any],
    *,
    batch_size: int,
    transforms: Sequence[Transform] = (),
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    keys: Sequence[str] | None = None,
    shuffle_buffer: int = 1024,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """A dataset of batches (dicts of tensors) of in-memory events, as :func:`~caloml.data.pipeline.make_dataset`.

    Parameters
    ----------
    events:
        Arrays with the events on axis 0, keyed like the files: ``simulate_events(...)``, ``reader.read()`` or your
        own (cells in GeV, angles in rad).
    batch_size:
        Global batch size; with ``input_context`` each pipeline batches its per-replica share.
    transforms:
        Event filters (per event, before batching) and value transforms (per batch, in order), as for the records.
    shuffle, seed, shuffle_buffer:
        Shuffle the events (seeded, reshuffled each epoch). Off by default: batches then come in the events' order,
        as ``make_dataset(..., shuffle=False)`` gives them from one file.
    repeat, drop_remainder:
        As for :func:`~caloml.data.pipeline.make_dataset`.
    keys:
        Keep only these keys (default: all); DataError naming an unknown key.
    input_context:
        From ``strategy.distribute_datasets_from_function``: this pipeline keeps one event in
        ``num_input_pipelines``.

    Returns
    -------
    A ``tf.data.Dataset`` of dicts: cell arrays (B, *shape) float32 GeV, scalars (B, *shape).
    """
    records = record_round_trip(events)
    filter_inputs = _filter_inputs(records)  # from every key, as the records' filters read them
    if keys is not None:
        unknown = [key for key in keys if key not in records]
        if unknown:
            raise DataError(f"{_SOURCE}: no key '{unknown[0]}' (available: {', '.join(sorted(records))})")
        records = {key: records[key] for key in keys}
    filters, value_transforms = split_transforms(transforms)
    for event_filter in filters:
        missing = [key for key in event_filter.required_keys if key not in filter_inputs]
        if missing:
            raise DataError(
                f"{_SOURCE}: {event_filter!r} needs '{missing[0]}' (available: {', '.join(sorted(filter_inputs))})"
            )
    local_batch = per_replica_batch_size(batch_size, input_context)

    dataset = tf.data.Dataset.from_tensor_slices((records, filter_inputs))
    if input_context is not None and input_context.num_input_pipelines > 1:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if filters:

        def keep(event: dict[str, tf.Tensor], scalars: dict[str, tf.Tensor]) -> tf.Tensor:
            return tf.reduce_all(tf.stack([tf.reshape(f.keep(scalars), []) for f in filters]))

        dataset = dataset.filter(keep)
    dataset = dataset.map(lambda event, scalars: event)
    if shuffle:
        pipeline = input_context.input_pipeline_id if input_context is not None else 0
        dataset = dataset.shuffle(shuffle_buffer, seed=seed + pipeline, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(local_batch, drop_remainder=drop_remainder)
    if value_transforms:

        def transform(batch: dict[str, tf.Tensor]) -> dict[str, Any]:
            for value_transform in value_transforms:
                batch = value_transform.tf(batch)
            return batch

        dataset = dataset.map(transform, num_parallel_calls=_AUTOTUNE, deterministic=True)
    return dataset.prefetch(_AUTOTUNE)
