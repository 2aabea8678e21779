"""Configuration of the Triforce reconstruction task: the data, model and trainer sections and their presets.

``python -m caloml.train triforce --arch {dnn,cnn,googlenet} --task {e-vs-pi,gamma-vs-pi0} --preset quick`` reads
:class:`TriforceConfig`; learning rates and dropouts left at None take the best values of "Calorimetry with deep
learning: particle simulation and reconstruction for collider physics", Belayneh et al., arXiv:1912.06794. See
``docs/reconstruction.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from caloml.data.reconstruction_split import PAPER_SPLIT_DATA, ReconstructionData, check_split_fractions
from caloml.data.reconstruction_tasks import ReconstructionTask, get_task
from caloml.data.resampling import check_resample
from caloml.errors import CalomlError
from caloml.training.config import TaskConfig
from caloml.training.task import TrainerSection

__all__ = [
    "ARCHS",
    "PAPER_DROPOUT",
    "PAPER_LEARNING_RATE",
    "PAPER_MICRO_BATCH_SIZE",
    "PRESETS",
    "TriforceConfig",
    "TriforceData",
    "TriforceModelSection",
    "TriforceTrainer",
    "check_config",
    "dropout_of",
    "learning_rate_of",
    "micro_batch_size_of",
]

#: The three networks.
ARCHS: tuple[str, ...] = ("dnn", "cnn", "googlenet")
#: The paper's best learning rates.
PAPER_LEARNING_RATE: dict[str, float] = {"dnn": 2e-4, "cnn": 4e-4, "googlenet": 1e-4}
#: The paper's best dropout probabilities (GoogLeNet has no dropout layer).
PAPER_DROPOUT: dict[str, float] = {"dnn": 0.04, "cnn": 0.12, "googlenet": 0.0}
#: The paper's micro-batches (gradient accumulation): GoogLeNet 10 events; None: off.
PAPER_MICRO_BATCH_SIZE: dict[str, int | None] = {"dnn": None, "cnn": None, "googlenet": 10}


@dataclass
class TriforceData(ReconstructionData):
    """Data section: the reconstruction runs' shared one
    (:class:`~caloml.data.reconstruction_split.ReconstructionData`) and the training pipeline's shuffle buffer.

    Attributes:
        shuffle_buffer: events in each source's shuffle buffer.
    """

    shuffle_buffer: int = 1024


@dataclass
class TriforceModelSection:
    """Model section (see :mod:`caloml.models.triforce_nets`); None means the arch's paper default.

    Attributes:
        arch: ``dnn``, ``cnn`` or ``googlenet``.
        task: ``e-vs-pi`` or ``gamma-vs-pi0``.
        n_hidden_layers, hidden_units: the dense stack of the DNN and CNN.
        dropout: dropout of the DNN and CNN dense stack (None: 0.04 DNN, 0.12 CNN).
        learning_rate: Adam learning rate (None: 2e-4 DNN, 4e-4 CNN, 1e-4 GoogLeNet).
        ecal_filters, ecal_kernel: the CNN's ECAL convolution (filters, cubic kernel edge).
        hcal_filters: the CNN's HCAL convolution filters (kernel 2 x 2 x 6).
        dense_units, width_multiplier: GoogLeNet's dense layer and convolution widths (x the paper's).
        energy_loss_weight: weight of the energy MSE in the loss (the paper's 200).
        micro_batch_size: gradient accumulation in micro-batches of this many events per replica (None: the arch
            default, 10 for GoogLeNet and off for the others; 0: off).
    """

    arch: str = "dnn"
    task: str = "gamma-vs-pi0"
    n_hidden_layers: int = 4
    hidden_units: int = 512
    dropout: float | None = None
    learning_rate: float | None = None
    ecal_filters: int = 6
    ecal_kernel: int = 6
    hcal_filters: int = 3
    dense_units: int = 1024
    width_multiplier: float = 1.0
    energy_loss_weight: float = 200.0
    micro_batch_size: int | None = None


@dataclass
class TriforceTrainer(TrainerSection):
    """Trainer section: the shared settings (the paper: batches of 1000 events)."""

    epochs: int = 3
    global_batch_size: int = 100
    selection_window: int = 3
    keep_checkpoints: int = 3


@dataclass
class TriforceConfig(TaskConfig):
    """The whole Triforce run configuration."""

    data: TriforceData = field(default_factory=TriforceData)
    model: TriforceModelSection = field(default_factory=TriforceModelSection)
    trainer: TriforceTrainer = field(default_factory=TriforceTrainer)


_SMALL_NETS = {
    "n_hidden_layers": 1,
    "hidden_units": 32,
    "ecal_filters": 2,
    "ecal_kernel": 3,
    "hcal_filters": 2,
    "dense_units": 32,
    "width_multiplier": 0.05,
}

PRESETS: dict[str, dict[str, Any]] = {
    # a 2-core CPU in well under a minute of training: the whole chain, not a converged network (small nets, a
    # learning rate above the paper's so that a few steps show learning, no micro-batches: GoogLeNet's accumulation
    # loop takes minutes to trace on a CPU)
    "quick": {
        "data": {"events_per_particle": 150, "shuffle_buffer": 256},
        "model": {**_SMALL_NETS, "learning_rate": 1e-3, "micro_batch_size": 0},
        "trainer": {"epochs": 3, "global_batch_size": 30, "selection_window": 3, "keep_checkpoints": 3},
    },
    # the paper's DNN and CNN: 400,000 training and 400,000 test events (both classes), batches of 1000,
    # 3 epochs per scan point (the paper's networks at their best hyperparameters: the model defaults).
    # Cost of the default data: gamma-vs-pi0 simulates 500,000 photons + 500,000 pi0 (about 1 core-hour at 300
    # showers/s). e-vs-pi would simulate 500,000 electrons + 500,000 x 20 = 10,000,000 charged pions (about
    # 10 core-hours and some 3 TB of cells before compression; only 0.4-0.7% of the simulator's charged pions pass
    # HCAL/ECAL < 0.1, so about 50,000 pions would remain): above data.max_simulated_showers (2,000,000), so it is
    # refused unless --events, --data or a larger data.max_simulated_showers is given. The filtered simulation
    # (caloml.sim.run.simulate_filtered_events) bins only the candidate pions but still draws every pion's shower:
    # about 1.9 CPU-ms per pion, some 5 core-hours for the 10,000,000 (docs/benchmarks.md): still refused.
    "paper": {
        "data": {"events_per_particle": 500000, **PAPER_SPLIT_DATA, "shuffle_buffer": 4096},
        "trainer": {"epochs": 3, "global_batch_size": 1000},
    },
    # GoogLeNet: 100,000 training and 100,000 test events, one epoch, batches of 1000 in micro-batches of 10
    # (e-vs-pi: 125,000 x 20 = 2,500,000 charged pions, refused like "paper")
    "paper-googlenet": {
        "data": {"events_per_particle": 125000, **PAPER_SPLIT_DATA, "shuffle_buffer": 4096},
        "model": {"arch": "googlenet", "micro_batch_size": 10},
        "trainer": {"epochs": 1, "global_batch_size": 1000, "selection_window": 1},
    },
}


def learning_rate_of(model: TriforceModelSection) -> float:
    """The configured learning rate, or the arch's paper value."""
    return PAPER_LEARNING_RATE[model.arch] if model.learning_rate is None else float(model.learning_rate)


def dropout_of(model: TriforceModelSection) -> float:
    """The configured dropout, or the arch's paper value."""
    return PAPER_DROPOUT[model.arch] if model.dropout is None else float(model.dropout)


def micro_batch_size_of(model: TriforceModelSection) -> int | None:
    """The configured micro-batch size (None: off), or the arch's paper value."""
    if model.micro_batch_size is None:
        return PAPER_MICRO_BATCH_SIZE[model.arch]
    return int(model.micro_batch_size) or None


def check_config(config: TriforceConfig) -> ReconstructionTask:
    """Check the values the dataclass types do not; returns the reconstruction task."""
    m, d = config.model, config.data
    if m.arch not in ARCHS:
        raise CalomlError(f"model.arch must be one of {', '.join(ARCHS)}, got {m.arch!r}")
    task = get_task(m.task)
    positive = {
        "model.n_hidden_layers": m.n_hidden_layers,
        "model.hidden_units": m.hidden_units,
        "model.ecal_filters": m.ecal_filters,
        "model.hcal_filters": m.hcal_filters,
        "model.dense_units": m.dense_units,
        "data.events_per_particle": d.events_per_particle,
        "data.shuffle_buffer": d.shuffle_buffer,
    }
    for name, value in positive.items():
        if value < 1:
            raise CalomlError(f"configuration '{name}' must be at least 1, got {value}")
    if not 1 <= m.ecal_kernel <= 24:
        raise CalomlError(f"configuration 'model.ecal_kernel' must be in [1, 24], got {m.ecal_kernel}")
    if not m.width_multiplier > 0:
        raise CalomlError(f"configuration 'model.width_multiplier' must be positive, got {m.width_multiplier}")
    if m.dropout is not None and not 0.0 <= m.dropout < 1.0:
        raise CalomlError(f"configuration 'model.dropout' must be in [0, 1), got {m.dropout}")
    if m.learning_rate is not None and not m.learning_rate > 0:
        raise CalomlError(f"configuration 'model.learning_rate' must be positive, got {m.learning_rate}")
    if not (math.isfinite(m.energy_loss_weight) and m.energy_loss_weight >= 0):
        raise CalomlError(f"configuration 'model.energy_loss_weight' must be >= 0, got {m.energy_loss_weight}")
    if m.micro_batch_size is not None and m.micro_batch_size < 0:
        raise CalomlError(f"configuration 'model.micro_batch_size' must be >= 0 or null, got {m.micro_batch_size}")
    check_resample(d.resample)
    check_split_fractions(d.split_fractions)
    low, high = d.energy_range_gev
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise CalomlError(f"configuration 'data.energy_range_gev' must be 0 < low <= high, got {low:g} {high:g}")
    for particle, factor in d.simulation_factor.items():
        if not factor > 0:
            raise CalomlError(f"configuration 'data.simulation_factor.{particle}' must be positive, got {factor}")
    return task
