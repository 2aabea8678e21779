"""The Triforce baselines: linear and XGBoost energy regression and a BDT classifier on the expert features, after
"Calorimetry with deep learning: particle simulation and reconstruction for collider physics", Belayneh et al.,
arXiv:1912.06794 (appendices C and D). See ``docs/reconstruction.md``.

* :class:`LinearEnergyRegression` - ``E = a * ECAL_E + b * HCAL_E + c`` by least squares (GeV).
* :class:`XGBoostEnergyRegression` - XGBoost regressor of the primary energy (GeV), max depth 3, learning rate 0.3,
  min child weight 1, up to 1000 rounds with early stopping after 10 rounds without improvement **on a validation
  split** (the original stopped on its test set); features per particle type, :func:`regression_feature_names`.
* :class:`BDTClassifier` - XGBoost classifier on every expert feature of the LCD feature files (R9 included,
  :data:`caloml.data.lcd_features.EXPERT_FEATURE_KEYS`), its depth, learning rate and number of trees tuned on a
  validation split (lowest validation log-loss over the points of a grid, :data:`BDT_GRID` by default, each with
  early stopping on that split; every point tried is recorded in ``settings["search"]``). The paper tuned a BDT
  with scikit-optimize; the original code used AdaBoost.

Inputs are batch dicts of NumPy arrays keyed like the LCD files (GeV; what :class:`caloml.data.lcd.LCDReader`
yields). Derived regression features (from the expert-feature moments of the files, in cell units):

* ``ECAL_meanZ`` = ``ECALmomentZ1`` (energy-weighted mean layer index), ``HCAL_meanZ`` = ``HCALmomentZ1``;
* ``ECAL_rmsX`` = sqrt(``ECALmomentX2``), ``HCAL_rmsXY`` = sqrt(``HCALmomentX2`` + ``HCALmomentY2``).

Saving is portable, no pickle: :meth:`save` writes a directory with ``baseline.json`` (kind, feature names,
coefficients or tuned settings, seed) and, for the XGBoost models, ``model.json`` (XGBoost's own JSON format,
``save_model``); :func:`load_baseline` reads any of them back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xgboost

from caloml.atomic_files import atomic_write_json, atomic_write_with
from caloml.data.lcd_features import EXPERT_FEATURE_KEYS
from caloml.data.reconstruction_tasks import raw_energy_fraction
from caloml.errors import CalomlError, OutputExistsError
from caloml.json_values import json_plain
from caloml.particles import CHPI_MIN_RAW_FRACTION

__all__ = [
    "BDT_GRID",
    "BDTClassifier",
    "LinearEnergyRegression",
    "XGBoostEnergyRegression",
    "feature_matrix",
    "feature_source_keys",
    "load_baseline",
    "raw_energy_mask",
    "regression_feature_names",
]

#: Settings tried by :meth:`BDTClassifier.fit` by default (each with up to ``max_rounds`` rounds and early stopping;
#: a point may also set ``n_estimators``, its own maximum number of rounds).
BDT_GRID: tuple[dict[str, float], ...] = tuple(
    {"max_depth": depth, "learning_rate": rate} for depth in (3, 5) for rate in (0.1, 0.3)
)

_EM_FEATURES = ("ECAL_E", "HCAL_E", "ECAL_meanZ")
_CHPI_FEATURES = (*_EM_FEATURES, "ECAL_rmsX", "HCAL_rmsXY", "HCAL_meanZ")
_DERIVED: dict[str, tuple[str, ...]] = {
    "ECAL_meanZ": ("ECALmomentZ1",),
    "HCAL_meanZ": ("HCALmomentZ1",),
    "ECAL_rmsX": ("ECALmomentX2",),
    "HCAL_rmsXY": ("HCALmomentX2", "HCALmomentY2"),
}
_PARTICLES = ("electron", "photon", "pi0", "chpi")


def regression_feature_names(particle: str) -> tuple[str, ...]:
    """The XGBoost regression features of a particle type (appendix D).

    ``electron``, ``photon``, ``pi0``: ECAL and HCAL sums and the ECAL mean depth; ``chpi`` adds the ECAL RMS in
    x, the HCAL RMS in (x, y) and the HCAL mean depth.
    """
    if particle not in _PARTICLES:
        raise CalomlError(f"unknown particle {particle!r}; choose one of {', '.join(_PARTICLES)}")
    return _CHPI_FEATURES if particle == "chpi" else _EM_FEATURES


def feature_source_keys(names: Sequence[str]) -> tuple[str, ...]:
    """The data keys the named features are computed from (file keys, in order, without repeats)."""
    keys: list[str] = []
    for name in names:
        keys += [key for key in _DERIVED.get(name, (name,)) if key not in keys]
    return tuple(keys)


def feature_matrix(batch: Mapping[str, Any], names: Sequence[str]) -> np.ndarray:
    """(N, len(names)) float64 matrix of the named features of a batch (file keys or the derived ones above).

    A missing key raises a one-line :class:`CalomlError` naming it.
    """
    columns = []
    for name in names:
        sources = _DERIVED.get(name, (name,))
        missing = [key for key in sources if key not in batch]
        if missing:
            raise CalomlError(
                f"feature '{name}' needs key '{missing[0]}', which the data lacks (the Triforce feature files and "
                "caloml's simulated lcd-rec files have it; compute it with caloml.data.lcd_features.expert_features)"
            )
        values = [np.asarray(batch[key], dtype=np.float64).reshape(-1) for key in sources]
        if name in ("ECAL_rmsX", "HCAL_rmsXY"):
            columns.append(np.sqrt(np.maximum(sum(values), 0.0)))
        else:
            columns.append(values[0])
    matrix = np.stack(columns, axis=1)
    bad = np.argwhere(~np.isfinite(matrix))
    if bad.size:
        row, column = bad[0]
        raise CalomlError(f"feature '{names[column]}' is not finite ({matrix[row, column]}) at event {row}")
    return matrix


def raw_energy_mask(batch: Mapping[str, Any], min_fraction: float = CHPI_MIN_RAW_FRACTION) -> np.ndarray:
    """Events whose raw sum reaches ``min_fraction`` of the true energy (the paper's charged-pion selection, 30%).

    The raw sum is :func:`caloml.data.reconstruction_tasks.raw_energy_fraction`'s, ``(ECAL_E + HCAL_E) * 50``, the
    files' stored units, in which an electron's sum is about its energy in GeV (sampling fraction 0.02). Returns a
    boolean (N,) mask.
    """
    return np.asarray(raw_energy_fraction(batch) >= min_fraction)


def _check_rows(x: np.ndarray, y: np.ndarray, what: str) -> None:
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise CalomlError(f"{what}: {x.shape[0]} feature rows and {y.shape[0]} targets (need equal, non-zero)")


def _prepare_directory(directory: Path, overwrite: bool) -> None:
    if (directory / "baseline.json").exists() and not overwrite:
        raise OutputExistsError(f"{directory}: holds a saved baseline already; pass overwrite=True to replace it")
    directory.mkdir(parents=True, exist_ok=True)


class LinearEnergyRegression:
    """``E = a * ECAL_E + b * HCAL_E + c`` (GeV), fitted by least squares (appendix D, equation 2)."""

    kind = "linear_energy_regression"

    def __init__(self, coefficients: Sequence[float] | None = None) -> None:
        self.coefficients: tuple[float, float, float] | None = (
            None if coefficients is None else (float(coefficients[0]), float(coefficients[1]), float(coefficients[2]))
        )

    def fit(self, batch: Mapping[str, Any]) -> LinearEnergyRegression:
        """Fit on a batch with ``ECAL_E``, ``HCAL_E`` and ``energy`` (GeV)."""
        x = feature_matrix(batch, ("ECAL_E", "HCAL_E"))
        y = feature_matrix(batch, ("energy",))[:, 0]
        _check_rows(x, y, "linear regression")
        design = np.column_stack([x, np.ones(len(x))])
        solution, *_ = np.linalg.lstsq(design, y, rcond=None)
        self.coefficients = (float(solution[0]), float(solution[1]), float(solution[2]))
        return self

    def predict(self, batch: Mapping[str, Any]) -> np.ndarray:
        """Predicted energies (N,) GeV."""
        if self.coefficients is None:
            raise CalomlError("the linear regression is not fitted yet")
        a, b, c = self.coefficients
        x = feature_matrix(batch, ("ECAL_E", "HCAL_E"))
        return a * x[:, 0] + b * x[:, 1] + c

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "coefficients": list(self.coefficients or ()), "formula": "a*ECAL_E+b*HCAL_E+c"}

    def save(self, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write ``directory/baseline.json`` (atomically); returns the directory."""
        if self.coefficients is None:
            raise CalomlError("the linear regression is not fitted yet")
        path = Path(directory)
        _prepare_directory(path, overwrite)
        atomic_write_json(path / "baseline.json", json_plain(self.to_dict()))
        return path


class _XGBoostBaseline:
    """Shared saving and loading of the XGBoost baselines."""

    kind = ""

    def __init__(self, feature_names: Sequence[str], seed: int = 0, *, threads: int | None = 1) -> None:
        self.feature_names = tuple(feature_names)
        self.seed = int(seed)
        self.threads = threads  # XGBoost's n_jobs (None: every core); not saved, it does not change the model
        self.model: Any = None
        self.settings: dict[str, Any] = {}

    def _require_fitted(self) -> None:
        if self.model is None:
            raise CalomlError(f"the {self.kind} is not fitted yet")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "feature_names": list(self.feature_names),
            "seed": self.seed,
            "settings": self.settings,
            "model_file": "model.json",
        }

    def _save_json(self, target: Path) -> None:
        """Write the XGBoost model to ``target`` in XGBoost's JSON format (chosen by a ``.json`` file name)."""
        named = target.with_name(target.name + ".json")
        try:
            self.model.save_model(str(named))
            os.replace(named, target)
        finally:
            named.unlink(missing_ok=True)

    def save(self, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write ``directory/model.json`` (XGBoost JSON) and ``directory/baseline.json``; returns the directory."""
        self._require_fitted()
        path = Path(directory)
        _prepare_directory(path, overwrite)
        atomic_write_with(path / "model.json", self._save_json)
        atomic_write_json(path / "baseline.json", json_plain(self.to_dict()))
        return path


class XGBoostEnergyRegression(_XGBoostBaseline):
    """XGBoost energy regression (appendix D): depth 3, learning rate 0.3, <= 1000 rounds, early stopping 10.

    ``XGBoostEnergyRegression(regression_feature_names("chpi"), seed=1).fit(train, validation)``; the validation
    batch only decides when to stop (never pass the test set).
    """

    kind = "xgboost_energy_regression"

    def __init__(
        self,
        feature_names: Sequence[str],
        seed: int = 0,
        *,
        max_depth: int = 3,
        learning_rate: float = 0.3,
        min_child_weight: float = 1.0,
        max_rounds: int = 1000,
        early_stopping_rounds: int = 10,
        threads: int | None = 1,
    ) -> None:
        super().__init__(feature_names, seed, threads=threads)
        self.settings = {
            "max_depth": int(max_depth),
            "learning_rate": float(learning_rate),
            "min_child_weight": float(min_child_weight),
            "max_rounds": int(max_rounds),
            "early_stopping_rounds": int(early_stopping_rounds),
        }

    def fit(self, train: Mapping[str, Any], validation: Mapping[str, Any]) -> XGBoostEnergyRegression:
        """Fit on ``train`` (features and ``energy``, GeV), early-stopping on ``validation``."""
        x_train, y_train = feature_matrix(train, self.feature_names), feature_matrix(train, ("energy",))[:, 0]
        x_val, y_val = feature_matrix(validation, self.feature_names), feature_matrix(validation, ("energy",))[:, 0]
        _check_rows(x_train, y_train, "training split")
        _check_rows(x_val, y_val, "validation split")
        s = self.settings
        self.model = xgboost.XGBRegressor(
            n_estimators=s["max_rounds"],
            max_depth=s["max_depth"],
            learning_rate=s["learning_rate"],
            min_child_weight=s["min_child_weight"],
            early_stopping_rounds=s["early_stopping_rounds"],
            random_state=self.seed,
            n_jobs=self.threads,
        )
        self.model.fit(x_train, y_train, eval_set=[(x_val, y_val)], verbose=False)
        self.settings.update(
            best_iteration=int(self.model.best_iteration),
            rounds_trained=int(self.model.get_booster().num_boosted_rounds()),
            validation_rmse_gev=float(self.model.best_score),
        )
        return self

    def predict(self, batch: Mapping[str, Any]) -> np.ndarray:
        """Predicted energies (N,) GeV."""
        self._require_fitted()
        return np.asarray(self.model.predict(feature_matrix(batch, self.feature_names)), dtype=np.float64)


class BDTClassifier(_XGBoostBaseline):
    """Classification BDT on the expert features (appendix C), tuned on a validation split.

    ``labels`` are class indices 0 .. n_classes - 1 (see :mod:`caloml.data.reconstruction_tasks` for the mapping from
    ``pdgID``). :meth:`fit` tries each point of ``grid`` (``max_depth``, ``learning_rate`` and optionally
    ``n_estimators``, else ``max_rounds``) with early stopping on the validation split and keeps the one of lowest
    validation log-loss; the chosen point is in ``settings`` and every point tried in ``settings["search"]``.
    """

    kind = "bdt_classifier"

    def __init__(
        self,
        feature_names: Sequence[str] = EXPERT_FEATURE_KEYS,
        seed: int = 0,
        *,
        grid: Sequence[Mapping[str, float]] = BDT_GRID,
        max_rounds: int = 800,
        early_stopping_rounds: int = 20,
        threads: int | None = 1,
    ) -> None:
        super().__init__(feature_names, seed, threads=threads)
        self.grid = [dict(g) for g in grid]
        if not self.grid:
            raise CalomlError("the BDT search grid is empty")
        self.settings = {"max_rounds": int(max_rounds), "early_stopping_rounds": int(early_stopping_rounds)}

    def fit(
        self, train: Mapping[str, Any], train_labels: Any, validation: Mapping[str, Any], validation_labels: Any
    ) -> BDTClassifier:
        """Fit and tune; ``*_labels`` (N,) ints."""
        x_train, x_val = feature_matrix(train, self.feature_names), feature_matrix(validation, self.feature_names)
        y_train, y_val = np.asarray(train_labels).reshape(-1), np.asarray(validation_labels).reshape(-1)
        _check_rows(x_train, y_train, "training split")
        _check_rows(x_val, y_val, "validation split")
        classes = np.unique(y_train)
        if classes.size < 2 or not np.array_equal(classes, np.arange(classes.size)):
            raise CalomlError(f"the training labels must be 0 .. n_classes - 1 with every class present, got {classes}")
        best: tuple[float, Any, dict[str, Any]] | None = None
        search = []
        for setting in self.grid:
            point = {
                "max_depth": int(setting["max_depth"]),
                "learning_rate": float(setting["learning_rate"]),
                "n_estimators": int(setting.get("n_estimators", self.settings["max_rounds"])),
            }
            model = xgboost.XGBClassifier(
                **point,
                early_stopping_rounds=self.settings["early_stopping_rounds"],
                eval_metric="logloss" if classes.size == 2 else "mlogloss",
                random_state=self.seed,
                n_jobs=self.threads,
            )
            model.fit(x_train, y_train, eval_set=[(x_val, y_val)], verbose=False)
            score = float(model.best_score)
            record = {**point, "best_iteration": int(model.best_iteration), "validation_logloss": score}
            search.append(record)
            if best is None or score < best[0]:
                best = (score, model, record)
        assert best is not None
        self.model = best[1]
        self.settings.update(best[2], n_classes=int(classes.size), search=search)
        return self

    def predict_proba(self, batch: Mapping[str, Any]) -> np.ndarray:
        """Class probabilities (N, n_classes)."""
        self._require_fitted()
        return np.asarray(self.model.predict_proba(feature_matrix(batch, self.feature_names)), dtype=np.float64)


def load_baseline(directory: str | os.PathLike) -> LinearEnergyRegression | XGBoostEnergyRegression | BDTClassifier:
    """Load a baseline saved with ``save`` (CalomlError for a directory that holds none)."""
    path = Path(directory)
    try:
        record = json.loads((path / "baseline.json").read_text())
        kind = record["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CalomlError(f"{path}: no saved baseline there (baseline.json missing or unreadable)") from None
    if kind == LinearEnergyRegression.kind:
        return LinearEnergyRegression(record["coefficients"])
    if kind not in (XGBoostEnergyRegression.kind, BDTClassifier.kind):
        raise CalomlError(f"{path}: unknown baseline kind {kind!r}")
    baseline: XGBoostEnergyRegression | BDTClassifier
    if kind == XGBoostEnergyRegression.kind:
        baseline = XGBoostEnergyRegression(record["feature_names"], record["seed"])
        baseline.model = xgboost.XGBRegressor()
    else:
        baseline = BDTClassifier(record["feature_names"], record["seed"])
        baseline.model = xgboost.XGBClassifier()
    baseline.settings = dict(record["settings"])
    try:
        baseline.model.load_model(str(path / record["model_file"]))
    except (OSError, xgboost.core.XGBoostError):
        raise CalomlError(f"{path}: cannot read the XGBoost model {record['model_file']}") from None
    return baseline
