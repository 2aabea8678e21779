"""tf.data input pipelines over the TFRecord directories written by :func:`caloml.data.tfrecord.convert_to_tfrecords`.

:func:`make_dataset` is an input function in the ``tf.distribute`` style: given an
:class:`tf.distribute.InputContext` it reads only its share of the shard files and batches with the per-replica
batch size, so that :func:`make_distributed_dataset` can hand it to ``strategy.distribute_datasets_from_function``.

Stages, in order: shard files (by input pipeline) -> parallel interleave of the GZIP TFRecord files -> event filters
(per event, on the scalar features) -> shuffle -> repeat -> batch -> one parallel map that parses the whole batch
(``tf.io.parse_example`` with ragged features), scatters the sparse cells into dense arrays and applies the value
transforms -> prefetch. See ``docs/data.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf

from caloml.data.tfrecord import decode_batch, feature_spec, read_metadata, shard_paths
from caloml.data.transforms import Transform, split_transforms
from caloml.errors import DataError

__all__ = ["make_dataset", "make_distributed_dataset", "per_replica_batch_size"]

_AUTOTUNE = tf.data.AUTOTUNE


def per_replica_batch_size(global_batch_size: int, input_context: tf.distribute.InputContext | None) -> int:
    """The batch size one input pipeline produces: ``global_batch_size`` divided among the replicas."""
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be positive, got {global_batch_size}")
    if input_context is None:
        return int(global_batch_size)
    return int(input_context.get_per_replica_batch_size(global_batch_size))


def make_dataset(
    records_dir: str | Path,
    *,
    global_batch_size: int,
    input_context: tf.distribute.InputContext | None = None,
    shuffle: bool = True,
    seed: int = 0,
    repeat: bool = False,
    transforms: Sequence[Transform] = (),
    drop_remainder: bool = False,
    output: str = "dense",
    shuffle_buffer: int = 1024,
    cycle_length: int | None = None,
    keys: Sequence[str] | None = None,
    deterministic: bool = True,
) -> tf.data.Dataset:
    """A dataset of batches of events from a TFRecord directory.

    Parameters
    ----------
    records_dir:
        ``tf_records/NAME``, with ``metadata.json`` and its shards (DataError if either is missing).
    global_batch_size:
        Batch size over all replicas; each pipeline batches ``input_context.get_per_replica_batch_size(...)``.
    input_context:
        From ``strategy.distribute_datasets_from_function``: the shard files are split among the
        ``num_input_pipelines`` pipelines (a warning, and a split by record instead, when there are fewer files
        than pipelines).
    shuffle, seed:
        Shuffle the file order and the events (buffer ``shuffle_buffer``), reshuffled each epoch; with
        ``shuffle=False`` the order is deterministic (the conversion order, one event from each file in turn).
    repeat:
        Repeat forever (epochs then follow each other without a gap).
    transforms:
        Event filters first (they act per event before batching, on the scalar features and the ``K/sum`` array
        sums), then value transforms applied to each decoded batch in order; see :mod:`caloml.data.transforms`.
    drop_remainder:
        Drop the last partial batch (static batch dimension).
    output:
        ``"dense"``: each calorimeter array as a dense (B, *shape) float32 tensor in GeV, e.g. ``ECAL``
        (B, 51, 51, 25); ``"sparse"``: ``K/coords`` (B, None, ndim) int64 and ``K/values`` (B, None) float32 ragged
        tensors. Scalars are (B,) (``incident_energies`` (B, 1)) in every case.
    cycle_length:
        Shard files read concurrently (default: all of this pipeline's files, at most 16).
    deterministic:
        True (default): the same ``seed`` gives the same events in the same order; False lets the parallel
        reads and decodes deliver out of order (the order then varies from run to run).
    keys:
        Decode only these arrays and scalars (default: all), e.g. ``["ECAL", "energy", "mtheta"]`` for a generator:
        features that are not asked for are not parsed, which saves time for the LCD files' many scalars.

    Returns
    -------
    A ``tf.data.Dataset`` of dicts of tensors, keyed like the files.
    """
    if output not in ("dense", "sparse"):
        raise ValueError(f"output must be 'dense' or 'sparse', got {output!r}")
    records_dir = Path(records_dir)
    metadata = read_metadata(records_dir)
    files = [str(p) for p in shard_paths(records_dir, metadata)]
    decoded = _select_keys(metadata, keys, records_dir)
    filters, value_transforms = split_transforms(transforms)
    available = set(_filter_keys(metadata))
    for event_filter in filters:
        missing = [k for k in event_filter.required_keys if k not in available]
        if missing:
            raise DataError(
                f"{records_dir}: {event_filter!r} needs '{missing[0]}', not in the records"
                f" (available: {', '.join(sorted(available))})"
            )
    batch_size = per_replica_batch_size(global_batch_size, input_context)

    # -- files, sharded by input pipeline
    n_pipelines = input_context.num_input_pipelines if input_context is not None else 1
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    shard_records = False
    if n_pipelines > 1:
        if len(files) >= n_pipelines:
            files = files[pipeline_id::n_pipelines]
        else:
            warnings.warn(
                f"{records_dir}: {len(files)} shard files for {n_pipelines} input pipelines; every pipeline reads"
                " all files and keeps one record in "
                f"{n_pipelines} (convert with a smaller --shard-events for better input performance)",
                UserWarning,
                stacklevel=2,
            )
            shard_records = True
    # a record-level split needs the same record order in every pipeline
    deterministic = deterministic or not shuffle or shard_records
    compression = "" if metadata["encoding"].get("compression") == "NONE" else "GZIP"
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle and not shard_records:
        dataset = dataset.shuffle(len(files), seed=seed + pipeline_id, reshuffle_each_iteration=True)

    def read(path: tf.Tensor) -> tf.data.Dataset:
        return tf.data.TFRecordDataset(path, compression_type=compression, buffer_size=1 << 20)

    dataset = dataset.interleave(
        read,
        cycle_length=min(len(files), cycle_length or 16),
        block_length=1,
        num_parallel_calls=_AUTOTUNE,
        deterministic=deterministic,
    )
    if shard_records:
        dataset = dataset.shard(n_pipelines, pipeline_id)

    # -- event filters, per event, before batching
    if filters:
        scalar_spec = feature_spec(metadata, scalars_only=True)

        def tag(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            scalars = tf.io.parse_single_example(serialized, scalar_spec)
            keep = tf.reduce_all(tf.stack([tf.reshape(f.keep(scalars), []) for f in filters]))
            return serialized, keep

        def kept(serialized: tf.Tensor, keep: tf.Tensor) -> tf.Tensor:
            return keep

        def record(serialized: tf.Tensor, keep: tf.Tensor) -> tf.Tensor:
            return serialized

        dataset = dataset.map(tag, num_parallel_calls=_AUTOTUNE, deterministic=deterministic)
        dataset = dataset.filter(kept).map(record)

    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed + pipeline_id, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    # -- one parse + densify + value transforms per batch
    def decode(serialized: tf.Tensor) -> dict[str, Any]:
        batch = decode_batch(serialized, decoded, output=output)
        for transform in value_transforms:
            batch = transform.tf(batch)
        return batch

    dataset = dataset.map(decode, num_parallel_calls=_AUTOTUNE, deterministic=deterministic)
    return dataset.prefetch(_AUTOTUNE)


def _select_keys(metadata: dict[str, Any], keys: Sequence[str] | None, records_dir: Path) -> dict[str, Any]:
    """The metadata restricted to ``keys`` (all when None); DataError naming an unknown key."""
    if keys is None:
        return metadata
    known = {*metadata["arrays"], *metadata["scalars"]}
    for key in keys:
        if key not in known:
            raise DataError(f"{records_dir}: no key '{key}' in the records (available: {', '.join(sorted(known))})")
    return {
        **metadata,
        "arrays": {k: v for k, v in metadata["arrays"].items() if k in keys},
        "scalars": {k: v for k, v in metadata["scalars"].items() if k in keys},
    }


def _filter_keys(metadata: dict[str, Any]) -> list[str]:
    """Keys event filters can use: the scalar features and ``K/sum`` of each array."""
    return [*metadata["scalars"], *(f"{k}/sum" for k in metadata["arrays"])]


def make_distributed_dataset(
    strategy: tf.distribute.Strategy, records_dir: str | Path, *, global_batch_size: int, **kwargs: Any
) -> tf.distribute.DistributedDataset:
    """:func:`make_dataset` for every input pipeline of ``strategy`` (``distribute_datasets_from_function``).

    ``kwargs`` are those of :func:`make_dataset`. The metadata is checked once here, so that a missing directory
    fails before the strategy starts its pipelines.
    """
    read_metadata(records_dir)
    if "input_context" in kwargs:
        raise TypeError("make_distributed_dataset sets input_context itself")

    def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        return make_dataset(records_dir, global_batch_size=global_batch_size, input_context=input_context, **kwargs)

    return strategy.distribute_datasets_from_function(dataset_fn)
