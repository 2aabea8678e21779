"""Input-pipeline benchmark: the TFRecord pipeline against a naive h5py loop, and bytes per shower on disk.

:func:`benchmark_pipeline` measures, on one HDF5 file (LCD or CaloChallenge) and its TFRecord conversion:

* ``pipeline_showers_per_s``: dense showers per second delivered by :func:`caloml.data.pipeline.make_dataset`
  (shuffled, batch ``batch_size``), after a warm-up, over ``n_events`` events;
* ``h5py_showers_per_s``: the same number of events read by a plain h5py loop in random order, one event per
  read (``f["ECAL"][i] / 50`` and ``f["energy"][i]``), as a naive user would;
* ``speedup``: their ratio;
* bytes per shower of the calorimeter arrays: ``bytes_per_shower_hdf5`` (the file), ``bytes_per_shower_records``
  (the TFRecord directory), and from a sample re-encoded in GZIP TFRecords: ``..._dense_tfrecord`` (float32),
  ``..._sparse_tfrecord`` (absolute int64 indices) and ``..._sparse_delta_tfrecord`` (caloml's encoding).

Targets on the 2-core development machine: at least 2,000 showers/s and 3x the h5py loop.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from caloml.data.hdf5 import detect_layout, open_hdf5
from caloml.data.tfrecord import METADATA_FILE, convert, load_metadata, measure_encoding_sizes
from caloml.units import LCD_STORED_PER_GEV, MEV_PER_GEV

__all__ = ["benchmark_pipeline"]


def _h5py_loop(h5_path: Path, n_events: int, seed: int) -> float:
    """Showers per second of a random-order, one-event-per-read h5py loop."""
    with open_hdf5(h5_path) as file:
        layout = detect_layout(file)
        cells_key, energy_key, scale = (
            ("ECAL", "energy", LCD_STORED_PER_GEV) if layout == "lcd" else ("showers", "incident_energies", MEV_PER_GEV)
        )
        cells, energies = file[cells_key], file[energy_key]
        n_file = len(cells)
        rng = np.random.default_rng(seed)
        order = np.concatenate([rng.permutation(n_file) for _ in range(-(-n_events // n_file))])[:n_events]
        start = time.perf_counter()
        total = 0.0
        for index in order:
            shower = cells[index] / scale
            energy = energies[index] / (1.0 if layout == "lcd" else scale)
            total += float(energy.sum()) + float(shower[0].sum())  # use the data
        elapsed = time.perf_counter() - start
    return n_events / elapsed


def benchmark_pipeline(
    h5_path: str | Path,
    records_dir: str | Path,
    *,
    batch_size: int = 64,
    n_events: int = 4096,
    warmup_batches: int = 8,
    seed: int = 0,
) -> dict[str, float]:
    """Measure the input pipeline on ``h5_path`` and its TFRecords ``records_dir`` (converted first if absent).

    Returns the figures described in the module docstring (all floats), plus ``n_events``, ``batch_size`` and the
    cell ``occupancy`` (fraction of non-zero cells) of the sample.
    """
    import tensorflow as tf

    from caloml.data.pipeline import make_dataset

    h5_path, records_dir = Path(h5_path), Path(records_dir)
    if not (records_dir / METADATA_FILE).exists():
        convert([h5_path], records_dir)
    metadata = load_metadata(records_dir)
    array_key = next(iter(metadata["arrays"]))

    dataset = make_dataset(records_dir, global_batch_size=batch_size, shuffle=True, seed=seed, repeat=True)
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    count = 0
    start = time.perf_counter()
    while count < n_events:
        batch = next(iterator)
        count += int(tf.shape(batch[array_key])[0])
    pipeline_rate = count / (time.perf_counter() - start)
    del iterator, dataset

    h5py_rate = _h5py_loop(h5_path, n_events, seed)
    sizes = measure_encoding_sizes(h5_path, n_events=min(256, n_events))
    records_bytes = sum(int(s["bytes"]) for s in metadata["shards"]) / max(1, int(metadata["n_events"]))
    return {
        "pipeline_showers_per_s": pipeline_rate,
        "h5py_showers_per_s": h5py_rate,
        "speedup": pipeline_rate / h5py_rate,
        "bytes_per_shower_hdf5": sizes["hdf5"],
        "bytes_per_shower_records": float(records_bytes),
        "bytes_per_shower_dense_tfrecord": sizes["dense_tfrecord"],
        "bytes_per_shower_sparse_tfrecord": sizes["sparse_tfrecord"],
        "bytes_per_shower_sparse_delta_tfrecord": sizes["sparse_delta_tfrecord"],
        "occupancy": sizes["occupancy"],
        "n_events": float(count),
        "batch_size": float(batch_size),
    }
