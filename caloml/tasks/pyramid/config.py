"""The Calorimeter Pyramid's run configuration and presets (``python -m caloml.train pyramid``).

Sections ``data``, ``model``, ``trainer``, ``runtime`` (see :mod:`caloml.training.config` for how they are
resolved); :func:`check_config` refuses unusable values with one line before any data work. See
``docs/pyramid.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from caloml.errors import CalomlError
from caloml.geometry import CALOCHALLENGE_2
from caloml.models.pyramid import STAGES
from caloml.sim.particles import PARTICLES
from caloml.training.config import TaskConfig
from caloml.training.task import TrainerSection

__all__ = ["GEOMETRY", "PRESETS", "STAGE_CHOICES", "PyramidConfig", "check_config", "energy_range", "hit_threshold"]

#: The one geometry of the Pyramid's clustering (45 layers x 16 angular x 9 radial cells).
GEOMETRY = "calochallenge-2"
#: Values of ``trainer.stage``: every stage jointly, or one of them.
STAGE_CHOICES = ("all", *STAGES)


@dataclass
class PyramidData:
    """Data section.

    Attributes:
        geometry: ``calochallenge-2`` (CaloChallenge dataset 2, the simulator's or the real files).
        records: training data: a TFRecord directory or HDF5 files (empty: the simulated default).
        validation_records: validation data of the same kinds (required with ``records``).
        particle: particle of the default data.
        energy_range_gev: incident energies of the default data and its trained range, GeV (``[0, 0]``: 1-1000).
        train_events, validation_events: sizes of the default data.
        simulation_seed: seed of the default data (training ``2 s``, validation ``2 s + 1``).
        hit_threshold_gev: cells from this energy on are hits (negative: the readout threshold, 15.15 keV).
        statistics_showers: training showers of the statistics pass (count CDFs, normalizations).
        max_validation_showers: validation showers of the selection metric (the first ones).
        shuffle_buffer: showers in the shuffle buffer.
    """

    geometry: str = GEOMETRY
    records: list[str] = field(default_factory=list)
    validation_records: list[str] = field(default_factory=list)
    particle: str = "electron"
    energy_range_gev: tuple[float, float] = (0.0, 0.0)
    train_events: int = 10000
    validation_events: int = 1000
    simulation_seed: int = 1
    hit_threshold_gev: float = -1.0
    statistics_showers: int = 5000
    max_validation_showers: int = 500
    shuffle_buffer: int = 1024


@dataclass
class PyramidModelSection:
    """Model section (see :class:`caloml.models.pyramid.CalorimeterPyramid`)."""

    n_flow_layers: int = 6
    n_bins: int = 8
    spline_bound: float = 5.0
    hidden_units: int = 128
    conditioner_blocks: int = 2
    embedding_units: int = 8
    summary_units: int = 32
    n_energy_layers: int = 3


@dataclass
class PyramidTrainer(TrainerSection):
    """Trainer section: the shared settings, the Adam learning rate and the trained stage (``all``: jointly)."""

    epochs: int = 20
    global_batch_size: int = 64
    learning_rate: float = 1e-3
    stage: str = "all"


@dataclass
class PyramidConfig(TaskConfig):
    """The whole Pyramid run configuration."""

    data: PyramidData = field(default_factory=PyramidData)
    model: PyramidModelSection = field(default_factory=PyramidModelSection)
    trainer: PyramidTrainer = field(default_factory=PyramidTrainer)


PRESETS: dict[str, dict[str, Any]] = {
    # a few CPU minutes (most of it tracing the flows): shows the whole chain, not a useful generator
    "quick": {
        "data": {
            "train_events": 256,
            "validation_events": 64,
            "statistics_showers": 256,
            "max_validation_showers": 64,
            "shuffle_buffer": 256,
        },
        "model": {
            "n_flow_layers": 2,
            "hidden_units": 32,
            "conditioner_blocks": 1,
            "embedding_units": 4,
            "summary_units": 8,
            "n_energy_layers": 2,
        },
        "trainer": {"epochs": 2, "global_batch_size": 16, "steps_per_epoch": 4, "selection_window": 2},
    },
    # the poster's stages at CaloPointFlow's later sizes: 8 spline layers of 8 bins, width 256, batch 256, 100k
    "paper": {
        "data": {"train_events": 100000, "validation_events": 10000, "statistics_showers": 10000},
        "model": {"n_flow_layers": 8, "hidden_units": 256, "summary_units": 64, "n_energy_layers": 4},
        "trainer": {"epochs": 100, "global_batch_size": 256, "learning_rate": 1e-3},
    },
}


def energy_range(config: PyramidConfig) -> tuple[float, float]:
    """The default data's incident-energy range (GeV): ``data.energy_range_gev``, or 1-1000 GeV for ``[0, 0]``."""
    low, high = (float(v) for v in config.data.energy_range_gev)
    return (1.0, 1000.0) if low == 0.0 and high == 0.0 else (low, high)


def hit_threshold(config: PyramidConfig) -> float:
    """The hit threshold (GeV): ``data.hit_threshold_gev``, or the CaloChallenge readout threshold when negative."""
    value = float(config.data.hit_threshold_gev)
    return float(CALOCHALLENGE_2.threshold_gev) if value < 0 else value


def check_config(config: PyramidConfig) -> None:
    """Raise a one-line :class:`CalomlError` for any unusable setting."""
    data, model = config.data, config.model
    if data.geometry != GEOMETRY:
        raise CalomlError(f"the Pyramid clusters {GEOMETRY} cells only (45 x 16 x 9), not {data.geometry!r}")
    if data.particle not in PARTICLES:
        raise CalomlError(f"unknown particle {data.particle!r}; choose one of {', '.join(PARTICLES)}")
    if data.records and not data.validation_records:
        raise CalomlError("--data needs --validation-data too: model selection uses a validation split")
    if data.validation_records and not data.records:
        raise CalomlError("--validation-data needs --data (the default data has its own validation set)")
    low, high = energy_range(config)
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        raise CalomlError(f"data.energy_range_gev must be 0 < low < high GeV, got {low:g} {high:g}")
    threshold = float(data.hit_threshold_gev)
    if not math.isfinite(threshold):
        raise CalomlError(f"data.hit_threshold_gev must be finite, got {threshold}")
    for name in ("train_events", "validation_events", "statistics_showers", "max_validation_showers"):
        if getattr(data, name) < 1:
            raise CalomlError(f"data.{name} must be positive, got {getattr(data, name)}")
    for name in ("n_flow_layers", "n_bins", "hidden_units", "embedding_units", "summary_units", "n_energy_layers"):
        value = getattr(model, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "n_bins" else 1):
            raise CalomlError(f"model.{name} must be a positive integer (n_bins at least 2), got {value!r}")
    if model.conditioner_blocks < 0:
        raise CalomlError(f"model.conditioner_blocks must be >= 0, got {model.conditioner_blocks}")
    if not (math.isfinite(model.spline_bound) and model.spline_bound > 0):
        raise CalomlError(f"model.spline_bound must be a positive number, got {model.spline_bound}")
    if config.trainer.stage not in STAGE_CHOICES:
        raise CalomlError(f"trainer.stage must be one of {', '.join(STAGE_CHOICES)}, got {config.trainer.stage!r}")
    if not (math.isfinite(config.trainer.learning_rate) and config.trainer.learning_rate > 0):
        raise CalomlError(f"trainer.learning_rate must be positive, got {config.trainer.learning_rate}")
