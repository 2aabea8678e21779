"""Comparison metrics between generated and reference distributions of an observable.

* :func:`separation_power` - the 1/2 sum (h1 - h2)^2 / (h1 + h2) of the CaloChallenge and 3DGAN papers on
  unit-normalized histograms: 0 for identical shapes, 1 for disjoint ones.
* :func:`histogram_pair` - histograms of two samples on common edges (linear or logarithmic).
* :func:`relative_mean_error_per_bin` - (mean_gen - mean_ref) / mean_ref in bins of a second variable
  (typically the primary energy).
* :func:`ks_statistic` - the two-sample Kolmogorov-Smirnov statistic.
* :func:`histogram_per_event` - one histogram per event (row) of a batch, vectorized.

The metrics are unit-free: they take whatever the observables return (GeV, radians, counts). See ``docs/evaluation.md``.
"""

from __future__ import annotations

import math

import numpy as np

from caloml.errors import DataError

__all__ = [
    "binned_mean",
    "histogram_pair",
    "histogram_per_event",
    "ks_statistic",
    "relative_mean_error_per_bin",
    "separation_power",
]


def separation_power(h1: np.ndarray, h2: np.ndarray) -> float:
    """Separation power of two histograms on the same bins, in [0, 1].

    Both histograms, shape (B,), are normalized to unit sum first, so raw counts are fine. Bins where both are
    empty are skipped. Identical shapes give 0, histograms without a common non-empty bin give 1. An empty
    histogram (sum 0) counts as all zeros.
    """
    p = _normalized(h1)
    q = _normalized(h2)
    if p.shape != q.shape:
        raise DataError(f"separation_power: histograms of different shapes {p.shape} and {q.shape}")
    total = p + q
    occupied = total != 0
    return float(0.5 * np.sum((p[occupied] - q[occupied]) ** 2 / total[occupied]))


def histogram_pair(
    a: np.ndarray, b: np.ndarray, bins: int | np.ndarray = 50, log: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histograms of two samples on common edges.

    Parameters
    ----------
    a, b
        Samples of any shape (flattened); non-finite values are ignored.
    bins
        Number of bins, spanning the range of both samples together, or the edges themselves (B + 1,).
    log
        With a number of bins, space the edges logarithmically between the smallest positive and the
        largest value (non-positive values then fall outside and are not counted).

    Returns
    -------
    (counts_a, counts_b, edges)
        Counts of shape (B,) (float64, not normalized) and the edges (B + 1,). ``np.histogram`` bin semantics:
        half-open bins, the last one closed.
    """
    a = _finite(a)
    b = _finite(b)
    if np.ndim(bins) == 0:
        n_bins = int(bins)
        if n_bins < 1:
            raise DataError(f"histogram_pair: bins must be at least 1, got {n_bins}")
        both = np.concatenate([a, b])
        if log:
            both = both[both > 0]
        if both.size == 0:
            low, high = (1.0, 10.0) if log else (0.0, 1.0)
        else:
            low, high = float(both.min()), float(both.max())
        if log:
            if high <= low:
                low, high = low / 10.0, high * 10.0
            edges = np.geomspace(low, high, n_bins + 1)
        else:
            if high <= low:
                low, high = low - 0.5, high + 0.5
            edges = np.linspace(low, high, n_bins + 1)
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise DataError("histogram_pair: bin edges must be a 1-D increasing array of at least 2 values")
    counts_a, _ = np.histogram(a, bins=edges)
    counts_b, _ = np.histogram(b, bins=edges)
    return counts_a.astype(np.float64), counts_b.astype(np.float64), edges


def binned_mean(values: np.ndarray, bin_var: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` (N,) in bins of ``bin_var`` (N,) with ``edges`` (B + 1,).

    Returns ``(means, counts)``, each (B,); the mean of an empty bin is NaN. ``np.histogram`` bin semantics;
    entries outside the edges or with a non-finite value are ignored.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    bin_var = np.asarray(bin_var, dtype=np.float64).reshape(-1)
    edges = np.asarray(edges, dtype=np.float64)
    if values.shape != bin_var.shape:
        raise DataError(f"binned_mean: {values.size} values but {bin_var.size} binning values")
    keep = np.isfinite(values) & np.isfinite(bin_var)
    counts, _ = np.histogram(bin_var[keep], bins=edges)
    sums, _ = np.histogram(bin_var[keep], bins=edges, weights=values[keep])
    means = np.full(counts.shape, np.nan)
    np.divide(sums, counts, out=means, where=counts > 0)
    return means, counts


def relative_mean_error_per_bin(
    values_gen: np.ndarray,
    values_ref: np.ndarray,
    bin_var_gen: np.ndarray,
    bin_var_ref: np.ndarray,
    edges: np.ndarray,
) -> np.ndarray:
    """Relative error of the mean of an observable in bins of another variable, shape (B,).

    For each bin of ``edges`` (B + 1,) in the binning variable (for example the primary energy in GeV),
    ``(mean(values_gen) - mean(values_ref)) / mean(values_ref)``. Generated and reference samples may have
    different sizes; each value pairs with the binning value of the same index. Bins where either sample is
    empty, or where the reference mean is 0, give NaN (an undefined error, not a perfect one).
    """
    mean_gen, _ = binned_mean(values_gen, bin_var_gen, edges)
    mean_ref, _ = binned_mean(values_ref, bin_var_ref, edges)
    error = np.full(mean_ref.shape, np.nan)
    defined = np.isfinite(mean_gen) & np.isfinite(mean_ref) & (mean_ref != 0)
    np.divide(mean_gen - mean_ref, mean_ref, out=error, where=defined)
    return error


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (max distance between the empirical CDFs), in [0, 1].

    Samples of any shape are flattened and their non-finite values dropped; an empty sample gives NaN. Computed
    with NumPy (the statistic of :func:`scipy.stats.ks_2samp`, without importing SciPy for the simulator).
    """
    a = _finite(a)
    b = _finite(b)
    if a.size == 0 or b.size == 0:
        return float("nan")
    a, b = np.sort(a), np.sort(b)
    pooled = np.concatenate([a, b])  # the distance is largest at one of the sample points
    cdf_a = np.searchsorted(a, pooled, side="right") / a.size
    cdf_b = np.searchsorted(b, pooled, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def histogram_per_event(values: np.ndarray, edges: np.ndarray, chunk_size: int = 1 << 22) -> np.ndarray:
    """One histogram per row: ``values`` (N, ...) -> counts (N, B) (int64) for ``edges`` (B + 1,).

    ``np.histogram`` semantics per row (half-open bins, the last closed; values outside the edges or NaN are not
    counted). Vectorized over rows; the work is split in blocks of about ``chunk_size`` values to bound memory.
    """
    values = np.asarray(values)
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise DataError("histogram_per_event: bin edges must be a 1-D increasing array of at least 2 values")
    n_events = values.shape[0] if values.ndim else 0
    flat = values.reshape(n_events, math.prod(values.shape[1:]))
    n_bins = edges.size - 1
    counts = np.zeros((n_events, n_bins), dtype=np.int64)
    if flat.size == 0:
        return counts
    step = max(1, chunk_size // flat.shape[1])
    for start in range(0, n_events, step):
        block = flat[start : start + step]
        index = np.searchsorted(edges, block, side="right") - 1
        index[block == edges[-1]] = n_bins - 1  # the last bin is closed
        valid = (index >= 0) & (index < n_bins)
        rows = np.broadcast_to(np.arange(block.shape[0])[:, None], block.shape)
        counts[start : start + step] = np.bincount(
            rows[valid] * n_bins + index[valid], minlength=block.shape[0] * n_bins
        ).reshape(block.shape[0], n_bins)
    return counts


def _normalized(h: np.ndarray) -> np.ndarray:
    h = np.asarray(h, dtype=np.float64).reshape(-1)
    total = h.sum()
    return h / total if total != 0 else np.zeros_like(h)


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return x[np.isfinite(x)]
