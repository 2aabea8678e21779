"""Conversion of calorimeter HDF5 files into sharded TFRecords, their metadata and their verification.

Output directory (``tf_records/NAME/``)::

    metadata.json                          layout, geometry, array shapes, units, counts, provenance, checksums
    shard-00000-of-00004.tfrecord.gz       GZIP-compressed TFRecord files, one ``tf.train.Example`` per event
    ...

Each shard holds one ``tf.train.Example`` per event in the encoding of :mod:`caloml.data.example_encoding`:
version 1 (index differences as varints) in GZIP shards, version 2 (raw-bytes indices and energies) in
uncompressed shards, unless ``encoding_version`` asks for the other; the metadata records the version, and both
are read. Decoding is :mod:`caloml.data.record_decoding` (re-exported here).

Sizes and reading costs (GZIP or uncompressed shards, LCD showers): version 1 is the smallest on disk (1-byte varint
differences), version 2 skips the varint parsing and the cumulative sum of the positions, which makes uncompressed
shards the fastest to read (0.35 against 0.48 CPU-ms per shower); with GZIP shards the inflating dominates and the
smaller version 1 reads faster (0.56 against 0.64 CPU-ms per shower). Figures in ``docs/data.md`` and
``docs/benchmarks.md``.

TensorFlow is imported inside the functions that need it, so that checking sources and outputs stays cheap and
the command lines that import this module (``python -m caloml.data``) parse their arguments without it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caloml import __version__
from caloml.atomic_files import atomic_directory
from caloml.data.checks import format_shape
from caloml.data.example_encoding import (
    ENCODING_NAME,
    ENCODING_VERSION,
    RAW_BYTES_VERSION,
    READABLE_VERSIONS,
    encode_events,
    index_dtype,
)
from caloml.data.hdf5 import HDF5EventReader, open_reader
from caloml.data.record_decoding import _batch_positions, _raw_cells, decode_batch, feature_spec
from caloml.errors import DataError, OutputExistsError
from caloml.geometry import CLIC_HCAL
from caloml.json_values import json_plain
from caloml.progress import progress_bar

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "DEFAULT_SHARD_EVENTS",
    "ENCODING_NAME",
    "ENCODING_VERSION",
    "METADATA_FILE",
    "check_output",
    "convert_to_tfrecords",
    "decode_batch",
    "encode_events",
    "feature_spec",
    "measure_encoding_sizes",
    "open_sources",
    "read_metadata",
    "sha256_file",
    "shard_paths",
    "verify",
]

FORMAT_NAME = "caloml-tfrecord"
METADATA_FILE = "metadata.json"
DEFAULT_SHARD_EVENTS = 1024
_SHARD_NAME = "shard-{index:05d}-of-{count:05d}.tfrecord"
#: Compression of the shards: GZIP (default, ``.tfrecord.gz``) or none (``.tfrecord``), recorded in the metadata.
COMPRESSIONS = {"GZIP": ".gz", "NONE": ""}


# GZIP level of the shards. On sparse-delta LCD showers (about 20% occupancy): level 1 writes 1.9 ms/shower for
# 56.0 KiB, level 6 2.7 ms for 55.2 KiB (1.5% smaller); inflating costs the same. Conversion speed wins.
_TFRECORD_GZIP_LEVEL = 1


def _tf_compression(name: str) -> str:
    """TFRecord ``compression_type`` of a metadata compression name."""
    return "" if name == "NONE" else name


# -- small helpers --------------------------------------------------------------------------------------------------
def sha256_file(path: str | Path, *, block_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read by blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_bytes):
            digest.update(block)
    return digest.hexdigest()


def _dtype_kind(dtype: np.dtype) -> str:
    return "float" if np.issubdtype(dtype, np.floating) else "int"


# -- sources ----------------------------------------------------------------------------------------------------------
def open_sources(paths: Sequence[str | Path], *, chunk_events: int = 256) -> list[HDF5EventReader]:
    """Open and validate HDF5 sources (layout auto-detected); DataError on the first bad one. No TensorFlow here."""
    if not paths:
        raise DataError("no input files given")
    readers: list[HDF5EventReader] = []
    try:
        for path in paths:
            readers.append(open_reader(path, chunk_events=chunk_events))
        _common_keys(readers)
    except BaseException:
        for reader in readers:
            reader.close()
        raise
    return readers


def _common_keys(readers: Sequence[HDF5EventReader]) -> tuple[list[str], list[str]]:
    """Calorimeter arrays (identical in every source) and the per-event keys present in every source."""
    first = readers[0]
    for reader in readers[1:]:
        if reader.layout != first.layout:
            raise DataError(f"{reader.path}: layout '{reader.layout}' differs from '{first.layout}' of {first.path}")
        if reader.array_keys != first.array_keys:
            raise DataError(
                f"{reader.path}: calorimeter arrays {list(reader.array_keys)} differ from {list(first.array_keys)}"
                f" of {first.path}"
            )
    arrays = list(first.array_keys)
    scalars = [k for k in first.scalar_keys if all(k in r.scalar_keys for r in readers)]
    for reader in readers[1:]:
        for key in arrays + scalars:
            if reader.event_shapes[key] != first.event_shapes[key]:
                raise DataError(
                    f"{reader.path}: key '{key}' has per-event shape {format_shape(reader.event_shapes[key])},"
                    f" {first.path} has {format_shape(first.event_shapes[key])}"
                )
            if _dtype_kind(reader.dtypes[key]) != _dtype_kind(first.dtypes[key]):
                raise DataError(
                    f"{reader.path}: key '{key}' is {reader.dtypes[key]}, {first.path} has {first.dtypes[key]}"
                )
    return arrays, scalars


def check_output(out: str | Path, overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` if ``out`` exists and ``overwrite`` is false."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: output exists; pass --overwrite (overwrite=True) to replace it")


def _chunk_schedule(readers: Sequence[HDF5EventReader], chunk_events: int) -> list[tuple[int, int, int]]:
    """(source, start, stop) of every chunk, the sources interleaved in proportion to their sizes.

    Each shard then mixes all the sources (for example several particle types), which a shuffle buffer alone cannot
    achieve when the sources are large.
    """
    items = []
    for source, reader in enumerate(readers):
        n = len(reader)
        for start in range(0, n, chunk_events):
            stop = min(start + chunk_events, n)
            items.append(((start + stop) / (2 * n), source, start, stop))
    items.sort()
    return [(source, start, stop) for _, source, start, stop in items]


def _shard_sizes(n_events: int, shard_events: int) -> list[int]:
    n_shards = max(1, math.ceil(n_events / shard_events))
    base, extra = divmod(n_events, n_shards)
    return [base + (1 if i < extra else 0) for i in range(n_shards)]


def _source_entry(reader: HDF5EventReader) -> dict[str, Any]:
    return {
        "path": str(reader.path.resolve()),
        "name": reader.path.name,
        "sha256": sha256_file(reader.path),
        "bytes": reader.path.stat().st_size,
        "n_events": len(reader),
        "layout": reader.layout,
        "attrs": json_plain(reader.attrs, strings_for_unknown=True),
    }


def _config_summary(sources: Sequence[dict[str, Any]]) -> tuple[Any, Any]:
    """The ``caloml_config`` of the sources (one value if they agree, else the list) and its seed(s)."""
    configs = [s["attrs"].get("caloml_config") for s in sources]
    present = [c for c in configs if c is not None]
    if not present:
        return None, None
    config: Any = present[0] if all(c == present[0] for c in configs) else configs
    seeds = [c.get("seed") for c in present if isinstance(c, dict) and "seed" in c]
    seed: Any = None
    if seeds:
        seed = seeds[0] if all(s == seeds[0] for s in seeds) else seeds
    return config, seed


def convert_to_tfrecords(
    sources: Sequence[str | Path | HDF5EventReader],
    out: str | Path,
    *,
    shard_events: int = DEFAULT_SHARD_EVENTS,
    overwrite: bool = False,
    chunk_events: int = 256,
    progress: bool = False,
    compression: str = "GZIP",
    encoding_version: int | None = None,
) -> dict[str, Any]:
    """Convert HDF5 files (all LCD or all CaloChallenge, detected) into ``out`` (``tf_records/NAME``).

    Streams the sources by chunks of ``chunk_events`` and writes GZIP shards of about ``shard_events`` events
    (equal sizes), so memory stays bounded by one chunk. Keys present in every source are kept. The directory is
    built next to ``out`` and renamed at the end; an existing ``out`` raises :class:`OutputExistsError` unless
    ``overwrite``. ``compression="NONE"`` writes uncompressed shards (25% larger, no inflating when reading).
    ``encoding_version`` (default: 1 for GZIP shards, 2 for uncompressed ones, the fastest to read of each)
    chooses the record layout, index differences (1) or raw bytes (2).
    Returns the metadata written to ``out/metadata.json``.
    """
    if shard_events < 1:
        raise ValueError(f"shard_events must be positive, got {shard_events}")
    compression = compression.upper()
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {sorted(COMPRESSIONS)}, got {compression!r}")
    if encoding_version is None:
        encoding_version = ENCODING_VERSION if compression == "GZIP" else RAW_BYTES_VERSION
    if encoding_version not in READABLE_VERSIONS:
        raise ValueError(f"encoding_version must be one of {READABLE_VERSIONS}, got {encoding_version}")
    out = Path(out)
    check_output(out, overwrite)
    if not sources:
        raise DataError("no input files given")
    owned: list[HDF5EventReader] = []
    try:
        readers: list[HDF5EventReader] = []
        for source in sources:
            if isinstance(source, HDF5EventReader):
                readers.append(source)
            else:
                owned.append(open_reader(source, chunk_events=chunk_events))
                readers.append(owned[-1])
        return _convert(
            readers, out, shard_events, overwrite, chunk_events, progress, compression, __version__, encoding_version
        )
    finally:
        for reader in owned:
            reader.close()


def _convert(
    readers: list[HDF5EventReader],
    out: Path,
    shard_events: int,
    overwrite: bool,
    chunk_events: int,
    progress: bool,
    compression: str,
    version: str,
    encoding_version: int,
) -> dict[str, Any]:
    import tensorflow as tf

    array_keys, scalar_keys = _common_keys(readers)
    first = readers[0]
    n_events = sum(len(r) for r in readers)
    if n_events == 0:
        raise DataError(f"{readers[0].path}: no events to convert")
    sizes = _shard_sizes(n_events, shard_events)
    suffix = COMPRESSIONS[compression]
    names = [_SHARD_NAME.format(index=i, count=len(sizes)) + suffix for i in range(len(sizes))]
    options = tf.io.TFRecordOptions(
        compression_type=_tf_compression(compression), compression_level=_TFRECORD_GZIP_LEVEL
    )
    with atomic_directory(out, check=lambda: check_output(out, overwrite)) as tmp:
        shard, written, writer = 0, 0, None
        bar = progress_bar(n_events, unit="event", desc=f"convert {out.name}", enabled=progress)
        try:
            for source, start, stop in _chunk_schedule(readers, chunk_events):
                events = readers[source].read(slice(start, stop))
                for record in encode_events(events, array_keys, scalar_keys, version=encoding_version):
                    if writer is None:
                        writer = tf.io.TFRecordWriter(str(tmp / names[shard]), options)
                    writer.write(record)
                    written += 1
                    if written == sizes[shard]:
                        writer.close()
                        writer, shard, written = None, shard + 1, 0
                bar.update(stop - start)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        if shard != len(sizes):  # pragma: no cover - a reader returned fewer events than announced
            raise DataError(f"{out}: wrote {shard} shards, expected {len(sizes)}")
        source_entries = [_source_entry(r) for r in readers]
        config, seed = _config_summary(source_entries)
        metadata: dict[str, Any] = {
            "format": FORMAT_NAME,
            "encoding": {
                "name": ENCODING_NAME,
                "version": encoding_version,
                "compression": compression,
                "arrays": _ARRAY_FEATURES[encoding_version],
            },
            "layout": first.layout,
            "geometry": first.geometry_name,
            "units": "GeV",
            "angle_units": "rad",
            "arrays": {
                k: {"shape": list(first.event_shapes[k]), "dtype": "float32", "geometry": _array_geometry(first, k)}
                for k in array_keys
            },
            "scalars": {k: {"shape": list(first.event_shapes[k]), "dtype": str(first.dtypes[k])} for k in scalar_keys},
            "n_events": n_events,
            "shards": [
                {
                    "file": name,
                    "n_events": size,
                    "sha256": sha256_file(tmp / name),
                    "bytes": (tmp / name).stat().st_size,
                }
                for name, size in zip(names, sizes, strict=True)
            ],
            "sources": source_entries,
            "config": config,
            "seed": seed,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "caloml_version": version,
        }
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=False) + "\n")
    return metadata


_ARRAY_FEATURES = {
    1: "K/delta int64 (flat C-order index differences), K/values float32, K/last int64 (last index), K/sum float32",
    2: "K/indices_raw bytes (flat C-order indices of the non-zero cells, little-endian uint16 up to 65536 cells per"
    " event, else int32), K/values_raw bytes (little-endian float32), K/sum float32",
}


def _array_geometry(reader: HDF5EventReader, key: str) -> str:
    if key == "HCAL":
        return CLIC_HCAL.name
    return reader.geometry_name


# -- reading ----------------------------------------------------------------------------------------------------------
def read_metadata(records_dir: str | Path) -> dict[str, Any]:
    """The metadata of a TFRecord directory; DataError if missing, unreadable or of another encoding."""
    records_dir = Path(records_dir)
    path = records_dir / METADATA_FILE
    if not records_dir.is_dir():
        raise DataError(f"{records_dir}: no such TFRecord directory")
    if not path.is_file():
        raise DataError(f"{records_dir}: missing {METADATA_FILE} (not a caloml TFRecord directory)")
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: unreadable metadata ({error})") from error
    required = ("encoding", "arrays", "scalars", "n_events", "shards")
    missing = [k for k in required if not isinstance(metadata, dict) or k not in metadata]
    if missing:
        raise DataError(f"{path}: metadata lacks '{missing[0]}'")
    encoding = metadata["encoding"]
    if encoding.get("name") != ENCODING_NAME or encoding.get("version") not in READABLE_VERSIONS:
        raise DataError(
            f"{path}: encoding {encoding.get('name')} v{encoding.get('version')} is not supported"
            f" (this caloml reads {ENCODING_NAME} v{', v'.join(str(v) for v in READABLE_VERSIONS)})"
        )
    return metadata


def shard_paths(records_dir: str | Path, metadata: Mapping[str, Any] | None = None) -> list[Path]:
    """Paths of the shards listed in the metadata; DataError naming the first missing one."""
    records_dir = Path(records_dir)
    metadata = read_metadata(records_dir) if metadata is None else metadata
    paths = [records_dir / shard["file"] for shard in metadata["shards"]]
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: missing shard listed in {records_dir / METADATA_FILE}")
    if not paths:
        raise DataError(f"{records_dir}: metadata lists no shards")
    return paths


def verify(records_dir: str | Path, *, batch_size: int = 256) -> dict[str, Any]:
    """Read every record of every shard and check them against the metadata.

    Checks that each shard exists, decompresses and parses, that its cell indices lie inside the arrays, that the
    per-shard and total counts match, and the shard checksums. A truncated or corrupt shard raises a one-line
    DataError naming it. Returns ``{"n_events": ..., "n_shards": ...}``.
    """
    import tensorflow as tf

    records_dir = Path(records_dir)
    metadata = read_metadata(records_dir)
    paths = shard_paths(records_dir, metadata)
    spec = feature_spec(metadata)
    sizes = {k: int(np.prod(v["shape"])) for k, v in metadata["arrays"].items()}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def check(serialized: tf.Tensor) -> tf.Tensor:
        parsed = tf.io.parse_example(serialized, spec)
        bad = tf.constant(False)
        for key, size in sizes.items():
            deltas, values, last = parsed[f"{key}/delta"], parsed[f"{key}/values"], parsed[f"{key}/last"]
            positions = _batch_positions(deltas, last, size)
            rows = deltas.value_rowids()
            indices = positions - rows * size
            filled = deltas.row_lengths() > 0
            ends = tf.boolean_mask(deltas.row_splits[1:] - 1, filled)
            bad |= tf.reduce_any(deltas.flat_values < 0) | tf.reduce_any(indices < 0) | tf.reduce_any(indices >= size)
            bad |= tf.reduce_any(tf.not_equal(deltas.row_lengths(), values.row_lengths()))
            bad |= tf.reduce_any(tf.not_equal(tf.gather(indices, ends), tf.boolean_mask(last, filled)))
            width = index_dtype(size).itemsize  # version 2: whole indices and values, in the array, increasing
            index_bytes = tf.cast(tf.strings.length(parsed[f"{key}/indices_raw"]), tf.int64)
            value_bytes = tf.cast(tf.strings.length(parsed[f"{key}/values_raw"]), tf.int64)
            bad |= tf.reduce_any(index_bytes % width != 0) | tf.reduce_any(value_bytes % 4 != 0)
            bad |= tf.reduce_any(tf.not_equal(index_bytes // width, value_bytes // 4))
            raw_indices, _ = _raw_cells(parsed, key, size)  # misaligned bytes fail here: a corrupt shard
            flat = raw_indices.flat_values
            bad |= tf.reduce_any(flat < 0) | tf.reduce_any(flat >= size)
            positions = flat + raw_indices.value_rowids() * size  # increasing over the batch if within each event
            bad |= tf.reduce_any(positions[1:] <= positions[:-1])
        return tf.stack([tf.cast(tf.shape(serialized)[0], tf.int64), tf.cast(bad, tf.int64)])

    total = 0
    for path, entry in zip(paths, metadata["shards"], strict=True):
        compression = _tf_compression(metadata["encoding"].get("compression", "GZIP"))
        dataset = tf.data.TFRecordDataset(str(path), compression_type=compression).batch(batch_size)
        count = 0
        try:
            for serialized in dataset:
                n, bad = (int(v) for v in check(serialized).numpy())
                if bad:
                    raise DataError(f"{path}: record {count + 1}..{count + n}: cell indices or values inconsistent")
                count += n
        except tf.errors.OpError as error:
            message = str(error.message).strip().splitlines()[0][:200] if error.message else type(error).__name__
            raise DataError(f"{path}: truncated or corrupt TFRecord shard ({message})") from error
        if count != int(entry["n_events"]):
            raise DataError(f"{path}: {count} records, the metadata says {entry['n_events']}")
        if "sha256" in entry and sha256_file(path) != entry["sha256"]:
            raise DataError(f"{path}: checksum differs from the metadata (modified or corrupt shard)")
        total += count
    if total != int(metadata["n_events"]):
        raise DataError(f"{records_dir}: {total} events in the shards, the metadata says {metadata['n_events']}")
    return {"n_events": total, "n_shards": len(paths)}


# -- encoding sizes ---------------------------------------------------------------------------------------------------
def measure_encoding_sizes(h5_path: str | Path, *, n_events: int = 128) -> dict[str, float]:
    """Compressed bytes per shower of the calorimeter arrays of the first ``n_events`` of ``h5_path``.

    Returns bytes per shower for GZIP TFRecords with dense float32 arrays (``dense_tfrecord``), sparse arrays with
    absolute int64 indices (``sparse_tfrecord``) and the caloml encoding, sparse with index deltas
    (``sparse_delta_tfrecord``); the HDF5 file itself (``hdf5``, file size / events); the raw float32 arrays
    (``raw_float32``); and the mean fraction of non-zero cells (``occupancy``).
    """
    import tensorflow as tf

    feature = tf.train.Feature
    with open_reader(h5_path) as reader:
        n = min(n_events, len(reader))
        events = reader.read(slice(0, n))
        arrays = list(reader.array_keys)
        file_bytes = reader.path.stat().st_size / max(1, len(reader))

    def example(features: dict[str, Any]) -> bytes:
        return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()

    dense, sparse = [], []
    for i in range(n):
        dense_features, sparse_features = {}, {}
        for key in arrays:
            flat = events[key][i].reshape(-1)
            indices = np.flatnonzero(flat)
            dense_features[key] = feature(float_list=tf.train.FloatList(value=flat.tolist()))
            sparse_features[f"{key}/indices"] = feature(int64_list=tf.train.Int64List(value=indices.tolist()))
            sparse_features[f"{key}/values"] = feature(float_list=tf.train.FloatList(value=flat[indices].tolist()))
        dense.append(example(dense_features))
        sparse.append(example(sparse_features))
    delta = encode_events({k: events[k] for k in arrays}, arrays, [])

    sizes: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, records in (("dense_tfrecord", dense), ("sparse_tfrecord", sparse), ("sparse_delta_tfrecord", delta)):
            path = os.path.join(tmp, name)
            options = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=_TFRECORD_GZIP_LEVEL)
            with tf.io.TFRecordWriter(path, options) as writer:
                for record in records:
                    writer.write(record)
            sizes[name] = os.path.getsize(path) / max(1, n)
    sizes["hdf5"] = file_bytes
    sizes["raw_float32"] = float(sum(4 * np.prod(events[k].shape[1:]) for k in arrays))
    sizes["occupancy"] = float(np.mean([np.count_nonzero(events[k]) / events[k].size for k in arrays])) if n else 0.0
    return sizes
