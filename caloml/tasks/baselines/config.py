"""Configuration of the baseline tasks ``bdt``, ``linreg`` and ``xgb``: their sections and presets.

The data section is the reconstruction runs' shared one (:class:`~caloml.data.reconstruction_split.ReconstructionData`),
so that the same settings give the networks' files and test events. See ``docs/reconstruction.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from caloml.data.reconstruction_split import PAPER_SPLIT_DATA, ReconstructionData
from caloml.particles import CHPI_MIN_RAW_FRACTION

__all__ = [
    "BDT_PRESETS",
    "REGRESSION_PRESETS",
    "BDTConfig",
    "BDTModel",
    "BDTTrainer",
    "BaselineData",
    "BaselineRuntime",
    "ClassificationData",
    "LinRegConfig",
    "RegressionData",
    "XGBConfig",
    "XGBModel",
    "XGBTrainer",
]

#: The baselines' data section: the reconstruction runs' shared one.
BaselineData = ReconstructionData


@dataclass
class ClassificationData(BaselineData):
    """Data section of the BDT: ``task`` is ``e-vs-pi`` or ``gamma-vs-pi0``."""

    task: str = "e-vs-pi"


@dataclass
class RegressionData(BaselineData):
    """Data section of the energy regressions.

    Attributes:
        particle: ``electron``, ``photon``, ``pi0`` or ``chpi`` (one model per particle type).
        chpi_min_raw_fraction: charged pions whose raw sum is below this fraction of the true energy are removed.
    """

    particle: str = "electron"
    chpi_min_raw_fraction: float = CHPI_MIN_RAW_FRACTION


@dataclass
class BaselineRuntime:
    """Runtime section of the baselines.

    Attributes:
        run_dir: the run directory (default ``runs/<model>-<task or particle>``).
        seed: seed of the model fits and of the BDT's search.
        progress: progress bars while simulating the default data.
        threads: XGBoost threads (0: every core); the fitted model does not depend on it.
    """

    run_dir: str = ""
    seed: int = 1
    progress: bool = True
    threads: int = 0


@dataclass
class BDTModel:
    """The BDT's search space (see :class:`caloml.models.baselines.BDTClassifier`).

    Attributes:
        features: input features (empty: every expert feature, R9 included).
        max_depth, learning_rate, n_estimators: the grid; ``n_estimators`` is the maximum number of trees, early
            stopping picks the number used.
    """

    features: list[str] = field(default_factory=list)
    max_depth: list[int] = field(default_factory=lambda: [3, 5, 7])
    learning_rate: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.3])
    n_estimators: list[int] = field(default_factory=lambda: [300, 1000])


@dataclass
class BDTTrainer:
    """The BDT's search: ``search_points`` grid points drawn with ``runtime.seed``, early stopping on validation."""

    search_points: int = 6
    early_stopping_rounds: int = 20


@dataclass
class BDTConfig:
    """The BDT run configuration."""

    data: ClassificationData = field(default_factory=ClassificationData)
    model: BDTModel = field(default_factory=BDTModel)
    trainer: BDTTrainer = field(default_factory=BDTTrainer)
    runtime: BaselineRuntime = field(default_factory=BaselineRuntime)


@dataclass
class LinRegModel:
    """The linear regression has no settings: ``E = a ECAL_E + b HCAL_E + c``."""


@dataclass
class LinRegTrainer:
    """Least squares has no training settings."""


@dataclass
class LinRegConfig:
    """The linear-regression run configuration."""

    data: RegressionData = field(default_factory=RegressionData)
    model: LinRegModel = field(default_factory=LinRegModel)
    trainer: LinRegTrainer = field(default_factory=LinRegTrainer)
    runtime: BaselineRuntime = field(default_factory=BaselineRuntime)


@dataclass
class XGBModel:
    """XGBoost regression settings (the paper's appendix D).

    Attributes:
        features: input features (empty: the paper's set of the particle type).
        max_depth, learning_rate, min_child_weight: the trees.
    """

    features: list[str] = field(default_factory=list)
    max_depth: int = 3
    learning_rate: float = 0.3
    min_child_weight: float = 1.0


@dataclass
class XGBTrainer:
    """Boosting rounds: up to ``max_rounds``, stopped after ``early_stopping_rounds`` without validation gain."""

    max_rounds: int = 1000
    early_stopping_rounds: int = 10


@dataclass
class XGBConfig:
    """The XGBoost regression run configuration."""

    data: RegressionData = field(default_factory=RegressionData)
    model: XGBModel = field(default_factory=XGBModel)
    trainer: XGBTrainer = field(default_factory=XGBTrainer)
    runtime: BaselineRuntime = field(default_factory=BaselineRuntime)


#: The Triforce network task's quick data (150 showers per particle type, 3,000 charged pions of which about 20
#: pass the e-vs-pi cut): the same cached files and test events; seconds once simulated.
_QUICK_DATA: dict[str, Any] = {"events_per_particle": 150}
#: The Triforce network task's paper data (400,000 training and 400,000 test events). Its cost
#: (see caloml.tasks.triforce.config.PRESETS): e-vs-pi and chpi would simulate 500,000 x 20 = 10,000,000 charged pions,
#: above data.max_simulated_showers, and are refused unless --events, --data or a larger bound is given.
_PAPER_DATA: dict[str, Any] = {"events_per_particle": 500000, **PAPER_SPLIT_DATA}

BDT_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"data": _QUICK_DATA, "model": {"n_estimators": [100, 300]}, "trainer": {"search_points": 3}},
    "paper": {"data": _PAPER_DATA, "trainer": {"search_points": 12}},
}
REGRESSION_PRESETS: dict[str, dict[str, Any]] = {"quick": {"data": _QUICK_DATA}, "paper": {"data": _PAPER_DATA}}
