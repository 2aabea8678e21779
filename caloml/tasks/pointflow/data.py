"""CaloPointFlow data: locating and scanning the records, point-cloud batches and the normalization statistics.

Showers are read from sparse TFRecords, cells below the readout threshold removed and the rest turned into
dequantized point clouds ``{points (B, P, 4), mask (B, P), n_hits (B,), incident_energy (B,) GeV, total_energy
(B,) GeV}``; bad data (NaN, infinite or negative cells and energies) stops the run with a one-line
:class:`~caloml.errors.DataError` naming the file. See ``docs/pointflow.md`` for the data and normalization rules.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from caloml.atomic_files import atomic_write_json
from caloml.data.pipeline import make_dataset, per_replica_batch_size
from caloml.data.tfrecord import convert_to_tfrecords, read_metadata, shard_paths
from caloml.data.transforms import Batch, MinTotalDeposit, ToPointCloud, Transform
from caloml.errors import CalomlError, DataError, OutputExistsError
from caloml.geometry import PointCloudGrid
from caloml.models.pointflow import PointCloudNormalization
from caloml.sim.run import SimulationRequest
from caloml.tasks.default_data import DEFAULT_RECORDS_ROOT, cached_simulation
from caloml.tasks.pointflow.config import NORMALIZATION_FILE, PointFlowConfig, energy_range, read_init_source

__all__ = [
    "BATCH_KEYS",
    "PointCloudInputs",
    "PointFlowNormalization",
    "RecordsScan",
    "ShowerSample",
    "check_records",
    "choose_max_points",
    "collect_showers",
    "locate_records",
    "point_cloud_dataset",
    "prepare_normalization",
    "resolve_records",
    "resuming_run",
    "scan_records",
    "trim_points",
]

#: Batch keys of the model.
BATCH_KEYS = ("points", "mask", "n_hits", "incident_energy", "total_energy")


@dataclass(frozen=True)
class PointCloudInputs(Transform):
    """A decoded batch of one grid to the model's batch: threshold, point cloud, energies.

    Reads the sparse ``K/coords`` + ``K/values`` (TensorFlow) or a dense ``K`` (either version) and the incident
    energy; returns ``points`` (B, max_points, 4) (dequantized cell coordinates, log(E / GeV)), ``mask`` (B,
    max_points) bool, ``n_hits`` (B,) int32 (hits above the threshold, before truncation), ``incident_energy``
    (B,) float32 GeV and ``total_energy`` (B,) float32 GeV (sum of the cells above the threshold); with
    ``count_invalid`` also ``invalid_cells`` (B,) int32, the negative or non-finite cells of each shower.
    """

    cell_key: str
    energy_key: str
    max_points: int
    hit_threshold_gev: float
    seed: int = 0
    count_invalid: bool = False

    def _cloud(self) -> ToPointCloud:
        return ToPointCloud(self.cell_key, self.max_points, seed=self.seed, dequantize=True)

    def numpy(self, batch: Batch) -> dict[str, Any]:
        """The model's batch from dense NumPy cells (N, *grid) GeV."""
        cells = np.asarray(batch[self.cell_key], dtype=np.float32)
        invalid = (~np.isfinite(cells) | (cells < 0)).reshape(len(cells), -1).sum(axis=1).astype(np.int32)
        cells = np.where(cells >= self.hit_threshold_gev, cells, np.float32(0))
        total = cells.reshape(len(cells), -1).sum(axis=1, dtype=np.float64).astype(np.float32)
        cloud = self._cloud().numpy({self.cell_key: cells})
        out = {
            "points": cloud["points"],
            "mask": cloud["mask"],
            "n_hits": cloud["n_hits"],
            "incident_energy": np.asarray(batch[self.energy_key], np.float32).reshape(-1),
            "total_energy": total,
        }
        if self.count_invalid:
            out["invalid_cells"] = invalid
        return out

    def tf(self, batch: Batch) -> dict[str, Any]:
        """The model's batch from a decoded tensor batch (sparse or dense cells)."""
        key = self.cell_key
        if f"{key}/coords" in batch:
            coords, values = batch[f"{key}/coords"], batch[f"{key}/values"]
            keep = values >= self.hit_threshold_gev
            flat = values.flat_values
            bad = tf.RaggedTensor.from_row_splits(~tf.math.is_finite(flat) | (flat < 0), values.row_splits)
            invalid = tf.reduce_sum(tf.cast(bad, tf.int32), axis=1)
            cells = {
                f"{key}/coords": tf.ragged.boolean_mask(coords, keep),
                f"{key}/values": tf.ragged.boolean_mask(values, keep),
            }
            total = tf.reduce_sum(cells[f"{key}/values"], axis=1)
        else:
            dense = tf.convert_to_tensor(batch[key])
            bad = ~tf.math.is_finite(dense) | (dense < 0)
            invalid = tf.reduce_sum(tf.cast(tf.reshape(bad, [tf.shape(dense)[0], -1]), tf.int32), axis=1)
            dense = tf.where(dense >= self.hit_threshold_gev, dense, tf.zeros_like(dense))
            cells = {key: dense}
            total = tf.reduce_sum(tf.reshape(dense, [tf.shape(dense)[0], -1]), axis=1)
        cloud = self._cloud().tf(cells)
        out = {
            "points": cloud["points"],
            "mask": cloud["mask"],
            "n_hits": cloud["n_hits"],
            "incident_energy": tf.reshape(tf.cast(batch[self.energy_key], tf.float32), [-1]),
            "total_energy": tf.cast(total, tf.float32),
        }
        if self.count_invalid:
            out["invalid_cells"] = invalid
        return out


def point_cloud_dataset(
    records: str | Path,
    grid: PointCloudGrid,
    *,
    global_batch_size: int,
    max_points: int,
    hit_threshold_gev: float,
    seed: int,
    input_context: tf.distribute.InputContext | None = None,
    shuffle: bool = True,
    repeat: bool = False,
    drop_remainder: bool = False,
    shuffle_buffer: int = 1024,
    drop_empty: bool = True,
    count_invalid: bool = False,
) -> tf.data.Dataset:
    """Batches of the model (see :class:`PointCloudInputs`) from a TFRecord directory of ``grid``.

    Showers without any cell are dropped before batching; with ``drop_empty``, showers without a cell above the
    threshold are dropped too (after the conversion: the batches are re-formed, so that they stay full). The
    dequantization noise is seeded with ``seed``; ``shuffle`` and the input sharding follow
    :func:`caloml.data.pipeline.make_dataset`.
    """
    inputs = PointCloudInputs(
        grid.cell_key, grid.energy_key, max_points, hit_threshold_gev, seed, count_invalid=count_invalid
    )
    dataset = make_dataset(
        records,
        global_batch_size=global_batch_size,
        input_context=input_context,
        shuffle=shuffle,
        seed=seed,
        repeat=repeat,
        output="sparse",
        keys=[grid.cell_key, grid.energy_key],
        shuffle_buffer=shuffle_buffer,
        transforms=[MinTotalDeposit(0.0, grid.cell_key), inputs],
    )
    if not drop_empty:
        return dataset
    batch_size = per_replica_batch_size(global_batch_size, input_context)
    dataset = dataset.unbatch().filter(lambda shower: shower["n_hits"] > 0)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


@dataclass
class RecordsScan:
    """What one pass over the scalars of every training record found.

    Attributes:
        n_events: showers in the records.
        n_empty: showers without any cell (dropped).
        energy_range_gev: smallest and largest incident energy, GeV.
    """

    n_events: int
    n_empty: int
    energy_range_gev: tuple[float, float]


def check_records(records: Path, grid: PointCloudGrid) -> dict[str, Any]:
    """The metadata of ``records``, checked to hold ``grid``'s cells and incident energy (DataError if not)."""
    metadata = read_metadata(records)
    arrays = metadata["arrays"]
    shape = tuple(int(s) for s in arrays.get(grid.cell_key, {}).get("shape", ()))
    if shape != grid.grid_shape:
        found = ", ".join(f"{k} {tuple(v['shape'])}" for k, v in arrays.items()) or "none"
        raise DataError(
            f"{records}: not {grid.name} data: expected cells '{grid.cell_key}' {grid.grid_shape}, "
            f"found {found} (choose --geometry to match the data)"
        )
    if grid.energy_key not in metadata["scalars"]:
        raise DataError(f"{records}: no incident energy '{grid.energy_key}' in the records")
    return metadata


def scan_records(records: Path, grid: PointCloudGrid) -> RecordsScan:
    """One pass over the scalars (shower sums, incident energies) of every shard of ``records``.

    Raises a one-line DataError naming the shard file and the shower for a NaN, infinite or negative shower sum
    (NaN, infinite or negative cells) or a non-positive or non-finite incident energy.
    """
    metadata = check_records(records, grid)
    sum_key = f"{grid.cell_key}/sum"
    energy_shape = [int(s) for s in metadata["scalars"][grid.energy_key]["shape"]]
    spec = {
        sum_key: tf.io.FixedLenFeature([], tf.float32),
        grid.energy_key: tf.io.FixedLenFeature(energy_shape, tf.float32),
    }
    compression = "" if metadata["encoding"].get("compression") == "NONE" else "GZIP"
    n_events, n_empty = 0, 0
    low, high = math.inf, -math.inf
    for path in shard_paths(records, metadata):
        dataset = tf.data.TFRecordDataset(str(path), compression_type=compression).batch(4096)
        dataset = dataset.map(lambda serialized: tf.io.parse_example(serialized, spec))
        offset = 0
        try:
            batches = [(b[sum_key].numpy(), b[grid.energy_key].numpy().reshape(-1)) for b in dataset]
        except tf.errors.OpError as error:
            raise DataError(f"{path}: unreadable records ({error.message.splitlines()[0]})") from None
        for sums, energies in batches:
            bad_sum = ~np.isfinite(sums) | (sums < 0)
            if bad_sum.any():
                i = int(np.argmax(bad_sum))
                raise DataError(
                    f"{path}: shower {offset + i}: the cells of '{grid.cell_key}' sum to {sums[i]} GeV "
                    "(NaN, infinite or negative cells)"
                )
            bad_energy = ~np.isfinite(energies) | (energies <= 0)
            if bad_energy.any():
                i = int(np.argmax(bad_energy))
                raise DataError(
                    f"{path}: shower {offset + i}: incident energy '{grid.energy_key}' = {energies[i]} GeV "
                    "(must be finite and positive)"
                )
            n_events += len(sums)
            n_empty += int(np.sum(sums == 0))
            kept = energies[sums > 0]
            if kept.size:
                low, high = min(low, float(kept.min())), max(high, float(kept.max()))
            offset += len(sums)
    if n_events == n_empty:
        raise DataError(f"{records}: no shower with a non-empty '{grid.cell_key}'")
    return RecordsScan(n_events, n_empty, (low, high))


def resolve_records(paths: list[str], role: str, *, progress: bool, create: bool) -> Path:
    """The TFRecord directory of ``paths``: the directory itself, or a cache of converted HDF5 files.

    HDF5 files are converted once into ``tf_records/<first file's stem>-<hash>`` (the hash covers the resolved
    paths, sizes and modification times, so that a changed file is converted again).
    """
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return Path(paths[0])
    files = [Path(p) for p in paths]
    for path in files:
        if path.is_dir():
            raise CalomlError(f"{path}: a directory among several data paths; give one TFRecord directory or files")
        if not path.is_file():
            raise CalomlError(f"{path}: no such data file or TFRecord directory ({role} data)")
    stamp = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    digest = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:12]
    out = DEFAULT_RECORDS_ROOT / f"{files[0].stem}{f'+{len(files) - 1}' if len(files) > 1 else ''}-{digest}"
    if (out / "metadata.json").exists():
        print(f"reusing the converted {role} data in {out}")
        return out
    if out.exists() and any(out.iterdir()):
        raise OutputExistsError(f"{out}: exists without metadata.json (an interrupted conversion?); remove it")
    if not create:
        raise CalomlError(f"{out}: the {role} data is not converted yet; run once with one process first")
    print(f"converting {len(files)} file(s) of {role} data into {out}")
    convert_to_tfrecords(files, out, overwrite=out.exists(), progress=progress)  # an empty directory at most
    return out


@dataclass
class ShowerSample:
    """Point-cloud batches in memory (NumPy): the keys of :data:`BATCH_KEYS`, points padded to ``max_points``."""

    arrays: dict[str, np.ndarray]
    n_below_threshold: int

    @property
    def n_showers(self) -> int:
        """Showers held."""
        return len(self.arrays["n_hits"])


def collect_showers(
    records: Path,
    grid: PointCloudGrid,
    *,
    n_showers: int,
    max_points: int,
    hit_threshold_gev: float,
    seed: int,
    shuffle: bool,
) -> ShowerSample:
    """The first ``n_showers`` showers with a hit above the threshold (a seeded shuffle, or the records' order).

    Showers with cells but none above the threshold are skipped and counted. A negative or NaN cell raises
    DataError naming ``records``.
    """
    dataset = point_cloud_dataset(
        records,
        grid,
        global_batch_size=256,
        max_points=max_points,
        hit_threshold_gev=hit_threshold_gev,
        seed=seed,
        shuffle=shuffle,
        drop_empty=False,
        shuffle_buffer=max(1024, n_showers) if shuffle else 1,
        count_invalid=True,
    )
    columns: dict[str, list[np.ndarray]] = {k: [] for k in BATCH_KEYS}
    held, below = 0, 0
    for batch in dataset:
        arrays = {k: v.numpy() for k, v in batch.items()}
        invalid = int(arrays["invalid_cells"].sum())
        if invalid:
            raise DataError(
                f"{records}: {invalid} negative or NaN cells of '{grid.cell_key}' among the showers read "
                f"(showers {held + below} to {held + below + len(arrays['n_hits']) - 1} of the sample)"
            )
        keep = arrays["n_hits"] > 0
        below += int(np.sum(~keep))
        for key in BATCH_KEYS:
            columns[key].append(arrays[key][keep])
        held += int(keep.sum())
        if held >= n_showers:
            break
    if held == 0:
        raise DataError(f"{records}: no shower has a cell above the {hit_threshold_gev:g} GeV threshold")
    sample = {k: np.concatenate(v)[:n_showers] for k, v in columns.items()}
    return ShowerSample(sample, below)


def trim_points(arrays: dict[str, np.ndarray], max_points: int) -> dict[str, np.ndarray]:
    """``arrays`` with the points and mask cut or zero-padded to ``max_points`` (the most energetic hits first)."""
    out = dict(arrays)
    width = arrays["points"].shape[1]
    if width >= max_points:
        out["points"] = arrays["points"][:, :max_points]
        out["mask"] = arrays["mask"][:, :max_points]
    else:
        pad = max_points - width
        out["points"] = np.pad(arrays["points"], ((0, 0), (0, pad), (0, 0)))
        out["mask"] = np.pad(arrays["mask"], ((0, 0), (0, pad)))
    return out


def choose_max_points(n_hits: np.ndarray, cap: int) -> int:
    """Padded cloud size: 10% above the largest hit count, rounded up to a multiple of 64, at most ``cap``."""
    wanted = math.ceil(1.1 * float(np.max(n_hits)) / 64.0) * 64
    return max(1, min(int(cap), max(64, wanted)))


def resuming_run(config: PointFlowConfig) -> bool:
    """Whether the run directory holds a started run (its normalization and a checkpoint) that this one resumes."""
    run_dir = Path(config.runtime.run_dir)
    return (run_dir / NORMALIZATION_FILE).is_file() and bool(tf.train.latest_checkpoint(str(run_dir / "checkpoints")))


def locate_records(config: PointFlowConfig, grid: PointCloudGrid, *, chief: bool) -> tuple[Path, Path]:
    """The training and validation TFRecord directories: the user's data (converted once when HDF5), else the
    simulated default data (training seed ``2 s``, validation ``2 s + 1`` for ``data.simulation_seed`` s), cached.
    Only the ``chief`` converts or simulates."""
    data = config.data
    progress = config.runtime.progress
    if data.records:
        train = resolve_records(list(data.records), "training", progress=progress, create=chief)
        validation = resolve_records(list(data.validation_records), "validation", progress=progress, create=chief)
        return train, validation
    low, high = data.theta_range_rad
    theta = (float(low), float(high)) if grid.file_layout == "lcd" else None

    def request(n: int, seed: int) -> SimulationRequest:
        return SimulationRequest(grid.name, data.particle, n, seed, energy_range(config), theta)

    seed = data.simulation_seed
    train = cached_simulation(request(data.train_events, 2 * seed), "train", progress=progress, create=chief)
    validation = cached_simulation(
        request(data.validation_events, 2 * seed + 1), "validation", progress=progress, create=chief
    )
    return train, validation


@dataclass(frozen=True)
class PointFlowNormalization:
    """The normalization of a run, the padded cloud size P and the model's coupling-split rule."""

    normalization: PointCloudNormalization
    max_points: int
    coupling_rule: str


def prepare_normalization(
    config: PointFlowConfig,
    grid: PointCloudGrid,
    records: Path,
    trained_range_gev: tuple[float, float],
    hit_threshold_gev: float,
    *,
    chief: bool,
) -> PointFlowNormalization:
    """The normalization, the cloud size and the coupling rule: read back from a resumed run's directory, else
    computed from ``data.normalization_showers`` showers of a seeded shuffle of ``records`` (and written there by
    the ``chief``). With ``--init-from`` the source's normalization is kept (its weights expect its units), with
    this run's trained incident-energy range ``trained_range_gev`` (GeV), and the source's coupling rule."""
    path = Path(config.runtime.run_dir) / NORMALIZATION_FILE
    if resuming_run(config):
        stored = json.loads(path.read_text())
        print(f"resuming with the normalization of {path}")
        return PointFlowNormalization(
            PointCloudNormalization.from_dict(stored["normalization"]),
            int(stored["max_points"]),
            str(stored.get("coupling_rule", "legacy")),  # runs from before the rule existed
        )
    data = config.data
    sample = collect_showers(
        records,
        grid,
        n_showers=data.normalization_showers,
        max_points=data.max_points,
        hit_threshold_gev=hit_threshold_gev,
        seed=config.runtime.seed,
        shuffle=True,
    )
    max_points = choose_max_points(sample.arrays["n_hits"], data.max_points)
    arrays = trim_points(sample.arrays, max_points)
    normalization = PointCloudNormalization.from_data(
        arrays["points"],
        arrays["mask"],
        arrays["n_hits"],
        arrays["total_energy"],
        arrays["incident_energy"],
        grid.grid_shape,
    )
    rule = "alternating"
    if config.trainer.init_from:
        source = read_init_source(config.trainer.init_from)
        normalization = PointCloudNormalization.from_dict(source.normalization)
        rule = source.coupling_rule
        print(f"keeping the normalization of the --init-from source {source.path}")
    normalization = replace(
        normalization, incident_energy_range_gev=(float(trained_range_gev[0]), float(trained_range_gev[1]))
    )
    n_hits = np.asarray(sample.arrays["n_hits"])
    truncated = float(np.mean(n_hits > max_points)) if n_hits.size else 0.0
    print(f"{truncated:.2%} of the statistics sample's showers have more than max_points={max_points} hits "
          "(truncated to their most energetic hits)")  # fmt: skip
    if sample.n_below_threshold:
        print(f"{records}: {sample.n_below_threshold} showers of the statistics sample have no hit above "
              f"{hit_threshold_gev:g} GeV; such showers are dropped in training")  # fmt: skip
    if chief:
        record = {
            "normalization": normalization.to_dict(),
            "max_points": max_points,
            "hit_threshold_gev": hit_threshold_gev,
            "showers": sample.n_showers,
            "showers_below_threshold": sample.n_below_threshold,
            "records": str(records),
            "seed": config.runtime.seed,
            "truncated_fraction": truncated,
            "coupling_rule": rule,
            "init_from": str(config.trainer.init_from),
        }
        atomic_write_json(path, record)
    return PointFlowNormalization(normalization, max_points, rule)
