"""The CaloPointFlow training task: showers as point clouds, the point-cloud VAE, validation-ELBO selection.

``python -m caloml.train pointflow --geometry {calochallenge-2,lcd-gen}`` binds
:class:`caloml.models.pointflow.PointFlowVAE` (seed 000, models.md section 3) to the shared trainer.

Data. Without ``--data`` the simulator's showers are simulated once and cached under ``tf_records/``
(:func:`caloml.tasks.default_data.cached_simulation`), plus an independent validation set:

* ``calochallenge-2``: CaloChallenge dataset-2 electrons (45 x 16 x 9 cylinder), incident energies log-uniform in
  1 GeV - 1 TeV (data-formats.md section 2);
* ``lcd-gen``: the LCD generation set's ECAL (51 x 51 x 25), primary energies uniform in 2 - 500 GeV, at a fixed
  perpendicular incidence by default (``data.theta_range_rad``): the model is conditioned on the energy only.

``--data`` / ``--validation-data`` take the user's files instead: a TFRecord directory
(``python -m caloml.data convert``) or CaloChallenge / LCD HDF5 files, which are converted once into a cache
directory under ``tf_records/`` named after the files (their readers reject NaN and negative energies, naming the
file and the event). With user data the trained incident-energy range is the range found in the training data.

Pipeline. tf.data over the sparse TFRecords (:func:`caloml.data.pipeline.make_dataset` with ``output="sparse"``)
-> cells below the readout threshold ``data.hit_threshold_gev`` removed (CaloChallenge: 15.15 keV, as the official
evaluation does; LCD: 3e-4 GeV, the 3DGAN hit threshold; the simulator leaves cells down to 1e-45 GeV, whose
logarithms would dominate the energy coordinate) -> :class:`~caloml.data.transforms.ToPointCloud` (dequantized,
seeded) -> batches ``{points (B, P, 4), mask (B, P), n_hits (B,), incident_energy (B,) GeV, total_energy (B,)
GeV}`` where ``total_energy`` is the sum of the cells above the threshold.

Bad data, documented handling: showers without any cell (sum 0) are dropped before batching, and their number is
logged by the scan of the training data; showers whose cells all lie below the threshold are dropped after the
point-cloud conversion (counted in the statistics sample). A NaN or infinite shower sum, a negative sum, or a
non-positive / non-finite incident energy in any record stops the run with a one-line :class:`DataError` naming
the shard file; negative or NaN cells are caught in every shower of the statistics sample and the validation set.

Normalization. :class:`~caloml.models.pointflow.PointCloudNormalization` is computed once, from the first
``data.normalization_showers`` showers of a seeded shuffle of the training data, passed to the model (it is part
of the model's configuration, so it travels with ``model.keras``) and written to ``RUN/normalization.json``. A
resumed run reads that file back instead of recomputing. Its incident-energy range is the trained range
(``data.energy_range_gev`` for the default data, the measured range of all training showers for user data).

``max_points`` (the padded cloud size P): 10% above the largest hit count of the statistics sample, rounded up to a
multiple of 64, at most ``data.max_points``. A shower with more hits keeps its ``max_points`` most energetic hits
for the encoder and the reconstruction term; its ``n_hits`` (a latent the model learns) stays the true count.
The fraction of such truncated showers in the statistics sample is printed and stored in ``normalization.json``
(``truncated_fraction``).

``--init-from``: the source must have this run's architecture and seed (the flows' coupling splits and
autoregressive orders are drawn from the seed; weights of another seed would sit on other splits), else a one-line
error; the source's normalization (the units its weights expect) and coupling rule are kept, with this run's
trained incident-energy range; a ``.keras`` source's draw counter restarts at 0.

Selection: the validation negative ELBO per shower in data units (reconstruction + prior + entropy, the
reconstruction including the normalization's Jacobian, see :mod:`caloml.models.pointflow`; the first
``data.max_validation_showers`` validation showers with fixed dequantization noise and a seeded draw of z, so that
epochs compare without sampling noise) after every epoch; the best of the last ``trainer.selection_window`` epochs
is kept.

Presets: ``quick`` (256 showers, a 2 + 2-layer model, 2 epochs of 8 steps: about a minute of wall time on a
2-core CPU, simulation of the default data excluded, most of it tracing the flows' gradient; shows the chain, not
a useful generator) and ``paper`` (the
authors' later settings, models.md section 3: latent 128, 10 + 10 spline coupling layers of 8 bins, bound 5,
per-dimension loss weights, batch 256, Adam 1e-3, on 100k showers).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.data.transforms import Batch, MinTotalDeposit, ToPointCloud, Transform
from caloml.errors import CalomlError, DataError, OutputExistsError
from caloml.geometry import CALOCHALLENGE_2, CLIC_ECAL
from caloml.sim.layouts import DEGREE
from caloml.sim.particles import PARTICLES
from caloml.training.config import RuntimeConfig
from caloml.training.task import SelectionMetric, TrainerSection

__all__ = [
    "GEOMETRIES",
    "NORMALIZATION_FILE",
    "PRESETS",
    "TASK",
    "PointCloudInputs",
    "PointFlowConfig",
    "PointFlowGeometry",
    "PointFlowTask",
    "geometry_of_grid",
    "point_cloud_dataset",
]

#: The normalization statistics written into the run directory.
NORMALIZATION_FILE = "normalization.json"
#: The 3DGAN hit threshold of the LCD ECAL (GeV), used as the LCD readout threshold.
LCD_HIT_THRESHOLD_GEV = 3e-4
#: Batch keys of the model.
BATCH_KEYS = ("points", "mask", "n_hits", "incident_energy", "total_energy")


@dataclass(frozen=True)
class PointFlowGeometry:
    """Where a geometry's showers live in the files.

    Attributes:
        name: ``calochallenge-2`` or ``lcd-gen`` (also the simulator's layout name).
        cell_key: the cell array (``showers`` or ``ECAL``), in-memory shape ``grid_shape``.
        energy_key: the incident-energy scalar (``incident_energies`` (1,) or ``energy`` ()), GeV.
        grid_shape: cells along the three axes (layer, alpha, radius / x, y, z).
        energy_range_gev: the default data's incident-energy range, GeV.
        hit_threshold_gev: default readout threshold, GeV.
        file_layout: ``calochallenge`` or ``lcd`` (the HDF5 layout generation writes).
    """

    name: str
    cell_key: str
    energy_key: str
    grid_shape: tuple[int, int, int]
    energy_range_gev: tuple[float, float]
    hit_threshold_gev: float
    file_layout: str


GEOMETRIES: dict[str, PointFlowGeometry] = {
    "calochallenge-2": PointFlowGeometry(
        "calochallenge-2",
        "showers",
        "incident_energies",
        CALOCHALLENGE_2.shape,
        (1.0, 1000.0),
        CALOCHALLENGE_2.threshold_gev,
        "calochallenge",
    ),
    "lcd-gen": PointFlowGeometry(
        "lcd-gen", "ECAL", "energy", CLIC_ECAL.shape, (2.0, 500.0), LCD_HIT_THRESHOLD_GEV, "lcd"
    ),
}


def geometry_of_grid(grid_shape: Any) -> PointFlowGeometry | None:
    """The geometry of a model's grid (3 ints), None for a grid of none of :data:`GEOMETRIES`."""
    grid = tuple(int(n) for n in grid_shape)
    return next((g for g in GEOMETRIES.values() if g.grid_shape == grid), None)


def get_geometry(name: str) -> PointFlowGeometry:
    """The geometry called ``name`` (CalomlError for another)."""
    if name not in GEOMETRIES:
        raise CalomlError(f"unknown geometry {name!r} for pointflow; choose one of {', '.join(GEOMETRIES)}")
    return GEOMETRIES[name]


@dataclass
class PointFlowData:
    """Data section.

    Attributes:
        geometry: ``calochallenge-2`` or ``lcd-gen``.
        records: training data: a TFRecord directory or HDF5 files (empty: the simulated default).
        validation_records: validation data of the same kinds (required with ``records``).
        particle: particle of the default data (``electron``, ``photon``, ``pi0``, ``chpi``).
        energy_range_gev: incident energies of the default data and its trained range, GeV (``[0, 0]``: the
            geometry's range, 1-1000 GeV for calochallenge-2, 2-500 GeV for lcd-gen).
        theta_range_rad: incidence angles of the default lcd-gen data, radians (fixed 90 degrees by default).
        train_events, validation_events: sizes of the default data.
        simulation_seed: seed of the default data (training ``2 s``, validation ``2 s + 1``).
        hit_threshold_gev: cells below it are not hits (negative: the geometry's readout threshold).
        max_points: upper bound of the padded point-cloud size (see the module docstring).
        normalization_showers: training showers of the normalization statistics pass.
        max_validation_showers: validation showers of the selection metric (the first ones).
        shuffle_buffer: showers in the shuffle buffer.
    """

    geometry: str = "calochallenge-2"
    records: list[str] = field(default_factory=list)
    validation_records: list[str] = field(default_factory=list)
    particle: str = "electron"
    energy_range_gev: tuple[float, float] = (0.0, 0.0)
    theta_range_rad: tuple[float, float] = (90.0 * DEGREE, 90.0 * DEGREE)
    train_events: int = 10000
    validation_events: int = 1000
    simulation_seed: int = 1
    hit_threshold_gev: float = -1.0
    max_points: int = 4096
    normalization_showers: int = 1000
    max_validation_showers: int = 1000
    shuffle_buffer: int = 1024


@dataclass
class PointFlowModelSection:
    """Model section (see :class:`caloml.models.pointflow.PointFlowVAE`)."""

    latent_dim: int = 32
    flow: str = "rqs"
    n_latent_layers: int = 6
    n_point_layers: int = 8
    n_bins: int = 8
    spline_bound: float = 5.0
    hidden_units: int = 128
    conditioner_blocks: int = 2
    encoder_units: list[int] = field(default_factory=lambda: [128, 128])
    loss_weighting: str = "sum"


@dataclass
class PointFlowTrainer(TrainerSection):
    """Trainer section: the shared settings plus the Adam learning rate."""

    epochs: int = 20
    global_batch_size: int = 64
    learning_rate: float = 1e-3


@dataclass
class PointFlowConfig:
    """The whole CaloPointFlow run configuration."""

    data: PointFlowData = field(default_factory=PointFlowData)
    model: PointFlowModelSection = field(default_factory=PointFlowModelSection)
    trainer: PointFlowTrainer = field(default_factory=PointFlowTrainer)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


PRESETS: dict[str, dict[str, Any]] = {
    # a few seconds of training on a 2-core CPU: shows the whole chain, not a useful generator
    "quick": {
        "data": {
            "train_events": 256,
            "validation_events": 64,
            "max_points": 512,
            "normalization_showers": 256,
            "shuffle_buffer": 256,
        },
        "model": {
            "latent_dim": 8,
            "n_latent_layers": 2,
            "n_point_layers": 2,
            "hidden_units": 32,
            "conditioner_blocks": 1,
            "encoder_units": [32, 32],
        },
        "trainer": {"epochs": 2, "global_batch_size": 16, "steps_per_epoch": 8, "selection_window": 2},
    },
    # models.md section 3, the authors' later version: latent 128, 10 coupling layers of 8 bins, bound 5, batch
    # 256, Adam 1e-3, per-dimension loss weights; 100k showers as one CaloChallenge dataset-2 file
    "paper": {
        "data": {"train_events": 100000, "validation_events": 10000, "normalization_showers": 5000},
        "model": {
            "latent_dim": 128,
            "n_latent_layers": 10,
            "n_point_layers": 10,
            "n_bins": 8,
            "spline_bound": 5.0,
            "hidden_units": 256,
            "encoder_units": [256, 256],
            "loss_weighting": "per_dimension",
        },
        "trainer": {"epochs": 100, "global_batch_size": 256, "learning_rate": 1e-3},
    },
}


# -- the point-cloud batches -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointCloudInputs(Transform):
    """A decoded batch of one geometry to the model's batch: threshold, point cloud, energies.

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
    geometry: PointFlowGeometry,
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
    """Batches of the model (see :class:`PointCloudInputs`) from a TFRecord directory of ``geometry``.

    Showers without any cell are dropped before batching; with ``drop_empty``, showers without a cell above the
    threshold are dropped too (after the conversion: the batches are re-formed, so that they stay full). The
    dequantization noise is seeded with ``seed``; ``shuffle`` and the input sharding follow
    :func:`caloml.data.pipeline.make_dataset`.
    """
    from caloml.data.pipeline import make_dataset, per_replica_batch_size

    inputs = PointCloudInputs(
        geometry.cell_key, geometry.energy_key, max_points, hit_threshold_gev, seed, count_invalid=count_invalid
    )
    dataset = make_dataset(
        records,
        global_batch_size=global_batch_size,
        input_context=input_context,
        shuffle=shuffle,
        seed=seed,
        repeat=repeat,
        output="sparse",
        keys=[geometry.cell_key, geometry.energy_key],
        shuffle_buffer=shuffle_buffer,
        transforms=[MinTotalDeposit(0.0, geometry.cell_key), inputs],
    )
    if not drop_empty:
        return dataset
    batch_size = per_replica_batch_size(global_batch_size, input_context)
    dataset = dataset.unbatch().filter(lambda shower: shower["n_hits"] > 0)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


# -- locating and checking the data ----------------------------------------------------------------------------------
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


def check_records(records: Path, geometry: PointFlowGeometry) -> dict[str, Any]:
    """The metadata of ``records``, checked to hold ``geometry``'s cells and incident energy (DataError if not)."""
    from caloml.data.tfrecord import read_metadata

    metadata = read_metadata(records)
    arrays = metadata["arrays"]
    shape = tuple(int(s) for s in arrays.get(geometry.cell_key, {}).get("shape", ()))
    if shape != geometry.grid_shape:
        found = ", ".join(f"{k} {tuple(v['shape'])}" for k, v in arrays.items()) or "none"
        raise DataError(
            f"{records}: not {geometry.name} data: expected cells '{geometry.cell_key}' {geometry.grid_shape}, "
            f"found {found} (choose --geometry to match the data)"
        )
    if geometry.energy_key not in metadata["scalars"]:
        raise DataError(f"{records}: no incident energy '{geometry.energy_key}' in the records")
    return metadata


def scan_records(records: Path, geometry: PointFlowGeometry) -> RecordsScan:
    """One pass over the scalars (shower sums, incident energies) of every shard of ``records``.

    Raises a one-line DataError naming the shard file and the shower for a NaN, infinite or negative shower sum
    (NaN, infinite or negative cells) or a non-positive or non-finite incident energy.
    """
    from caloml.data.tfrecord import shard_paths

    metadata = check_records(records, geometry)
    sum_key = f"{geometry.cell_key}/sum"
    energy_shape = [int(s) for s in metadata["scalars"][geometry.energy_key]["shape"]]
    spec = {
        sum_key: tf.io.FixedLenFeature([], tf.float32),
        geometry.energy_key: tf.io.FixedLenFeature(energy_shape, tf.float32),
    }
    compression = "" if metadata["encoding"].get("compression") == "NONE" else "GZIP"
    n_events, n_empty = 0, 0
    low, high = math.inf, -math.inf
    for path in shard_paths(records, metadata):
        dataset = tf.data.TFRecordDataset(str(path), compression_type=compression).batch(4096)
        dataset = dataset.map(lambda serialized: tf.io.parse_example(serialized, spec))
        offset = 0
        try:
            batches = [(b[sum_key].numpy(), b[geometry.energy_key].numpy().reshape(-1)) for b in dataset]
        except tf.errors.OpError as error:
            raise DataError(f"{path}: unreadable records ({error.message.splitlines()[0]})") from None
        for sums, energies in batches:
            bad_sum = ~np.isfinite(sums) | (sums < 0)
            if bad_sum.any():
                i = int(np.argmax(bad_sum))
                raise DataError(
                    f"{path}: shower {offset + i}: the cells of '{geometry.cell_key}' sum to {sums[i]} GeV "
                    "(NaN, infinite or negative cells)"
                )
            bad_energy = ~np.isfinite(energies) | (energies <= 0)
            if bad_energy.any():
                i = int(np.argmax(bad_energy))
                raise DataError(
                    f"{path}: shower {offset + i}: incident energy '{geometry.energy_key}' = {energies[i]} GeV "
                    "(must be finite and positive)"
                )
            n_events += len(sums)
            n_empty += int(np.sum(sums == 0))
            kept = energies[sums > 0]
            if kept.size:
                low, high = min(low, float(kept.min())), max(high, float(kept.max()))
            offset += len(sums)
    if n_events == n_empty:
        raise DataError(f"{records}: no shower with a non-empty '{geometry.cell_key}'")
    return RecordsScan(n_events, n_empty, (low, high))


def resolve_records(paths: list[str], role: str, *, progress: bool, create: bool) -> Path:
    """The TFRecord directory of ``paths``: the directory itself, or a cache of converted HDF5 files.

    HDF5 files are converted once into ``tf_records/<first file's stem>-<hash>`` (the hash covers the resolved
    paths, sizes and modification times, so that a changed file is converted again).
    """
    from caloml.data.tfrecord import convert_to_tfrecords
    from caloml.tasks.default_data import DEFAULT_RECORDS_ROOT

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
    geometry: PointFlowGeometry,
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
        geometry,
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
                f"{records}: {invalid} negative or NaN cells of '{geometry.cell_key}' among the showers read "
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


#: Model-section fields that shape the weights: an ``--init-from`` source must match them (and the seed).
ARCHITECTURE_KEYS = (
    "latent_dim",
    "flow",
    "n_latent_layers",
    "n_point_layers",
    "n_bins",
    "spline_bound",
    "hidden_units",
    "conditioner_blocks",
    "encoder_units",
)


def check_model_section(model: PointFlowModelSection) -> None:
    """Raise a one-line :class:`CalomlError` for any unusable model setting (before any data work)."""
    for name in ("latent_dim", "n_latent_layers", "n_point_layers", "n_bins", "hidden_units", "conditioner_blocks"):
        value = getattr(model, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CalomlError(f"model.{name} must be a positive integer, got {value!r}")
    bound = model.spline_bound
    if isinstance(bound, bool) or not isinstance(bound, int | float) or not (math.isfinite(bound) and bound > 0):
        raise CalomlError(f"model.spline_bound must be a positive number (normalized units), got {bound!r}")
    units = model.encoder_units
    if (
        not isinstance(units, list | tuple)
        or not units
        or any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in units)
    ):
        raise CalomlError(f"model.encoder_units must be a non-empty list of positive integers, got {units!r}")
    if model.flow not in ("rqs", "maf"):
        raise CalomlError(f"model.flow must be 'rqs' or 'maf', got {model.flow!r}")
    if model.loss_weighting not in ("sum", "per_dimension"):
        raise CalomlError(f"model.loss_weighting must be 'sum' or 'per_dimension', got {model.loss_weighting!r}")


@dataclass(frozen=True)
class InitSource:
    """What an ``--init-from`` source was built with: its seed, architecture, coupling rule and normalization."""

    path: Path
    seed: int
    model: dict[str, Any]
    coupling_rule: str
    normalization: dict[str, Any]


def read_init_source(init_from: str) -> InitSource:
    """Read the settings of an ``--init-from`` source (``model.keras``, a run directory or a checkpoint of one)
    without loading its weights: from the ``.keras`` file's config, else from the run's ``config.yaml`` and
    ``normalization.json``. A one-line :class:`CalomlError` when they cannot be found."""
    import zipfile

    import yaml

    path = Path(init_from)
    if path.is_dir() and (path / "model.keras").is_file():
        path = path / "model.keras"
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                saved = json.loads(archive.read("config.json"))
            config = saved["config"]
            return InitSource(
                path,
                int(config["seed"]),
                {k: config[k] for k in ARCHITECTURE_KEYS},
                str(config.get("coupling_rule", "legacy")),
                dict(config["normalization"]),
            )
        except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile):
            raise CalomlError(f"--init-from {path}: not a readable PointFlow model.keras") from None
    if path.is_dir():
        run = path if (path / "config.yaml").is_file() else path.parent
    else:
        run = path.parent.parent  # RUN/checkpoints/ckpt-N
    try:
        run_config = yaml.safe_load((run / "config.yaml").read_text())
        record = json.loads((run / NORMALIZATION_FILE).read_text())
        return InitSource(
            path,
            int(run_config["runtime"]["seed"]),
            {k: run_config["model"][k] for k in ARCHITECTURE_KEYS},
            str(record.get("coupling_rule", "legacy")),
            dict(record["normalization"]),
        )
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        raise CalomlError(
            f"--init-from {path}: no PointFlow run there (needs model.keras, or config.yaml and "
            f"{NORMALIZATION_FILE} next to the checkpoints)"
        ) from None


def check_init_settings(config: PointFlowConfig, source: InitSource) -> None:
    """Refuse an ``--init-from`` source whose weights would not mean the same in this run's model: another
    architecture, another grid or another seed (the flows' coupling splits and autoregressive orders are drawn
    from the seed, so weights of another seed would land on other splits: silently scrambled flows)."""
    differences = [
        f"model.{k} {source.model[k]!r} (this run {getattr(config.model, k)!r})"
        for k in ARCHITECTURE_KEYS
        if source.model[k] != (list(v) if isinstance(v := getattr(config.model, k), tuple) else v)
    ]
    if differences:
        raise CalomlError(f"--init-from {source.path}: another architecture, " + ", ".join(differences[:3]))
    if source.seed != config.runtime.seed:
        raise CalomlError(
            f"--init-from {source.path}: trained with seed {source.seed}, this run has {config.runtime.seed}; the "
            f"flows' splits and orders depend on the seed: use --seed {source.seed}"
        )
    grid = tuple(source.normalization.get("grid_shape", ()))
    if grid != get_geometry(config.data.geometry).grid_shape:
        raise CalomlError(f"--init-from {source.path}: a model of the grid {grid}, this run is {config.data.geometry}")


# -- the task --------------------------------------------------------------------------------------------------------
@dataclass
class PointFlowInputs:
    """Located data: the training records, the normalization, the cloud size and the validation showers."""

    train_records: Path
    n_train_events: int
    normalization: Any
    max_points: int
    hit_threshold_gev: float
    validation: dict[str, np.ndarray]
    #: the coupling-split rule of the model (a run resumed from before the rule existed keeps "legacy")
    coupling_rule: str = "alternating"


class PointFlowTask:
    """CaloPointFlow (seed 000): point-cloud VAE with normalizing flows, conditioned on the incident energy."""

    name = "pointflow"
    config_class = PointFlowConfig
    presets = PRESETS

    # -- command line
    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:  # type: ignore[override]
        parser.add_argument("--geometry", choices=sorted(GEOMETRIES), help="calochallenge-2 (default) or lcd-gen")
        parser.add_argument("--particle", choices=PARTICLES, help="particle of the default data")
        parser.add_argument("--data", nargs="+", metavar="PATH", help="TFRecord directory or HDF5 files")
        parser.add_argument("--validation-data", nargs="+", metavar="PATH", help="validation data (with --data)")
        parser.add_argument("--energy-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="GeV, default data")
        parser.add_argument("--events", type=int, help="training showers of the default data")
        parser.add_argument("--max-points", type=int, help="largest padded point-cloud size")
        parser.add_argument("--flow", choices=["rqs", "maf"], help="coupling layers: splines or autoregressive")
        parser.add_argument("--latent-dim", type=int, help="latent dimensions (plus n_hits and the total energy)")

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return {
            "data.geometry": args.geometry,
            "data.particle": args.particle,
            "data.records": args.data,
            "data.validation_records": args.validation_data,
            "data.energy_range_gev": args.energy_range,
            "data.train_events": args.events,
            "data.max_points": args.max_points,
            "model.flow": args.flow,
            "model.latent_dim": args.latent_dim,
        }

    def default_run_dir(self, config: PointFlowConfig) -> Path:
        data = config.data
        if data.records:
            return Path("runs") / f"pointflow-{data.geometry}-{Path(data.records[0]).stem}"
        return Path("runs") / f"pointflow-{data.geometry}-{data.particle}"

    # -- data
    def _check(self, config: PointFlowConfig) -> PointFlowGeometry:
        geometry = get_geometry(config.data.geometry)
        data = config.data
        if data.particle not in PARTICLES:
            raise CalomlError(f"unknown particle {data.particle!r}; choose one of {', '.join(PARTICLES)}")
        if data.records and not data.validation_records:
            raise CalomlError("--data needs --validation-data too: model selection uses a validation split")
        if data.validation_records and not data.records:
            raise CalomlError("--validation-data needs --data (the default data has its own validation set)")
        low, high = energy_range(config)
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise CalomlError(f"data.energy_range_gev must be 0 < low < high GeV, got {low:g} {high:g}")
        for name, value in (
            ("data.max_points", data.max_points),
            ("data.normalization_showers", data.normalization_showers),
            ("data.max_validation_showers", data.max_validation_showers),
            ("data.train_events", data.train_events),
            ("data.validation_events", data.validation_events),
        ):
            if value < 1:
                raise CalomlError(f"{name} must be positive, got {value}")
        check_model_section(config.model)
        if config.trainer.init_from and not _resuming(config):  # a resumed run no longer reads its source
            check_init_settings(config, read_init_source(config.trainer.init_from))
        return geometry

    def prepare_data(self, config: PointFlowConfig, *, chief: bool) -> PointFlowInputs:
        geometry = self._check(config)
        data = config.data
        progress = config.runtime.progress
        if data.records:
            train = resolve_records(list(data.records), "training", progress=progress, create=chief)
            validation = resolve_records(list(data.validation_records), "validation", progress=progress, create=chief)
        else:
            from caloml.sim.run import SimulationRequest
            from caloml.tasks.default_data import cached_simulation

            low, high = data.theta_range_rad
            theta = (float(low), float(high)) if geometry.file_layout == "lcd" else None

            def request(n: int, seed: int) -> SimulationRequest:
                return SimulationRequest(geometry.name, data.particle, n, seed, energy_range(config), theta)

            seed = data.simulation_seed
            train = cached_simulation(request(data.train_events, 2 * seed), "train", progress=progress, create=chief)
            validation = cached_simulation(
                request(data.validation_events, 2 * seed + 1), "validation", progress=progress, create=chief
            )
        check_records(validation, geometry)
        scan = scan_records(train, geometry)
        if scan.n_empty:
            print(f"{train}: dropping {scan.n_empty} of {scan.n_events} training showers without any cell")
        trained_range = scan.energy_range_gev if data.records else energy_range(config)
        threshold = hit_threshold(config)
        normalization, max_points, rule = self._normalization(config, geometry, train, trained_range, threshold, chief)
        sample = collect_showers(
            validation,
            geometry,
            n_showers=data.max_validation_showers,
            max_points=max_points,
            hit_threshold_gev=threshold,
            seed=config.runtime.seed + 1,
            shuffle=False,
        )
        if sample.n_below_threshold:
            print(f"{validation}: dropping {sample.n_below_threshold} validation showers without a hit above "
                  f"{threshold:g} GeV")  # fmt: skip
        return PointFlowInputs(
            train, scan.n_events - scan.n_empty, normalization, max_points, threshold, sample.arrays, rule
        )

    def _normalization(
        self,
        config: PointFlowConfig,
        geometry: PointFlowGeometry,
        records: Path,
        trained_range: tuple[float, float],
        threshold: float,
        chief: bool,
    ) -> tuple[Any, int, str]:
        """The normalization, the cloud size and the coupling rule: read back from a resumed run's directory, else
        computed (and written there). With ``--init-from`` the source's normalization is kept (its weights expect
        its units), with this run's trained incident-energy range, and the source's coupling rule."""
        from caloml.atomic_files import atomic_write_json
        from caloml.models.pointflow import PointCloudNormalization

        path = Path(config.runtime.run_dir) / NORMALIZATION_FILE
        if _resuming(config):
            stored = json.loads(path.read_text())
            print(f"resuming with the normalization of {path}")
            rule = str(stored.get("coupling_rule", "legacy"))  # runs from before the rule existed
            return PointCloudNormalization.from_dict(stored["normalization"]), int(stored["max_points"]), rule
        data = config.data
        sample = collect_showers(
            records,
            geometry,
            n_showers=data.normalization_showers,
            max_points=data.max_points,
            hit_threshold_gev=threshold,
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
            geometry.grid_shape,
        )
        rule = "alternating"
        if config.trainer.init_from:
            source = read_init_source(config.trainer.init_from)
            normalization = PointCloudNormalization.from_dict(source.normalization)
            rule = source.coupling_rule
            print(f"keeping the normalization of the --init-from source {source.path}")
        normalization = replace(
            normalization, incident_energy_range_gev=(float(trained_range[0]), float(trained_range[1]))
        )
        n_hits = np.asarray(sample.arrays["n_hits"])
        truncated = float(np.mean(n_hits > max_points)) if n_hits.size else 0.0
        print(f"{truncated:.2%} of the statistics sample's showers have more than max_points={max_points} hits "
              "(truncated to their most energetic hits)")  # fmt: skip
        record = {
            "normalization": normalization.to_dict(),
            "max_points": max_points,
            "hit_threshold_gev": threshold,
            "showers": sample.n_showers,
            "showers_below_threshold": sample.n_below_threshold,
            "records": str(records),
            "seed": config.runtime.seed,
            "truncated_fraction": truncated,
            "coupling_rule": rule,
            "init_from": str(config.trainer.init_from),
        }
        if sample.n_below_threshold:
            print(f"{records}: {sample.n_below_threshold} showers of the statistics sample have no hit above "
                  f"{threshold:g} GeV; such showers are dropped in training")  # fmt: skip
        if chief:
            atomic_write_json(path, record)
        return normalization, max_points, rule

    def make_dataset(
        self, config: PointFlowConfig, data: PointFlowInputs, input_context: tf.distribute.InputContext
    ) -> tf.data.Dataset:
        return point_cloud_dataset(
            data.train_records,
            get_geometry(config.data.geometry),
            global_batch_size=config.trainer.global_batch_size,
            max_points=data.max_points,
            hit_threshold_gev=data.hit_threshold_gev,
            seed=config.runtime.seed,
            input_context=input_context,
            shuffle=True,
            repeat=True,
            drop_remainder=True,
            shuffle_buffer=config.data.shuffle_buffer,
        )

    def steps_per_epoch(self, config: PointFlowConfig, data: PointFlowInputs) -> int:
        return max(1, data.n_train_events // config.trainer.global_batch_size)

    # -- model
    def build_model(self, config: PointFlowConfig, data: PointFlowInputs) -> keras.Model:
        from caloml.models.pointflow import PointFlowVAE

        m = config.model
        model = PointFlowVAE(
            normalization=data.normalization,
            latent_dim=m.latent_dim,
            flow=m.flow,
            n_latent_layers=m.n_latent_layers,
            n_point_layers=m.n_point_layers,
            n_bins=m.n_bins,
            spline_bound=m.spline_bound,
            hidden_units=m.hidden_units,
            conditioner_blocks=m.conditioner_blocks,
            encoder_units=list(m.encoder_units),
            loss_weighting=m.loss_weighting,
            seed=config.runtime.seed,
            coupling_rule=data.coupling_rule,
        )
        model.compile(optimizer=keras.optimizers.Adam(config.trainer.learning_rate))
        _build(model, data)
        return model

    def optimizers(self, model: keras.Model) -> dict[str, keras.optimizers.Optimizer]:
        return {"optimizer": model.optimizer}

    def check_init_source(self, config: PointFlowConfig, source: keras.Model) -> None:
        """Refuse a loaded ``--init-from`` model of another class, architecture, grid or seed (see
        :func:`check_init_settings`), and reset its draw counter: the copied weights then start this run's
        training draws at 0, as in a fresh run (a checkpoint source keeps its counter)."""
        from caloml.models.pointflow import PointFlowVAE

        if not isinstance(source, PointFlowVAE):
            raise CalomlError(f"--init-from: a {type(source).__name__}, not a PointFlowVAE")
        settings = source.get_config()
        path = Path(config.trainer.init_from)
        check_init_settings(
            config,
            InitSource(
                path,
                int(source.seed),
                {k: settings[k] for k in ARCHITECTURE_KEYS},
                source.coupling_rule,
                settings["normalization"],
            ),
        )
        source.random_draws.assign(0)

    # -- selection and export
    def selection_metric(self, config: PointFlowConfig, data: PointFlowInputs) -> SelectionMetric:
        validation = data.validation
        batch_size = config.trainer.global_batch_size
        seed = config.runtime.seed

        cache: dict[int, tuple[keras.Model, Any]] = {}

        def compute(model: keras.Model) -> float:
            return validation_negative_elbo(model, validation, batch_size=batch_size, seed=seed, cache=cache)

        return SelectionMetric(
            "validation_negative_elbo",
            compute,
            f"negative ELBO per shower in data units (reconstruction with the normalization's Jacobian + prior + "
            f"entropy, one seeded draw of z) on "
            f"{len(validation['n_hits'])} validation showers with fixed dequantization",
        )

    def export(self, model: keras.Model, config: PointFlowConfig, run_dir: Path) -> Path | None:
        from caloml.export.pointflow import export_pointflow

        return Path(export_pointflow(model, provenance={"source": str(run_dir), "seed": config.runtime.seed}))


def energy_range(config: PointFlowConfig) -> tuple[float, float]:
    """The default data's incident-energy range (GeV): ``data.energy_range_gev``, or the geometry's for ``[0, 0]``."""
    low, high = (float(v) for v in config.data.energy_range_gev)
    if low == 0.0 and high == 0.0:
        return get_geometry(config.data.geometry).energy_range_gev
    return low, high


def hit_threshold(config: PointFlowConfig) -> float:
    """The hit threshold (GeV): ``data.hit_threshold_gev``, or the geometry's readout threshold when negative."""
    value = float(config.data.hit_threshold_gev)
    return get_geometry(config.data.geometry).hit_threshold_gev if value < 0 else value


def validation_negative_elbo(
    model: keras.Model,
    showers: dict[str, np.ndarray],
    *,
    batch_size: int,
    seed: int,
    cache: dict[int, tuple[keras.Model, Any]] | None = None,
) -> float:
    """Mean negative ELBO per shower in data units (reconstruction + prior + entropy, unweighted; the
    reconstruction includes the normalization's Jacobian, so runs with different normalizations compare) of
    ``showers`` (NumPy batch arrays, see :data:`BATCH_KEYS`), with the reparameterization noise of batch ``k``
    seeded by ``(seed, k)``: the same model gives the same value, so that epochs compare without sampling noise.
    Does not change the model. ``cache`` keeps the traced computation between calls (one trace per model, not per
    epoch)."""

    cache = {} if cache is None else cache
    terms = cache.get(id(model))
    if terms is None or terms[0] is not model:

        @tf.function(reduce_retracing=True)
        def summed(batch: dict[str, tf.Tensor], batch_seed: tf.Tensor) -> tf.Tensor:
            values = model.elbo_terms(batch, batch_seed)
            return tf.reduce_sum(values["reconstruction"] + values["prior"] + values["entropy"])

        terms = cache[id(model)] = (model, summed)
    total, count = 0.0, 0
    n = len(showers["n_hits"])
    for index, start in enumerate(range(0, n, batch_size)):
        batch = {k: tf.convert_to_tensor(showers[k][start : start + batch_size]) for k in BATCH_KEYS}
        total += float(terms[1](batch, tf.constant([seed, index], tf.int64)))
        count += len(batch["n_hits"])
    return total / max(count, 1)


def _resuming(config: PointFlowConfig) -> bool:
    """Whether the run directory holds a started run (its normalization and a checkpoint) that this one resumes."""
    run_dir = Path(config.runtime.run_dir)
    return (run_dir / NORMALIZATION_FILE).is_file() and bool(tf.train.latest_checkpoint(str(run_dir / "checkpoints")))


def _build(model: keras.Model, data: PointFlowInputs) -> None:
    """Make sure the optimizer's slots exist, so that a checkpoint restores them (the model builds its weights in
    its constructor and, from its ``compile``, its optimizer; it also skips Keras' symbolic build, which averages a
    distributed batch and fails on the boolean ``mask`` under ``MirroredStrategy``)."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


TASK = PointFlowTask()
