"""The encodings of calorimeter events as ``tf.train.Example`` records, written without TensorFlow.

One Example per event, GeV float32. Encoding ``caloml-sparse-delta``, two versions, both read by
:func:`caloml.data.tfrecord.decode_batch` (a batch may even mix them):

* **version 1** (what :func:`caloml.data.tfrecord.convert_to_tfrecords` writes into GZIP shards: the smallest,
  and the fastest to read when inflating dominates): for each calorimeter array ``K`` (``ECAL``, ``HCAL``,
  ``showers``), ``K/delta`` int64 list, the flat C-order indices of the non-zero cells as differences (first =
  first index); ``K/values`` float32 list, their energies; ``K/last`` int64, the last index (0 if none: the decoder
  finds a batch's positions with one cumulative sum); ``K/sum`` float32, the sum of the array (for event filters).
* **version 2** (raw bytes, what the conversion writes into uncompressed shards: the fastest to read):
  ``K/indices_raw`` one ``bytes`` value, the increasing flat indices as little-endian uint16 when the array has at
  most 65,536 cells, else int32 (:func:`index_dtype`); ``K/values_raw`` one ``bytes`` value, the energies as
  little-endian float32; ``K/sum``. The reader turns each into a tensor with one ``tf.io.decode_raw`` per batch:
  no varint parsing, no cumulative sum.

Every other per-event key of the source (``energy``, angles, ``pdgID``, features, ``incident_energies``...) is a
float feature (integer and boolean keys: int64), with the per-event shape recorded in the metadata.

The records are serialized directly in the protocol-buffer wire format of ``tf.train.Example`` (a map of Feature
messages holding packed lists or bytes), with NumPy doing the per-cell work: building Example objects through the
protobuf API costs about 2 ms per LCD shower, this about 0.3 ms. See ``docs/data.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "ENCODING_NAME",
    "ENCODING_VERSION",
    "RAW_BYTES_VERSION",
    "READABLE_VERSIONS",
    "encode_events",
    "index_dtype",
]

ENCODING_NAME = "caloml-sparse-delta"
#: The version the conversion writes into GZIP shards (index differences: the smallest, and the fastest to read
#: when inflating dominates).
ENCODING_VERSION = 1
#: The version the conversion writes into uncompressed shards (raw bytes: no parsing, the fastest to read).
RAW_BYTES_VERSION = 2
#: The versions the reader decodes.
READABLE_VERSIONS = (1, 2)


def index_dtype(cells_per_event: int) -> np.dtype:
    """Little-endian dtype of the raw cell indices (version 2): uint16 up to 65,536 cells, else int32."""
    return np.dtype("<u2") if cells_per_event <= 1 << 16 else np.dtype("<i4")


def _sparse_rows(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row splits (n+1,), flat indices and values of the non-zero cells of a batch (n, ...)."""
    n = len(cells)
    size = int(np.prod(cells.shape[1:]))
    flat = cells.reshape(-1)
    where = np.flatnonzero(flat)  # 1-D: several times faster than a 2-D nonzero
    splits = np.searchsorted(where, np.arange(n + 1, dtype=np.int64) * size)
    return splits.astype(np.int64), where % size, flat[where].astype(np.float32, copy=False)


def _varint(value: int) -> bytes:
    """Protocol-buffer varint of a non-negative int."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint_stream(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated varints (uint8) of int64 ``values`` (negatives as 10-byte two's complement, as protobuf does)
    and the byte offsets (n + 1,) where each value starts (the last one is the total length)."""
    v = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    nbytes = np.ones(v.shape, dtype=np.int64)
    largest = int(v.max()) if len(v) else 0
    for k in range(1, 10):
        if largest < 1 << (7 * k):
            break
        nbytes += v >= np.uint64(1 << (7 * k))
    offsets = np.zeros(len(v) + 1, dtype=np.int64)
    np.cumsum(nbytes, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    starts = offsets[:-1]
    for k in range(int(nbytes.max()) if len(v) else 0):
        sel = np.flatnonzero(nbytes > k) if k else slice(None)
        byte = ((v[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        byte[nbytes[sel] > k + 1] |= np.uint8(0x80)
        out[starts[sel] + k] = byte
    return out, offsets


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _feature(kind: bytes, packed: bytes) -> bytes:
    """A Feature message: ``kind`` b"\\x12" float_list or b"\\x1a" int64_list, holding one packed field."""
    return _delimited(kind, _delimited(b"\x0a", packed) if packed else b"")


_FLOAT, _INT64 = b"\x12", b"\x1a"


def _bytes_feature(payload: bytes) -> bytes:
    """A Feature message holding a bytes_list of one value (possibly empty)."""
    return _delimited(b"\x0a", _delimited(b"\x0a", payload))


def encode_events(
    events: Mapping[str, np.ndarray], array_keys: Sequence[str], scalar_keys: Sequence[str], *, version: int = 1
) -> list[bytes]:
    """Serialized ``tf.train.Example`` records (encoding ``caloml-sparse-delta``) of a batch of events in GeV.

    ``array_keys`` are encoded sparse: version 1 (the default; what the conversion writes into GZIP shards) as
    ``K/delta``, ``K/values``, ``K/last``, ``K/sum``; version 2 (:data:`RAW_BYTES_VERSION`, what it writes into
    uncompressed shards) as ``K/indices_raw``, ``K/values_raw``, ``K/sum``. ``scalar_keys`` as float (or int64 for
    integer and boolean arrays) lists of their per-event values. No TensorFlow needed.
    """
    if version not in READABLE_VERSIONS:
        raise ValueError(f"encoding version must be one of {READABLE_VERSIONS}, got {version}")
    n = len(events[array_keys[0]]) if array_keys else len(events[scalar_keys[0]])
    columns: dict[str, list[bytes]] = {}
    for key in array_keys:
        cells = np.asarray(events[key])
        splits, indices, values = _sparse_rows(cells)
        if version == 2:
            dtype = index_dtype(int(np.prod(cells.shape[1:])))
            width = dtype.itemsize
            index_bytes = indices.astype(dtype, copy=False).tobytes()
            value_bytes = values.astype("<f4", copy=False).tobytes()
            columns[f"{key}/indices_raw"] = [
                _bytes_feature(index_bytes[width * splits[i] : width * splits[i + 1]]) for i in range(n)
            ]
            columns[f"{key}/values_raw"] = [
                _bytes_feature(value_bytes[4 * splits[i] : 4 * splits[i + 1]]) for i in range(n)
            ]
            sums = cells.reshape(n, -1).sum(axis=1, dtype=np.float64).astype(np.float32)
            columns[f"{key}/sum"] = _scalar_features(sums[:, None])
            continue
        deltas = np.diff(indices, prepend=0)
        filled = np.diff(splits) > 0
        starts = splits[:-1][filled]  # first cell of each non-empty event: its absolute index
        deltas[starts] = indices[starts]
        stream, offsets = _varint_stream(deltas)
        byte_splits = offsets[splits]
        stream_bytes = stream.tobytes()
        value_bytes = values.astype("<f4", copy=False).tobytes()
        columns[f"{key}/delta"] = [
            _feature(_INT64, stream_bytes[byte_splits[i] : byte_splits[i + 1]]) for i in range(n)
        ]
        columns[f"{key}/values"] = [_feature(_FLOAT, value_bytes[4 * splits[i] : 4 * splits[i + 1]]) for i in range(n)]
        lasts = np.zeros(n, dtype=np.int64)
        lasts[filled] = indices[splits[1:][filled] - 1]
        columns[f"{key}/last"] = _scalar_features(lasts[:, None])
        sums = cells.reshape(n, -1).sum(axis=1, dtype=np.float64).astype(np.float32)
        columns[f"{key}/sum"] = _scalar_features(sums[:, None])
    for key in scalar_keys:
        columns[key] = _scalar_features(np.asarray(events[key]).reshape(n, -1))
    names = {key: _delimited(b"\x0a", key.encode()) for key in columns}
    return [
        _delimited(
            b"\x0a",
            b"".join(
                _delimited(b"\x0a", names[key] + _delimited(b"\x12", column[i])) for key, column in columns.items()
            ),
        )
        for i in range(n)
    ]


def _scalar_features(array: np.ndarray) -> list[bytes]:
    """Feature messages of the rows of a (n, width) array: float32 lists for floats, int64 lists otherwise."""
    n, width = array.shape
    if np.issubdtype(array.dtype, np.floating):
        data = array.astype("<f4").tobytes()
        return [_feature(_FLOAT, data[4 * width * i : 4 * width * (i + 1)]) for i in range(n)]
    stream, offsets = _varint_stream(array.astype(np.int64).reshape(-1))
    data = stream.tobytes()
    bounds = offsets[::width] if width else np.zeros(n + 1, dtype=np.int64)
    return [_feature(_INT64, data[bounds[i] : bounds[i + 1]]) for i in range(n)]
