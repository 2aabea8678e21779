"""The Calorimeter Pyramid's data: dense CaloChallenge dataset-2 batches, the statistics pass and the validation
sample.

Without ``--data`` the simulator's dataset-2 showers are simulated once and cached under ``tf_records/``; ``--data``
and ``--validation-data`` take TFRecord directories or CaloChallenge HDF5 files (converted once; the locating and
checking of records is CaloPointFlow's, :mod:`caloml.tasks.pointflow`). Batches are ``{"showers": (B, 45, 16, 9)
float32 GeV, "incident_energy": (B,) float32 GeV}``; showers without a cell at or above the hit threshold are
dropped (they have no hit pattern to learn). See ``docs/pyramid.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from caloml.data.pipeline import make_dataset, per_replica_batch_size
from caloml.data.transforms import MinTotalDeposit
from caloml.errors import DataError
from caloml.geometry import POINT_CLOUD_GRIDS
from caloml.models.pyramid import PyramidStatistics

__all__ = ["CELL_KEY", "ENERGY_KEY", "PyramidInputs", "collect_showers", "compute_statistics", "shower_dataset"]

#: The cell array and incident-energy keys of CaloChallenge records.
CELL_KEY = POINT_CLOUD_GRIDS["calochallenge-2"].cell_key
ENERGY_KEY = POINT_CLOUD_GRIDS["calochallenge-2"].energy_key


@dataclass
class PyramidInputs:
    """What ``prepare_data`` found: the training records, their usable size, the statistics, the validation sample
    (``showers`` (N, 45, 16, 9) GeV, ``incident_energy`` (N,) GeV) and the hit threshold (GeV)."""

    train_records: Path
    n_train_events: int
    statistics: PyramidStatistics
    validation: dict[str, np.ndarray]
    hit_threshold_gev: float


def shower_dataset(
    records: str | Path,
    *,
    global_batch_size: int,
    hit_threshold_gev: float,
    seed: int,
    input_context: tf.distribute.InputContext | None = None,
    shuffle: bool = True,
    repeat: bool = False,
    drop_remainder: bool = False,
    shuffle_buffer: int = 1024,
) -> tf.data.Dataset:
    """Batches ``{"showers", "incident_energy"}`` of dense dataset-2 showers with at least one hit, from a
    TFRecord directory (seeded shuffle and sharding as :func:`caloml.data.pipeline.make_dataset`)."""
    dataset = make_dataset(
        records,
        global_batch_size=global_batch_size,
        input_context=input_context,
        shuffle=shuffle,
        seed=seed,
        repeat=repeat,
        output="dense",
        keys=[CELL_KEY, ENERGY_KEY],
        shuffle_buffer=shuffle_buffer,
        transforms=[MinTotalDeposit(0.0, CELL_KEY)],
    )

    def select(batch: dict[str, Any]) -> dict[str, tf.Tensor]:
        return {
            "showers": tf.cast(batch[CELL_KEY], tf.float32),
            "incident_energy": tf.reshape(tf.cast(batch[ENERGY_KEY], tf.float32), [-1]),
        }

    def has_hit(shower: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.reduce_any(shower["showers"] >= hit_threshold_gev)

    batch_size = per_replica_batch_size(global_batch_size, input_context)
    dataset = dataset.map(select).unbatch().filter(has_hit)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def collect_showers(
    records: Path, *, n_showers: int, hit_threshold_gev: float, seed: int, shuffle: bool
) -> dict[str, np.ndarray]:
    """The first ``n_showers`` showers with a hit (a seeded shuffle, or the records' order) as NumPy arrays;
    DataError for negative or non-finite cells or incident energies, or when no shower has a hit."""
    dataset = shower_dataset(
        records,
        global_batch_size=256,
        hit_threshold_gev=hit_threshold_gev,
        seed=seed,
        shuffle=shuffle,
        shuffle_buffer=max(1024, n_showers) if shuffle else 1,
    )
    showers, energies, held = [], [], 0
    for batch in dataset:
        cells, energy = batch["showers"].numpy(), batch["incident_energy"].numpy()
        if not (np.all(np.isfinite(cells)) and np.all(cells >= 0)):
            raise DataError(f"{records}: negative or non-finite cells among the showers read")
        if not (np.all(np.isfinite(energy)) and np.all(energy > 0)):
            raise DataError(f"{records}: non-positive or non-finite incident energies among the showers read")
        showers.append(cells)
        energies.append(energy)
        held += len(cells)
        if held >= n_showers:
            break
    if held == 0:
        raise DataError(f"{records}: no shower has a cell at or above the {hit_threshold_gev:g} GeV threshold")
    return {"showers": np.concatenate(showers)[:n_showers], "incident_energy": np.concatenate(energies)[:n_showers]}


def compute_statistics(
    records: Path, *, n_showers: int, hit_threshold_gev: float, trained_range_gev: tuple[float, float], seed: int
) -> PyramidStatistics:
    """The model's statistics from the first ``n_showers`` showers of a seeded shuffle of ``records``."""
    sample = collect_showers(records, n_showers=n_showers, hit_threshold_gev=hit_threshold_gev, seed=seed, shuffle=True)
    return PyramidStatistics.from_showers(
        sample["showers"], sample["incident_energy"], hit_threshold_gev, trained_range_gev
    )
