"""Metrics of the reconstruction models, shared by their training tasks and their evaluation (NumPy, SciPy, sklearn).

ROC and AUC of a classifier, accuracy in bins, relative energy bias and resolution in bins of the true energy, and the
fit of the calorimeter resolution function ``sigma / E = sqrt(a^2 / E + b^2 + (c / E)^2)`` (E in GeV), as in
"Calorimetry with deep learning: particle simulation and reconstruction for collider physics", Belayneh et al.,
arXiv:1912.06794. Definitions and units: ``docs/reconstruction.md``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "LCD_ECAL_REFERENCE",
    "binned_accuracy",
    "binned_response",
    "classification_metrics",
    "energy_edges",
    "fit_resolution",
    "probability_metrics",
    "regression_edges",
    "regression_metrics",
    "resolution_function",
]

#: The LCD ECAL design resolution: a (GeV^0.5), b, c (GeV).
LCD_ECAL_REFERENCE: dict[str, float] = {"a": 0.156, "b": 0.01, "c": 0.0}
#: Points of the stored ROC curve (true-positive rate at these false-positive rates).
ROC_POINTS = 201


def energy_edges(width_gev: float = 25.0, low_gev: float = 10.0, high_gev: float = 510.0) -> np.ndarray:
    """Bin edges (GeV) from ``low_gev`` to ``high_gev`` in steps of ``width_gev`` (the last bin may be shorter)."""
    if not (width_gev > 0 and high_gev > low_gev):
        raise ValueError(f"need a positive width and a non-empty range, got {width_gev}, [{low_gev}, {high_gev}]")
    n = math.ceil((high_gev - low_gev) / width_gev - 1e-9)
    edges = low_gev + width_gev * np.arange(n + 1, dtype=np.float64)
    edges[-1] = high_gev
    return edges


def classification_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """ROC, AUC and accuracy of scores (probability of class 1, (N,)) for labels (N,) in {0, 1}.

    Returns ``auc``, ``accuracy`` (score >= 0.5 means class 1), ``accuracy_error`` (binomial), ``n_events``,
    ``roc`` (``fpr`` and ``tpr`` interpolated at :data:`ROC_POINTS` false-positive rates) and the full curve
    under ``roc_full`` (``fpr``, ``tpr``; for the plot, not meant for the JSON).
    """

    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.shape[0]} labels and {scores.shape[0]} scores")
    n = labels.size
    accuracy = float(np.mean((scores >= 0.5) == (labels == 1))) if n else math.nan
    fpr, tpr, _ = roc_curve(labels, scores)
    grid = np.linspace(0.0, 1.0, ROC_POINTS)
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "accuracy": accuracy,
        "accuracy_error": math.sqrt(accuracy * (1.0 - accuracy) / n) if n else math.nan,
        "n_events": int(n),
        "n_per_class": [int(np.sum(labels == 0)), int(np.sum(labels == 1))],
        "roc": {"fpr": grid, "tpr": np.interp(grid, fpr, tpr)},
        "roc_full": {"fpr": fpr, "tpr": tpr},
    }


def binned_accuracy(values: np.ndarray, correct: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    """Accuracy of the events in each bin of ``values`` (``correct``: (N,) bool); NaN where a bin is empty.

    Events outside the edges are not counted. Returns ``edges``, ``counts``, ``accuracy``, ``accuracy_error``.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    index = np.digitize(values, edges) - 1
    index[values == edges[-1]] = len(edges) - 2  # the last edge belongs to the last bin
    n_bins = len(edges) - 1
    inside = (index >= 0) & (index < n_bins)
    counts = np.bincount(index[inside], minlength=n_bins).astype(np.int64)
    hits = np.bincount(index[inside], weights=correct[inside].astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
        error = np.where(counts > 0, np.sqrt(accuracy * (1 - accuracy) / np.maximum(counts, 1)), np.nan)
    edges = np.asarray(edges, dtype=np.float64)
    return {"edges": edges, "counts": counts, "accuracy": accuracy, "accuracy_error": error}


def binned_response(
    true_gev: np.ndarray, predicted_gev: np.ndarray, edges: np.ndarray, *, min_events: int = 2
) -> dict[str, Any]:
    """Relative bias and resolution of ``(true - predicted) / true`` in bins of the true energy (see the module).

    Args:
        true_gev, predicted_gev: (N,) energies, GeV.
        edges: bin edges of the true energy, GeV.
        min_events: bins with fewer events get NaN (at least 2, for the standard deviation).

    Returns arrays per bin: ``edges``, ``counts``, ``mean_energy_gev`` (mean true energy), ``bias``,
    ``bias_error``, ``resolution``, ``resolution_error``, ``resolution_iqr68``.
    """
    true_gev = np.asarray(true_gev, dtype=np.float64).reshape(-1)
    predicted_gev = np.asarray(predicted_gev, dtype=np.float64).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):  # true energies of 0 lie outside any bin
        relative = (true_gev - predicted_gev) / true_gev
    n_bins = len(edges) - 1
    index = np.digitize(true_gev, edges) - 1
    index[true_gev == edges[-1]] = n_bins - 1
    out = {name: np.full(n_bins, np.nan) for name in _RESPONSE_ARRAYS}
    counts = np.zeros(n_bins, dtype=np.int64)
    for b in range(n_bins):
        selected = relative[index == b]
        counts[b] = selected.size
        if selected.size < max(2, min_events):
            continue
        std = float(np.std(selected, ddof=1))
        q16, q84 = np.percentile(selected, [15.865525393145708, 84.13447460685429])
        out["mean_energy_gev"][b] = float(np.mean(true_gev[index == b]))
        out["bias"][b] = float(np.mean(selected))
        out["bias_error"][b] = std / math.sqrt(selected.size)
        out["resolution"][b] = std
        out["resolution_error"][b] = std / math.sqrt(2.0 * (selected.size - 1))
        out["resolution_iqr68"][b] = 0.5 * float(q84 - q16)
    return {"edges": np.asarray(edges, dtype=np.float64), "counts": counts, **out}


_RESPONSE_ARRAYS = (
    "mean_energy_gev",
    "bias",
    "bias_error",
    "resolution",
    "resolution_error",
    "resolution_iqr68",
)


def resolution_function(energy_gev: Any, a: float, b: float, c: float) -> Any:
    """``sqrt(a^2 / E + b^2 + (c / E)^2)``: relative resolution at ``energy_gev`` (GeV)."""
    e = np.asarray(energy_gev, dtype=np.float64)
    return np.sqrt(a * a / e + b * b + (c / e) ** 2)


def fit_resolution(
    energy_gev: Sequence[float] | np.ndarray,
    resolution: Sequence[float] | np.ndarray,
    resolution_error: Sequence[float] | np.ndarray,
) -> dict[str, Any]:
    """Fit :func:`resolution_function` (a, b, c >= 0) to binned resolutions at ``energy_gev`` (GeV).

    Points that are NaN or have a non-positive error are left out. Returns ``available``; when true, ``a``,
    ``b``, ``c`` and ``a_error``, ``b_error``, ``c_error`` (standard errors from the covariance with the given
    errors taken as absolute, linearized: not meaningful for a parameter near 0, where the curve depends on its
    square; None where undetermined, as for a parameter at its bound 0, listed in ``at_lower_bound``),
    ``compatible_with_zero`` (the parameters below their error or at the bound), ``chi2``, ``ndof``,
    ``n_points``; otherwise ``reason``.
    """
    e = np.asarray(energy_gev, dtype=np.float64).reshape(-1)
    r = np.asarray(resolution, dtype=np.float64).reshape(-1)
    s = np.asarray(resolution_error, dtype=np.float64).reshape(-1)
    ok = np.isfinite(e) & np.isfinite(r) & np.isfinite(s) & (s > 0) & (e > 0)
    e, r, s = e[ok], r[ok], s[ok]
    if e.size < 3:
        return {"available": False, "reason": f"{e.size} usable energy bins, the fit needs at least 3"}
    order = np.argsort(e)
    b0 = float(max(np.min(r), 1e-4))
    a0 = float(max(math.sqrt(max(r[order[0]] ** 2 - b0**2, 1e-8) * e[order[0]]), 1e-3))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # an undetermined covariance gives errors of None
            params, covariance = curve_fit(
                resolution_function,
                e,
                r,
                p0=(a0, b0, 0.1),
                sigma=s,
                absolute_sigma=True,
                bounds=([0.0, 0.0, 0.0], [np.inf, np.inf, np.inf]),
                maxfev=20000,
            )
    except (RuntimeError, ValueError) as error:
        return {"available": False, "reason": f"the fit did not converge ({str(error).splitlines()[0]})"}
    errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    chi2 = float(np.sum(((resolution_function(e, *params) - r) / s) ** 2))
    result: dict[str, Any] = {"available": True}
    at_bound = []
    compatible_with_zero = []
    for name, value, std in zip(("a", "b", "c"), params, errors, strict=True):
        result[name] = float(value)
        # a parameter at its bound 0 has a zero derivative there (it enters squared): no error estimate
        if value <= 1e-6 * max(1.0, float(np.max(params))):
            at_bound.append(name)
            result[f"{name}_error"] = None
        else:
            result[f"{name}_error"] = float(std) if np.isfinite(std) else None
        if name in at_bound or (np.isfinite(std) and value < std):
            compatible_with_zero.append(name)
    result.update(
        chi2=chi2,
        ndof=int(e.size - 3),
        n_points=int(e.size),
        at_lower_bound=at_bound,
        compatible_with_zero=compatible_with_zero,
    )
    return result


#: Width of the true-energy bins of :func:`regression_metrics` (GeV).
ENERGY_BIN_GEV = 25.0


def probability_metrics(labels: np.ndarray, probability: np.ndarray) -> dict[str, Any]:
    """AUC of P(class 1), accuracy of the most probable class and events per class.

    ``labels`` (N,) class indices, ``probability`` (N, n_classes) class probabilities.
    """
    return {
        "auc": float(roc_auc_score(labels, probability[:, 1])),
        "accuracy": float(np.mean(probability.argmax(axis=1) == labels)),
        "events_per_class": [int(np.sum(labels == c)) for c in range(probability.shape[1])],
    }


def regression_edges(true_gev: np.ndarray, bin_gev: float = ENERGY_BIN_GEV) -> np.ndarray:
    """Bins of the true energy (GeV): :func:`energy_edges` ``bin_gev`` wide from 10 to 510 GeV, extended by whole
    bins below and above to hold every event of ``true_gev``."""
    low, high = 10.0, 510.0
    if true_gev.size:
        if float(true_gev.min()) < low:
            low -= bin_gev * math.ceil((low - float(true_gev.min())) / bin_gev)
        if float(true_gev.max()) > high:
            high += bin_gev * math.ceil((float(true_gev.max()) - high) / bin_gev)
    return energy_edges(bin_gev, low, high)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def regression_metrics(
    true_gev: np.ndarray, predicted_gev: np.ndarray, bin_gev: float = ENERGY_BIN_GEV
) -> dict[str, Any]:
    """Relative bias and resolution of ``(E_true - E_pred) / E_true``, overall and in ``bin_gev`` bins of E_true.

    The definitions of :func:`binned_response`: the bias is the mean, the resolution the standard deviation
    (``ddof=1``); the bins are :func:`regression_edges`. ``bins`` lists the non-empty bins (``energy_gev`` [low,
    high), ``n``, ``bias``, ``resolution``, their errors and the robust ``resolution_iqr68``). Every value that is
    undefined (no event, or a single one for a width) is None, never NaN: the result is JSON-ready.
    """
    true_gev = np.asarray(true_gev, dtype=np.float64).reshape(-1)
    predicted_gev = np.asarray(predicted_gev, dtype=np.float64).reshape(-1)
    relative = (true_gev - predicted_gev) / true_gev
    binned = binned_response(true_gev, predicted_gev, regression_edges(true_gev, bin_gev))
    edges = binned["edges"]
    bins = [
        {
            "energy_gev": [float(edges[b]), float(edges[b + 1])],
            "n": int(binned["counts"][b]),
            **{
                key: _finite_or_none(binned[key][b]) for key in ("bias", "bias_error", "resolution", "resolution_error")
            },
            "resolution_iqr68": _finite_or_none(binned["resolution_iqr68"][b]),
        }
        for b in range(len(edges) - 1)
        if binned["counts"][b] > 0
    ]
    return {
        "relative_bias": _finite_or_none(float(relative.mean())) if relative.size else None,
        "relative_resolution": _finite_or_none(float(relative.std(ddof=1))) if relative.size > 1 else None,
        "n": int(relative.size),
        "bins": bins,
    }
