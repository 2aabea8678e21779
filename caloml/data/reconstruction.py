"""Reconstruction data sources: LCD HDF5 files and caloml TFRecord directories read by event index.

The reconstruction tasks (the Triforce networks and the baselines) and the reconstruction evaluation read their
events through these functions, so that an **event index** means the same everywhere: the row of an HDF5 file, or
the record number of a TFRecord directory read shard after shard in the order of its ``metadata.json``. See
``docs/reconstruction.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caloml.data.lcd import LCDReader
from caloml.data.tfrecord import feature_spec, read_metadata, shard_paths
from caloml.errors import DataError

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["Source", "cell_shapes", "ordered_records", "read_scalars", "sum_cells"]

#: Events per TFRecord scalar read.
_SCALAR_BATCH = 4096


@dataclass(frozen=True)
class Source:
    """One input: an LCD HDF5 file (``hdf5``) or a TFRecord directory (``tfrecords``) of ``n_events`` events."""

    path: Path
    format: str
    n_events: int

    @classmethod
    def open(cls, path: str | Path) -> Source:
        """Identify ``path`` (DataError when it is neither an LCD HDF5 file nor a caloml TFRecord directory)."""
        path = Path(path)
        if path.is_dir():
            metadata = read_metadata(path)
            if metadata.get("layout") != "lcd":
                raise DataError(f"{path}: records of the {metadata.get('layout')} layout; Triforce needs LCD showers")
            return cls(path.resolve(), "tfrecords", int(metadata["n_events"]))
        if not path.is_file():
            raise DataError(f"{path}: no such HDF5 file or TFRecord directory")
        with LCDReader(path, keys=["energy"]) as reader:
            return cls(path.resolve(), "hdf5", len(reader))


def sum_cells(cells: np.ndarray) -> np.ndarray:
    """Per-event sums (N,) float32 of cell arrays (N, ...), accumulated in float64 (GeV in, GeV out)."""
    return cells.reshape(len(cells), -1).sum(axis=1, dtype=np.float64).astype(np.float32)


def ordered_records(path: Path, metadata: Mapping[str, Any]) -> tf.data.Dataset:
    """The serialized records of a TFRecord directory in event-index order (shard after shard, as converted)."""
    import tensorflow as tf  # lazy: python -m caloml.evaluate parses its arguments without TensorFlow

    compression = "" if metadata["encoding"].get("compression") == "NONE" else "GZIP"
    files = [str(p) for p in shard_paths(path, metadata)]
    return tf.data.TFRecordDataset(files, compression_type=compression)


def _scalars_hdf5(path: Path, wanted: Sequence[str]) -> tuple[dict[str, np.ndarray], set[str]]:
    """The per-event scalars of an HDF5 file (window sums computed from the cells when absent) and its arrays."""
    with LCDReader(path) as reader:
        keys = set(reader.keys)
        out = {key: reader.read_key(key) for key in wanted if key in keys}
        arrays = set(reader.array_keys)
        missing_sums = [k for k in ("ECAL", "HCAL") if f"{k}_E" not in keys and k in arrays and f"{k}_E" in wanted]
    for key in missing_sums:
        with LCDReader(path, keys=[key]) as reader:
            sums = [sum_cells(chunk[key]) for chunk in reader.iter_chunks()]
        out[f"{key}_E"] = np.concatenate(sums).astype(np.float32)
    return out, arrays


def _scalars_tfrecords(path: Path, wanted: Sequence[str]) -> tuple[dict[str, np.ndarray], set[str]]:
    import tensorflow as tf  # lazy: python -m caloml.evaluate parses its arguments without TensorFlow

    from caloml.data.input_errors import pipeline_errors  # lazy: it imports TensorFlow

    metadata = read_metadata(path)
    spec = feature_spec(metadata, scalars_only=True)
    columns: dict[str, list[np.ndarray]] = {}
    batches = ordered_records(path, metadata).batch(_SCALAR_BATCH).map(lambda s: tf.io.parse_example(s, spec))
    with pipeline_errors([path], where=str(path)):  # a damaged shard: one line naming it
        for batch in batches:
            for key, value in batch.items():
                columns.setdefault(key, []).append(value.numpy().reshape(len(value), -1)[:, 0])
    arrays = set(metadata["arrays"])
    out: dict[str, np.ndarray] = {}
    for key in wanted:
        source = key if key in columns else (f"{key[:-2]}/sum" if key in ("ECAL_E", "HCAL_E") else "")
        if source in columns:
            value = np.concatenate(columns[source])
            out[key] = value.astype(np.int32 if key == "pdgID" else np.float32)
    return out, arrays


def read_scalars(source: Source, wanted: Sequence[str]) -> tuple[dict[str, np.ndarray], set[str]]:
    """The scalars ``wanted`` that ``source`` has, (N,) each in event-index order (GeV), and the names of its cell
    arrays. The window sums ``ECAL_E`` and ``HCAL_E`` are computed from the cells when they are not stored."""
    if source.format == "hdf5":
        return _scalars_hdf5(source.path, wanted)
    return _scalars_tfrecords(source.path, wanted)


def cell_shapes(source: Source) -> dict[str, tuple[int, ...]]:
    """Event shapes of the ECAL and HCAL cell arrays that ``source`` holds (e.g. ``{"ECAL": (51, 51, 25)}``)."""
    if source.format == "hdf5":
        with LCDReader(source.path) as reader:
            return {k: tuple(reader.event_shapes[k]) for k in ("ECAL", "HCAL") if k in reader.array_keys}
    arrays = read_metadata(source.path)["arrays"]
    return {k: tuple(int(n) for n in arrays[k]["shape"]) for k in ("ECAL", "HCAL") if k in arrays}
