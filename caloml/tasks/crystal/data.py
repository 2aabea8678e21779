"""The crystal generators' data: a crystal-layout HDF5 file (or the simulated default) in memory, split and batched.

A ``crystal-5x5`` file is small (100 bytes per shower), so the whole file is read once; a seeded permutation holds
``data.validation_fraction`` of it out for model selection. A file of another layout (LCD, CaloChallenge) is a
one-line error naming it. The trained energy range is the range of the training showers' primary energies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from caloml.errors import CalomlError, DataError
from caloml.tasks.crystal.config import CrystalConfig

__all__ = ["CrystalInputs", "crystal_dataset", "default_data_path", "load_crystal_file", "prepare_crystal_data"]

#: PDG identifiers of the particles the crystal array simulates.
PDG_IDS = {"electron": 11, "photon": 22}


@dataclass
class CrystalInputs:
    """Located and loaded data: showers (N, n, n) GeV float32 and energies (N,) GeV, for training and selection."""

    path: Path
    train_showers: np.ndarray
    train_energy: np.ndarray
    validation_showers: np.ndarray
    validation_energy: np.ndarray

    @property
    def energy_range_gev(self) -> tuple[float, float]:
        """(lowest, highest) training energy, GeV."""
        return float(self.train_energy.min()), float(self.train_energy.max())


def load_crystal_file(path: str | Path, particle: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(showers (N, n, n), energy (N,)) of a crystal-layout file in GeV; CalomlError for another layout or
    another particle."""
    from caloml.data.hdf5 import open_reader

    with open_reader(path) as reader:
        if reader.layout != "crystal":
            raise DataError(
                f"{path}: a {reader.layout} file ({reader.geometry_name}); the crystal models need a crystal-5x5 file"
            )
        data = reader.read(slice(0, reader.n_events))
    if particle is not None and "pdgID" in data and data["pdgID"].size:
        found = sorted(set(int(v) for v in np.unique(data["pdgID"])))
        if found != [PDG_IDS[particle]]:
            raise DataError(f"{path}: showers of PDG id {found}, but this run trains on {particle}s")
    return data["showers"].astype(np.float32), data["energy"].astype(np.float32).reshape(-1)


def default_data_path(config: CrystalConfig) -> Path:
    """Where the default data of ``config`` is cached."""
    d = config.data
    return Path(d.cache_dir) / f"crystal-5x5-{d.particle}-{d.train_events}ev-seed{d.simulation_seed}.h5"


def _simulate_default(config: CrystalConfig, *, chief: bool) -> Path:
    from caloml.data.hdf5 import open_hdf5, read_attrs
    from caloml.sim.run import SimulationRequest, simulate_file

    d = config.data
    request = SimulationRequest(
        "crystal-5x5", d.particle, d.train_events, d.simulation_seed, energy_points_gev=tuple(d.energy_points_gev)
    ).resolve()
    wanted = json.loads(json.dumps(request.to_config()))
    path = default_data_path(config)
    if path.exists():
        with open_hdf5(path) as handle:
            stored = read_attrs(handle).get("caloml_config")
        if isinstance(stored, dict) and {k: v for k, v in stored.items() if k != "caloml_version"} == {
            k: v for k, v in wanted.items() if k != "caloml_version"
        }:
            return path
        raise CalomlError(f"{path}: holds another simulation; remove it or set data.cache_dir")
    if not chief:
        raise CalomlError(f"{path}: the default data is simulated by the chief worker; start it first")
    simulate_file(request, path, progress=config.runtime.progress, workers=1)
    return path


def prepare_crystal_data(config: CrystalConfig, *, chief: bool) -> CrystalInputs:
    """Read (or simulate) the data of ``config`` and split off the validation showers (seeded)."""
    d = config.data
    if d.particle not in PDG_IDS:
        raise CalomlError(f"the crystal models train on electrons or photons, not {d.particle!r}")
    if not 0.0 < d.validation_fraction < 0.5:
        raise CalomlError(f"data.validation_fraction must be in (0, 0.5), got {d.validation_fraction}")
    path = Path(d.path) if d.path else _simulate_default(config, chief=chief)
    if d.path and not path.is_file():
        raise CalomlError(f"{path}: no such crystal file")
    showers, energy = load_crystal_file(path, d.particle)
    n_validation = max(1, round(d.validation_fraction * len(energy)))
    if len(energy) - n_validation < config.trainer.global_batch_size:
        raise DataError(f"{path}: {len(energy)} showers are too few for batches of {config.trainer.global_batch_size}")
    order = np.random.default_rng(d.simulation_seed + 7919).permutation(len(energy))
    validation, train = order[:n_validation], order[n_validation:]
    return CrystalInputs(path, showers[train], energy[train], showers[validation], energy[validation])


def crystal_dataset(
    config: CrystalConfig, data: CrystalInputs, input_context: tf.distribute.InputContext
) -> tf.data.Dataset:
    """Shuffled (seeded), repeated batches ``{"showers", "energy"}`` of one input pipeline's share."""
    per_replica = input_context.get_per_replica_batch_size(config.trainer.global_batch_size)
    dataset = tf.data.Dataset.from_tensor_slices({"showers": data.train_showers, "energy": data.train_energy})
    if input_context.num_input_pipelines > 1:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    dataset = dataset.shuffle(len(data.train_energy), seed=config.runtime.seed, reshuffle_each_iteration=True)
    return dataset.repeat().batch(per_replica, drop_remainder=True).prefetch(2)
