"""CaloPointFlow run configuration: the data, model and trainer sections, the presets, and the ``--init-from`` checks.

The model follows "CaloPointFlow: Generating Calorimeter Showers as Point Clouds" (Schnake, Krücker, Borras,
arXiv:2211.15380); the ``paper`` preset takes the authors' later settings. See ``docs/pointflow.md``.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from caloml.errors import CalomlError
from caloml.geometry import PointCloudGrid, get_point_cloud_grid
from caloml.sim.layouts import DEGREE
from caloml.sim.particles import PARTICLES
from caloml.training.config import TaskConfig
from caloml.training.task import TrainerSection

__all__ = [
    "ARCHITECTURE_KEYS",
    "NORMALIZATION_FILE",
    "PRESETS",
    "InitSource",
    "PointFlowConfig",
    "PointFlowData",
    "PointFlowModelSection",
    "PointFlowTrainer",
    "check_config",
    "check_init_settings",
    "check_model_section",
    "energy_range",
    "hit_threshold",
    "read_init_source",
]

#: The normalization statistics written into the run directory.
NORMALIZATION_FILE = "normalization.json"


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
        max_points: upper bound of the padded point-cloud size (see ``docs/pointflow.md``).
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
class PointFlowConfig(TaskConfig):
    """The whole CaloPointFlow run configuration."""

    data: PointFlowData = field(default_factory=PointFlowData)
    model: PointFlowModelSection = field(default_factory=PointFlowModelSection)
    trainer: PointFlowTrainer = field(default_factory=PointFlowTrainer)


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
    # the authors' later version of arXiv:2211.15380: latent 128, 10 coupling layers of 8 bins, bound 5, batch
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


def energy_range(config: PointFlowConfig) -> tuple[float, float]:
    """The default data's incident-energy range (GeV): ``data.energy_range_gev``, or the geometry's for ``[0, 0]``."""
    low, high = (float(v) for v in config.data.energy_range_gev)
    if low == 0.0 and high == 0.0:
        return get_point_cloud_grid(config.data.geometry).energy_range_gev
    return low, high


def hit_threshold(config: PointFlowConfig) -> float:
    """The hit threshold (GeV): ``data.hit_threshold_gev``, or the geometry's readout threshold when negative."""
    value = float(config.data.hit_threshold_gev)
    return get_point_cloud_grid(config.data.geometry).hit_threshold_gev if value < 0 else value


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
    if grid != get_point_cloud_grid(config.data.geometry).grid_shape:
        raise CalomlError(f"--init-from {source.path}: a model of the grid {grid}, this run is {config.data.geometry}")


def check_config(config: PointFlowConfig, *, resuming: bool) -> PointCloudGrid:
    """The run's point-cloud grid, after a one-line :class:`CalomlError` for any unusable setting (before any data
    work). ``resuming``: the run directory holds a started run, which no longer reads its ``--init-from`` source."""
    grid = get_point_cloud_grid(config.data.geometry)
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
    if config.trainer.init_from and not resuming:
        check_init_settings(config, read_init_source(config.trainer.init_from))
    return grid
