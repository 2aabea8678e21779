"""Comparing the features of generated and reference showers: histograms, separation power, KS, binned means,
correlation matrices.

For every observable column (a scalar per event, or one component of a per-layer / per-position observable):

* histograms of both samples on common edges spanning the 0.1 to 99.9 percentiles of the two samples together
  (logarithmic for energies), the values beyond them counted in the end bins, so that nothing is dropped;
* the separation power 1/2 sum (h1 - h2)^2 / (h1 + h2) of the unit-normalized histograms
  (:func:`caloml.observables.metrics.separation_power`), with the value two samples of the same distribution
  reach by chance, :func:`separation_power_noise_floor`;
* the two-sample Kolmogorov-Smirnov statistic and its p-value; an observable is *flagged* as different when its
  p-value survives the Holm-Bonferroni correction over all the columns of the evaluation at family-wise level
  ``alpha`` (default 0.01), so that two samples of one distribution flag nothing with probability 0.99;
* in bins of the incident energy (and of the angle theta for LCD files): the relative error of the mean
  (mean_gen - mean_ref) / mean_ref and its pull (mean_gen - mean_ref) / sqrt(var_gen/n_gen + var_ref/n_ref);
  bins with fewer than ``min_bin_events`` showers in either file are left undefined (NaN, JSON null).

Correlation matrices: Pearson coefficients of the scalar observables and the conditions, for each sample, and
their difference (generated - reference). See ``docs/evaluation.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from caloml.errors import CalomlError
from caloml.evaluate.features import ShowerFeatures
from caloml.observables.metrics import binned_mean, separation_power

__all__ = [
    "BinnedMeans",
    "Binning",
    "ColumnComparison",
    "angle_edges",
    "binned_mean_comparison",
    "clipped_histograms",
    "compare_column",
    "compare_features",
    "correlation_matrices",
    "energy_edges",
    "histogram_edges",
    "holm_flags",
    "separation_power_noise_floor",
]

#: Quantiles of the pooled samples that bound the histogram edges (the rest goes to the end bins).
EDGE_QUANTILES = (0.001, 0.999)


@dataclass(frozen=True)
class Binning:
    """Bins of the conditions: incident energy (GeV) and, for LCD files with theta, the angle (rad)."""

    energy_edges_gev: np.ndarray
    angle_edges_rad: np.ndarray | None = None


def energy_edges(
    energy_gen: np.ndarray, energy_ref: np.ndarray, *, width_gev: float | None = None, log_bins: int | None = None
) -> np.ndarray:
    """Incident-energy bin edges (GeV) covering both samples.

    ``width_gev``: linear bins of that width on a grid aligned to multiples of it (the 3DGAN paper's 5 GeV bins);
    ``log_bins``: that many logarithmic bins between the smallest and largest energy. Exactly one must be given.
    A single energy gives one bin around it.
    """
    if (width_gev is None) == (log_bins is None):
        raise ValueError("give exactly one of width_gev and log_bins")
    both = np.concatenate([np.ravel(energy_gen), np.ravel(energy_ref)])
    low, high = float(both.min()), float(both.max())
    if high <= low:
        return np.array([low * 0.99, high * 1.01 + 1e-9])
    if width_gev is not None:
        if not width_gev > 0:
            raise CalomlError(f"the energy bin width must be positive, got {width_gev} GeV")
        first = math.floor(low / width_gev) * width_gev
        n = max(1, math.ceil((high - first) / width_gev + 1e-9))
        edges = first + width_gev * np.arange(n + 1)
        if edges[-1] <= high:  # the last bin is closed in np.histogram, but keep the maximum strictly inside
            edges = np.append(edges, edges[-1] + width_gev)
        return edges
    assert log_bins is not None
    if log_bins < 1:
        raise CalomlError(f"the number of energy bins must be positive, got {log_bins}")
    if low <= 0:
        raise CalomlError(f"logarithmic energy bins need positive energies, the smallest is {low} GeV")
    return np.geomspace(low, high, log_bins + 1)


def angle_edges(theta_gen: np.ndarray, theta_ref: np.ndarray, width_rad: float) -> np.ndarray:
    """Angle bin edges (rad) of width ``width_rad`` (the 3DGAN paper's 0.1 rad) covering both samples."""
    if not width_rad > 0:
        raise CalomlError(f"the angle bin width must be positive, got {width_rad} rad")
    both = np.concatenate([np.ravel(theta_gen), np.ravel(theta_ref)])
    low, high = float(both.min()), float(both.max())
    first = math.floor(low / width_rad) * width_rad
    n = max(1, math.ceil((high - first) / width_rad + 1e-9))
    edges = first + width_rad * np.arange(n + 1)
    if edges[-1] <= high:
        edges = np.append(edges, edges[-1] + width_rad)
    return edges


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    return values[np.isfinite(values)]


def histogram_edges(gen: np.ndarray, ref: np.ndarray, n_bins: int, log: bool = False) -> np.ndarray:
    """Common edges (n_bins + 1,) spanning the :data:`EDGE_QUANTILES` of both samples (log-spaced with ``log``).

    With ``log``, only positive values set the range (zeros fall in the first bin through the clipping of
    :func:`clipped_histograms`); a sample without spread gets one unit-wide (or one-decade) range around it.
    """
    both = np.concatenate([_finite(gen), _finite(ref)])
    if log:
        both = both[both > 0]
    if both.size == 0:
        return np.geomspace(1e-3, 1.0, n_bins + 1) if log else np.linspace(0.0, 1.0, n_bins + 1)
    low, high = (float(q) for q in np.quantile(both, EDGE_QUANTILES))
    if log:
        if high <= low * (1 + 1e-9):
            low, high = low / math.sqrt(10.0), high * math.sqrt(10.0)
        return np.geomspace(low, high, n_bins + 1)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, n_bins + 1)


def clipped_histograms(gen: np.ndarray, ref: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts (B,) of both samples on ``edges`` (B + 1,), values below / above them counted in the first / last bin.

    Non-finite values are not counted.
    """
    counts = []
    for sample in (gen, ref):
        values = np.clip(_finite(sample), edges[0], edges[-1])
        counts.append(np.histogram(values, bins=edges)[0].astype(np.float64))
    return counts[0], counts[1]


def separation_power_noise_floor(counts_gen: np.ndarray, counts_ref: np.ndarray) -> float:
    """Expected separation power of two samples of the *same* distribution with these sizes and occupied bins.

    For unit-normalized histograms of N1 and N2 entries over B occupied bins, sum_i E[(p1 - p2)^2 / (p1 + p2)]
    is about (B - 1)(1/N1 + 1/N2) / 2 (multinomial variances), so the separation power of identical
    distributions is about (B - 1)(1/N1 + 1/N2) / 4. Values well above it are real differences.
    """
    n_gen, n_ref = float(np.sum(counts_gen)), float(np.sum(counts_ref))
    if n_gen == 0 or n_ref == 0:
        return float("nan")
    occupied = int(np.count_nonzero((np.asarray(counts_gen) + np.asarray(counts_ref)) > 0))
    return max(0, occupied - 1) * (1.0 / n_gen + 1.0 / n_ref) / 4.0


@dataclass(frozen=True)
class BinnedMeans:
    """Means of an observable in bins of a condition, per sample, with their comparison; arrays of shape (B,)."""

    counts_gen: np.ndarray
    counts_ref: np.ndarray
    mean_gen: np.ndarray
    mean_ref: np.ndarray
    relative_error: np.ndarray
    relative_error_uncertainty: np.ndarray
    pull: np.ndarray

    def summary(self) -> dict[str, float | int | None]:
        """max and mean |relative error|, chi2/ndf of the pulls, over the defined bins (None when none is)."""
        rel = self.relative_error[np.isfinite(self.relative_error)]
        pull = self.pull[np.isfinite(self.pull)]
        return {
            "max_abs_relative_error": float(np.max(np.abs(rel))) if rel.size else None,
            "mean_abs_relative_error": float(np.mean(np.abs(rel))) if rel.size else None,
            "pull_chi2_per_bin": float(np.mean(pull**2)) if pull.size else None,
            "defined_bins": int(rel.size),
        }


def binned_mean_comparison(
    values_gen: np.ndarray,
    values_ref: np.ndarray,
    bin_gen: np.ndarray,
    bin_ref: np.ndarray,
    edges: np.ndarray,
    min_bin_events: int = 10,
) -> BinnedMeans:
    """Relative error and pull of the mean of an observable in bins of a condition (see the module docstring)."""
    means, counts, variances = [], [], []
    for values, binning in ((values_gen, bin_gen), (values_ref, bin_ref)):
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        binning = np.asarray(binning, dtype=np.float64).reshape(-1)
        mean, count = binned_mean(values, binning, edges)
        mean_square, _ = binned_mean(values**2, binning, edges)
        means.append(mean)
        counts.append(count)
        with np.errstate(invalid="ignore"):
            variance = np.maximum(mean_square - mean**2, 0.0) * count / np.maximum(count - 1, 1)
        variances.append(variance)
    defined = (counts[0] >= min_bin_events) & (counts[1] >= min_bin_events)
    relative = np.full(len(edges) - 1, np.nan)
    pull = np.full(len(edges) - 1, np.nan)
    has_mean = defined & (means[1] != 0)
    np.divide(means[0] - means[1], np.abs(means[1]), out=relative, where=has_mean)
    variance_of_difference = variances[0] / np.maximum(counts[0], 1) + variances[1] / np.maximum(counts[1], 1)
    sigma = np.sqrt(np.where(defined, variance_of_difference, 0.0))
    has_sigma = defined & (sigma > 0)
    np.divide(means[0] - means[1], sigma, out=pull, where=has_sigma)
    pull[defined & (sigma == 0) & (means[0] == means[1])] = 0.0
    uncertainty = np.full(len(edges) - 1, np.nan)
    np.divide(sigma, np.abs(means[1]), out=uncertainty, where=has_mean)
    return BinnedMeans(counts[0], counts[1], means[0], means[1], relative, uncertainty, pull)


@dataclass(frozen=True)
class ColumnComparison:
    """Comparison of one observable column (see the module docstring)."""

    edges: np.ndarray
    counts_gen: np.ndarray
    counts_ref: np.ndarray
    separation_power: float
    noise_floor: float
    ks_statistic: float
    ks_pvalue: float
    mean_gen: float
    mean_ref: float
    energy_bins: BinnedMeans
    angle_bins: BinnedMeans | None

    @property
    def relative_mean_error(self) -> float:
        """(mean_gen - mean_ref) / |mean_ref| over the whole samples; NaN when the reference mean is 0."""
        return (self.mean_gen - self.mean_ref) / abs(self.mean_ref) if self.mean_ref != 0 else float("nan")


def compare_column(
    gen: np.ndarray,
    ref: np.ndarray,
    *,
    log: bool,
    n_bins: int,
    energy_gen: np.ndarray,
    energy_ref: np.ndarray,
    binning: Binning,
    theta_gen: np.ndarray | None = None,
    theta_ref: np.ndarray | None = None,
    min_bin_events: int = 10,
) -> ColumnComparison:
    """Every metric of one column; ``gen`` (N1,) and ``ref`` (N2,) pair with the conditions of the same index."""
    edges = histogram_edges(gen, ref, n_bins, log)
    counts_gen, counts_ref = clipped_histograms(gen, ref, edges)
    finite_gen, finite_ref = _finite(gen), _finite(ref)
    if finite_gen.size and finite_ref.size:
        test = stats.ks_2samp(finite_gen, finite_ref)
        ks, p = float(test.statistic), float(test.pvalue)
    else:
        ks, p = float("nan"), float("nan")
    energy_bins = binned_mean_comparison(gen, ref, energy_gen, energy_ref, binning.energy_edges_gev, min_bin_events)
    angle_bins = None
    if binning.angle_edges_rad is not None and theta_gen is not None and theta_ref is not None:
        angle_bins = binned_mean_comparison(gen, ref, theta_gen, theta_ref, binning.angle_edges_rad, min_bin_events)
    return ColumnComparison(
        edges=edges,
        counts_gen=counts_gen,
        counts_ref=counts_ref,
        separation_power=separation_power(counts_gen, counts_ref),
        noise_floor=separation_power_noise_floor(counts_gen, counts_ref),
        ks_statistic=ks,
        ks_pvalue=p,
        mean_gen=float(finite_gen.mean()) if finite_gen.size else float("nan"),
        mean_ref=float(finite_ref.mean()) if finite_ref.size else float("nan"),
        energy_bins=energy_bins,
        angle_bins=angle_bins,
    )


def holm_flags(pvalues: np.ndarray, alpha: float) -> np.ndarray:
    """Holm-Bonferroni: which of the p-values (M,) reject at family-wise level ``alpha``; NaN never rejects."""
    pvalues = np.asarray(pvalues, dtype=np.float64)
    flags = np.zeros(pvalues.shape, dtype=bool)
    valid = np.flatnonzero(np.isfinite(pvalues))
    order = valid[np.argsort(pvalues[valid], kind="stable")]
    m = order.size
    for rank, index in enumerate(order):
        if pvalues[index] > alpha / (m - rank):
            break
        flags[index] = True
    return flags


def compare_features(
    gen: ShowerFeatures,
    ref: ShowerFeatures,
    binning: Binning,
    *,
    n_bins: int = 40,
    min_bin_events: int = 10,
    alpha: float = 0.01,
) -> tuple[dict[str, list[ColumnComparison]], dict[str, list[bool]]]:
    """Compare every observable column of two feature sets of the same layout.

    Returns ``(comparisons, flags)``: for each observable the list of its column comparisons (one for a scalar
    observable, K for a vector one) and whether each column is flagged (Holm-Bonferroni over all columns).
    """
    if gen.layout != ref.layout:
        raise CalomlError(f"cannot compare {gen.layout} features with {ref.layout} features")
    use_theta = binning.angle_edges_rad is not None and gen.theta_rad is not None and ref.theta_rad is not None
    comparisons: dict[str, list[ColumnComparison]] = {}
    for name, spec in ref.specs.items():
        values_gen = np.asarray(gen.observables[name], dtype=np.float64)
        values_ref = np.asarray(ref.observables[name], dtype=np.float64)
        columns_gen = values_gen[:, None] if values_gen.ndim == 1 else values_gen
        columns_ref = values_ref[:, None] if values_ref.ndim == 1 else values_ref
        comparisons[name] = [
            compare_column(
                columns_gen[:, k],
                columns_ref[:, k],
                log=spec.log,
                n_bins=n_bins,
                energy_gen=gen.energy_gev,
                energy_ref=ref.energy_gev,
                binning=binning,
                theta_gen=gen.theta_rad if use_theta else None,
                theta_ref=ref.theta_rad if use_theta else None,
                min_bin_events=min_bin_events,
            )
            for k in range(columns_ref.shape[1])
        ]
    names = list(comparisons)
    pvalues = np.array([c.ks_pvalue for name in names for c in comparisons[name]])
    flat_flags = holm_flags(pvalues, alpha)
    flags: dict[str, list[bool]] = {}
    position = 0
    for name in names:
        k = len(comparisons[name])
        flags[name] = [bool(f) for f in flat_flags[position : position + k]]
        position += k
    return comparisons, flags


def _correlation(matrix: np.ndarray) -> np.ndarray:
    """Pearson correlation of the columns of ``matrix`` (N, M); NaN for a column without spread."""
    centred = matrix - matrix.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    out = np.full((matrix.shape[1], matrix.shape[1]), np.nan)
    ok = norms > 0
    if matrix.shape[0] >= 2 and ok.any():
        sub = centred[:, ok] / norms[ok]
        out[np.ix_(ok, ok)] = np.clip(sub.T @ sub, -1.0, 1.0)
    return out


def correlation_matrices(gen: ShowerFeatures, ref: ShowerFeatures) -> dict:
    """Correlation matrices of the conditions and scalar observables of both samples and their difference.

    Events with a non-finite value (for example an undefined measured angle) are left out. Returns a dict with
    ``names`` (M,), ``generated``, ``reference`` and ``difference`` (M, M), and ``max_abs_difference`` /
    ``mean_abs_difference`` over the pairs (upper triangle, defined entries).
    """
    names = ["incident_energy_gev"]
    if gen.theta_rad is not None and ref.theta_rad is not None:
        names.append("theta_rad")
    names += [n for n, spec in ref.specs.items() if spec.components is None and spec.scalar_summary]
    matrices = []
    for features in (gen, ref):
        columns = [features.energy_gev]
        if "theta_rad" in names:
            assert features.theta_rad is not None
            columns.append(features.theta_rad)
        columns += [features.observables[n] for n in names[len(columns) :]]
        matrix = np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1)
        matrix = matrix[np.all(np.isfinite(matrix), axis=1)]
        matrices.append(_correlation(matrix))
    difference = matrices[0] - matrices[1]
    upper = difference[np.triu_indices(len(names), k=1)]
    upper = upper[np.isfinite(upper)]
    return {
        "names": names,
        "generated": matrices[0],
        "reference": matrices[1],
        "difference": difference,
        "max_abs_difference": float(np.max(np.abs(upper))) if upper.size else float("nan"),
        "mean_abs_difference": float(np.mean(np.abs(upper))) if upper.size else float("nan"),
    }
