"""Decoding batches of caloml TFRecords (both versions of the ``caloml-sparse-delta`` encoding) into tensors.

:func:`decode_batch` parses a batch of serialized records with :func:`feature_spec` and scatters the cells into
dense arrays (or ragged coordinates and energies). The encodings are described in
:mod:`caloml.data.example_encoding`; the directories and their metadata in :mod:`caloml.data.tfrecord`, which
re-exports these functions. TensorFlow is imported inside the functions, as in :mod:`caloml.data.tfrecord`, so that
the command lines importing them parse their arguments without it. See ``docs/data.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from caloml.data.example_encoding import index_dtype

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["decode_batch", "feature_spec"]


def feature_spec(metadata: Mapping[str, Any], *, scalars_only: bool = False) -> dict[str, Any]:
    """``tf.io.parse_example`` features of the records described by ``metadata``.

    With ``scalars_only``, only the per-event scalars and the ``K/sum`` of each array (what event filters need).
    The cells are parsed in both encoding versions (the features of the other version are absent, hence empty), so
    that a batch decodes whichever version its records are in.
    """
    import tensorflow as tf

    spec: dict[str, Any] = {}
    for key in metadata["arrays"]:
        if not scalars_only:
            spec[f"{key}/indices_raw"] = tf.io.FixedLenFeature([], tf.string, default_value="")
            spec[f"{key}/values_raw"] = tf.io.FixedLenFeature([], tf.string, default_value="")
            spec[f"{key}/delta"] = tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64)
            spec[f"{key}/values"] = tf.io.RaggedFeature(tf.float32, row_splits_dtype=tf.int64)
            spec[f"{key}/last"] = tf.io.FixedLenFeature([], tf.int64, default_value=0)
        spec[f"{key}/sum"] = tf.io.FixedLenFeature([], tf.float32)
    for key, info in metadata["scalars"].items():
        dtype = tf.float32 if "float" in info["dtype"] else tf.int64
        spec[key] = tf.io.FixedLenFeature(info["shape"], dtype)
    return spec


def _batch_positions(deltas: tf.RaggedTensor, last: tf.Tensor, size: int) -> tf.Tensor:
    """Positions ``event * size + index`` (M,) int64 of all the cells of a batch, with a single cumulative sum.

    Each event's index differences sum to its last index ``last`` (B,). Adding ``size - last`` of the previous event
    at each event's first cell makes the running sum jump to the start of the event's row, so that one cumsum over
    the whole batch gives the positions in the flattened (B * size) array, without per-cell row ids (slow on CPU).
    Empty events add their jump at the same place as the next event; the two jumps sum.
    """
    import tensorflow as tf

    flat = deltas.flat_values
    n_cells = tf.shape(flat, out_type=tf.int64)[0]
    starts = deltas.row_splits[:-1]
    jumps = tf.concat([tf.zeros([1], tf.int64), size - last[:-1]], axis=0)
    inside = starts < n_cells  # trailing empty events have nothing to shift
    flat = tf.tensor_scatter_nd_add(flat, tf.boolean_mask(starts, inside)[:, None], tf.boolean_mask(jumps, inside))
    return tf.cumsum(flat)


def _raw_cells(parsed: Mapping[str, Any], key: str, size: int) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
    """The cell indices (B, None) int64 and energies (B, None) float32 of the version-2 features of array ``key``.

    The raw bytes of the whole batch are joined and decoded at once (``tf.io.decode_raw`` needs equal lengths
    per string); the byte lengths give the row lengths. Empty for version-1 records.
    """
    import tensorflow as tf

    dtype = index_dtype(size)
    index_bytes, value_bytes = parsed[f"{key}/indices_raw"], parsed[f"{key}/values_raw"]
    lengths = tf.cast(tf.strings.length(value_bytes), tf.int64) // 4
    tf_dtype = tf.uint16 if dtype.itemsize == 2 else tf.int32
    indices = tf.cast(tf.io.decode_raw(tf.strings.reduce_join(index_bytes), tf_dtype, little_endian=True), tf.int64)
    values = tf.io.decode_raw(tf.strings.reduce_join(value_bytes), tf.float32, little_endian=True)
    return (
        tf.RaggedTensor.from_row_lengths(indices, lengths, validate=False),
        tf.RaggedTensor.from_row_lengths(values, lengths, validate=False),
    )


def decode_batch(
    serialized: tf.Tensor, metadata: Mapping[str, Any], *, output: str = "dense"
) -> dict[str, tf.Tensor | tf.RaggedTensor]:
    """Decode a batch (B,) of serialized records into a dict of tensors.

    ``output="dense"``: each array ``K`` as a dense (B, *shape) float32 tensor in GeV (one scatter per batch).
    ``output="sparse"``: ``K/coords`` ragged (B, None, ndim) int64 cell coordinates and ``K/values`` ragged
    (B, None) float32 energies. Scalars are (B, *shape) with the dtype recorded in the metadata.
    """
    import tensorflow as tf

    if output not in ("dense", "sparse"):
        raise ValueError(f"output must be 'dense' or 'sparse', got {output!r}")
    parsed = tf.io.parse_example(serialized, feature_spec(metadata))
    batch = tf.shape(serialized, out_type=tf.int64)[0]
    result: dict[str, Any] = {}
    for key, info in metadata["arrays"].items():
        shape = [int(s) for s in info["shape"]]
        size = int(np.prod(shape))
        raw_indices, raw_values = _raw_cells(parsed, key, size)  # version 2 records
        deltas = parsed[f"{key}/delta"]  # version 1 records
        values = parsed[f"{key}/values"]
        if output == "dense":
            positions = tf.concat(
                [
                    _batch_positions(deltas, parsed[f"{key}/last"], size),
                    raw_indices.flat_values + tf.repeat(tf.range(batch) * size, raw_indices.row_lengths()),
                ],
                axis=0,
            )
            dense = tf.raw_ops.SparseToDense(
                sparse_indices=positions,
                output_shape=tf.reshape(batch * size, [1]),
                sparse_values=tf.concat([values.flat_values, raw_values.flat_values], axis=0),
                default_value=tf.constant(0.0, tf.float32),
                validate_indices=False,
            )
            result[key] = tf.reshape(dense, [-1, *shape])
        else:
            positions = _batch_positions(deltas, parsed[f"{key}/last"], size)
            old_indices = tf.RaggedTensor.from_row_splits(positions % size, deltas.row_splits, validate=False)
            indices = tf.concat([old_indices, raw_indices], axis=1)  # each event's cells, from either version
            coords = tf.transpose(tf.unravel_index(indices.flat_values, tf.constant(shape, tf.int64)))
            result[f"{key}/coords"] = tf.RaggedTensor.from_row_splits(coords, indices.row_splits, validate=False)
            result[f"{key}/values"] = tf.concat([values, raw_values], axis=1)
    for key, info in metadata["scalars"].items():
        value = parsed[key]
        if info["dtype"] != value.dtype.name:
            value = tf.cast(value, tf.as_dtype(info["dtype"]))
        result[key] = value
    return result
