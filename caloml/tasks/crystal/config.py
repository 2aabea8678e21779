"""The configuration of the crystal-array generators (``wgan``, ``vae``, ``vaewgan``) and their presets.

One dataclass tree serves the three tasks; each reads the model keys it needs. Presets: ``quick`` (a 2-core CPU in
well under a minute, to show the whole chain) and ``paper`` (the measured runs of ``docs/vaewgan.md``: 56,000
simulated showers on the energy grid, about 10-20 CPU minutes per model on a 2-core CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from caloml.training.config import TaskConfig
from caloml.training.task import TrainerSection

#: Primary energies of the training grid (GeV); 2 GeV is held out for the interpolation test.
TRAINING_ENERGIES_GEV = (0.5, 1.0, 1.5, 2.5, 3.0, 4.0, 5.0)


@dataclass
class CrystalData:
    """Data section.

    Attributes:
        path: a crystal-layout HDF5 file (``python -m caloml.data simulate --geometry crystal-5x5``); empty:
            simulate the default data set (cached under ``cache_dir``).
        particle: ``electron`` or ``photon`` (the default data's particle; a file's ``pdgID`` must agree).
        energy_points_gev: energies of the default data (GeV); the model's trained range is the data's range.
        train_events: showers of the default data.
        simulation_seed: seed of the default data.
        validation_fraction: share of the showers held out (seeded) for model selection.
        selection_events: most validation showers used by the selection metric.
        cache_dir: where the default data is cached.
    """

    path: str = ""
    particle: str = "electron"
    energy_points_gev: tuple[float, ...] = TRAINING_ENERGIES_GEV
    train_events: int = 56000
    simulation_seed: int = 1
    validation_fraction: float = 0.1
    selection_events: int = 5000
    cache_dir: str = "data"


@dataclass
class CrystalModelConfig:
    """Model section (see :mod:`caloml.models.crystal_wgan`, :mod:`~caloml.models.crystal_vae`,
    :mod:`~caloml.models.crystal_vaewgan`); the WGAN keys do not apply to ``vae``, the VAE keys not to ``wgan``."""

    # every model
    latent_dim: int = 8
    hidden_units: int = 128
    hidden_layers: int = 3
    # the WGAN part (wgan, vaewgan)
    critic_steps: int = 5
    gradient_penalty_weight: float = 10.0
    constraint_weight: float = 1.0
    critic_features: bool = True
    # the VAE part (vae, vaewgan)
    beta_max: float = 1.0
    kl_anneal_steps: int = 2000
    # vaewgan: the weight of the VAE loss in the generator loss
    reconstruction_weight: float = 0.01


@dataclass
class CrystalTrainer(TrainerSection):
    """Trainer section: the shared settings plus the learning rates.

    Attributes:
        global_batch_size: showers per step; the WGANs split it into ``critic_steps`` critic batches.
        learning_rate: Adam learning rate of the VAE (``vae``) or of the generator (``wgan``, ``vaewgan``).
        critic_learning_rate: Adam learning rate of the critic and the constrainer.
    """

    global_batch_size: int = 320
    learning_rate: float = 1e-4
    critic_learning_rate: float = 1e-4


@dataclass
class CrystalConfig(TaskConfig):
    """The whole run configuration of a crystal generator."""

    data: CrystalData = field(default_factory=CrystalData)
    model: CrystalModelConfig = field(default_factory=CrystalModelConfig)
    trainer: CrystalTrainer = field(default_factory=CrystalTrainer)


_QUICK: dict[str, Any] = {
    "data": {"train_events": 1200, "selection_events": 600},
    "model": {"hidden_units": 32, "hidden_layers": 2, "kl_anneal_steps": 10},
    "trainer": {"epochs": 2, "global_batch_size": 60, "steps_per_epoch": 5, "selection_window": 2},
}


def presets(kind: str) -> dict[str, dict[str, Any]]:
    """The presets of the ``wgan``, ``vae`` or ``vaewgan`` task."""
    paper_presets: dict[str, dict[str, Any]] = {
        "wgan": {
            "trainer": {"epochs": 100, "steps_per_epoch": 200, "learning_rate": 2e-4, "critic_learning_rate": 2e-4}
        },
        "vae": {
            "model": {"kl_anneal_steps": 4000},
            "trainer": {"epochs": 60, "steps_per_epoch": 200, "global_batch_size": 256, "learning_rate": 1e-3},
        },
        "vaewgan": {
            "trainer": {"epochs": 60, "steps_per_epoch": 200, "learning_rate": 1e-4, "critic_learning_rate": 2e-4}
        },
    }
    return {"quick": _QUICK, "paper": paper_presets[kind]}
