"""Shower observables of Cartesian calorimeter images (the LCD / CLIC ECAL and HCAL windows).

Every function takes a batch ``cells`` of shape (N, nx, ny, nz) with cell energies in GeV, in the axis order
of the LCD files: x and y transverse, z the depth (layer). A trailing channel axis of size 1
(N, nx, ny, nz, 1), as Keras models produce, is accepted and dropped. Positions are 0-based cell indices
(cell ``i`` spans [i, i + 1) in index units; :mod:`caloml.observables.angle` uses the centres ``i + 0.5``).

All functions are vectorized over the batch. Every division by zero (an empty event or layer) gives 0, never
NaN. Energies are returned in float64 whatever the input precision; counts are int64.

:func:`project` computes the (x, y) and z projections (and optionally the hit counts) in one cache-friendly
pass over the cells; the other quantities derive from the projections, so that code needing several
observables (the LCD expert features, :mod:`caloml.data.lcd_features`) reads the big cell array only once.
See ``docs/evaluation.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from caloml.errors import DataError
from caloml.observables.metrics import histogram_per_event

__all__ = [
    "Projections",
    "cell_spectrum",
    "depth_energy_ratios",
    "first_layer_ratios",
    "hits_above",
    "longitudinal_profile",
    "max_deposit_position",
    "moments",
    "profile_moments",
    "project",
    "r9",
    "r9_from_projection",
    "sampling_fraction",
    "sparsity_curve",
    "total_energy",
    "transverse_profiles",
]

Axis = Literal[0, 1, 2, "x", "y", "z"]

#: Bytes of cells processed per block by :func:`project` (blocks stay in the CPU caches between the passes).
_BLOCK_BYTES = 1 << 20
_AXES = {"x": 0, "y": 1, "z": 2}


@dataclass(frozen=True)
class Projections:
    """Energy projections of a batch of showers (GeV).

    ``xy`` (N, nx, ny) is the sum over the depth, in the precision of the cells; ``z`` (N, nz) the sum over x
    and y (the longitudinal profile), float64; ``hits`` (N,) holds the cell counts above the threshold given to
    :func:`project`, if any.
    """

    xy: np.ndarray
    z: np.ndarray
    hits: np.ndarray | None = None

    @property
    def x(self) -> np.ndarray:
        """Transverse profile along x, shape (N, nx), GeV, float64."""
        return self.xy.sum(axis=2, dtype=np.float64)

    @property
    def y(self) -> np.ndarray:
        """Transverse profile along y, shape (N, ny), GeV, float64."""
        return self.xy.sum(axis=1, dtype=np.float64)

    @property
    def total(self) -> np.ndarray:
        """Total energy per event, shape (N,), GeV."""
        return self.z.sum(axis=1)


def project(cells: np.ndarray, hit_threshold_gev: float | None = None) -> Projections:
    """Project showers (N, nx, ny, nz) (GeV) onto (x, y) and onto z, in one pass; see :class:`Projections`.

    With ``hit_threshold_gev``, also count the cells strictly above it. The sums run in the input's precision
    (float32 cells give a float32 ``xy``; the profile ``z`` is returned as float64).
    """
    cells = _as_cells(cells)
    n, nx, ny, nz = cells.shape
    xy = np.empty((n, nx, ny), dtype=cells.dtype)
    z = np.empty((n, nz), dtype=cells.dtype)
    hits = None if hit_threshold_gev is None else np.empty(n, dtype=np.int64)
    ones = np.ones(nx * ny, dtype=cells.dtype)
    step = max(1, _BLOCK_BYTES // max(1, cells[0].nbytes if n else 1))
    for start in range(0, n, step):  # blocks of events, for cache locality
        stop = min(n, start + step)
        block = np.ascontiguousarray(cells[start:stop])
        np.einsum("nxyz->nxy", block, out=xy[start:stop])
        np.matmul(ones, block.reshape(stop - start, nx * ny, nz), out=z[start:stop])
        if hits is not None and hit_threshold_gev is not None:
            hits[start:stop] = _count_above(_flat(block), hit_threshold_gev)
    return Projections(xy=xy, z=z.astype(np.float64, copy=False), hits=hits)


def total_energy(cells: np.ndarray) -> np.ndarray:
    """Sum of the cells of each event, shape (N,), GeV."""
    cells = _as_cells(cells)
    return _flat(cells).sum(axis=1, dtype=np.float64)


def sampling_fraction(cells: np.ndarray, primary_energy_gev: np.ndarray | float) -> np.ndarray:
    """Deposited over primary energy, shape (N,); ``primary_energy_gev`` (N,), (N, 1) or a scalar (GeV).

    0 where the primary energy is 0.
    """
    deposited = total_energy(cells)
    primary = np.asarray(primary_energy_gev, dtype=np.float64)
    if primary.ndim == 2 and primary.shape[1] == 1:
        primary = primary[:, 0]
    primary = np.broadcast_to(primary, deposited.shape)
    return _safe_divide(deposited, primary)


def longitudinal_profile(cells: np.ndarray) -> np.ndarray:
    """Energy per layer (sum over x and y), shape (N, nz), GeV."""
    cells = _as_cells(cells)
    return cells.sum(axis=(1, 2), dtype=np.float64)


def transverse_profiles(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy projections onto x (N, nx) and onto y (N, ny), GeV."""
    cells = _as_cells(cells)
    xy = cells.sum(axis=3, dtype=np.float64)
    return xy.sum(axis=2), xy.sum(axis=1)


def profile_moments(profile: np.ndarray, max_order: int = 6) -> np.ndarray:
    """Moments of 1-D energy profiles (N, n) along their index, shape (N, max_order).

    Column 0 is M1 = sum_i E_i i / sum_i E_i, the energy-weighted mean 0-based index; column k - 1 (k >= 2) is the
    central moment Mk = sum_i E_i (i - M1)^k / sum_i E_i (divided by the total energy, not standardized).
    Events with zero total give 0.
    """
    profile = np.asarray(profile, dtype=np.float64)
    if profile.ndim != 2:
        raise DataError(f"profile_moments: expected profiles of shape (N, n), got {profile.shape}")
    if max_order < 1:
        raise DataError(f"profile_moments: max_order must be at least 1, got {max_order}")
    total = profile.sum(axis=1)
    index = np.arange(profile.shape[1], dtype=np.float64)
    out = np.zeros((profile.shape[0], max_order))
    out[:, 0] = _safe_divide(profile @ index, total)
    if max_order > 1:
        delta = index[None, :] - out[:, :1]  # (N, n)
        power = delta.copy()
        for order in range(2, max_order + 1):  # loop over the orders, not the events
            power *= delta
            out[:, order - 1] = _safe_divide(np.einsum("ni,ni->n", profile, power), total)
    return out


def moments(cells: np.ndarray, axis: Axis, max_order: int = 6) -> np.ndarray:
    """Moments of the energy projection onto one axis, shape (N, max_order); see :func:`profile_moments`.

    ``axis`` is 0 / "x", 1 / "y" or 2 / "z" (the depth). Order 1 is the mean 0-based cell index, orders
    2..max_order the central moments about it in index units (index^k), divided by the total energy.
    """
    cells = _as_cells(cells)
    axis_index = _AXES.get(axis, axis) if isinstance(axis, str) else axis
    if axis_index not in (0, 1, 2):
        raise DataError(f"moments: axis must be 0, 1, 2 or 'x', 'y', 'z', got {axis!r}")
    other = tuple(a + 1 for a in (0, 1, 2) if a != axis_index)
    return profile_moments(cells.sum(axis=other, dtype=np.float64), max_order)


def hits_above(cells: np.ndarray, threshold_gev: float) -> np.ndarray:
    """Number of cells strictly above ``threshold_gev`` (GeV) in each event, shape (N,), int64."""
    cells = _as_cells(cells)
    return _count_above(_flat(cells), threshold_gev)


def depth_energy_ratios(cells: np.ndarray) -> np.ndarray:
    """Fractions of the energy in the first, second and last third of the layers, shape (N, 3).

    The thirds are the layers [0, nz // 3), [nz // 3, 2 nz // 3) and [2 nz // 3, nz) (8, 8 and 9 layers for the
    25-layer LCD ECAL). Each column is divided by the total energy; 0 for an empty event.
    """
    return _depth_ratios_from_profile(longitudinal_profile(cells))


def first_layer_ratios(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first layer / total, first layer / second layer) energies, each of shape (N,); 0 where a denominator is 0."""
    return _first_layer_ratios_from_profile(longitudinal_profile(cells))


def r9(cells: np.ndarray) -> np.ndarray:
    """Largest 3 x 3 window sum of the (x, y) projection divided by the total energy, shape (N,).

    The shower summed over the depth; every window of 3 x 3 cells is considered (a grid smaller than 3 cells
    along an axis uses the whole axis). 0 for an empty event.
    """
    cells = _as_cells(cells)
    return r9_from_projection(cells.sum(axis=3, dtype=np.float64))


def r9_from_projection(xy: np.ndarray) -> np.ndarray:
    """R9 from the (x, y) projections (N, nx, ny) (GeV), shape (N,); see :func:`r9`."""
    xy = np.asarray(xy)
    if xy.ndim != 3:
        raise DataError(f"r9_from_projection: expected projections of shape (N, nx, ny), got {xy.shape}")
    if not np.issubdtype(xy.dtype, np.floating):
        xy = xy.astype(np.float64)
    if xy.shape[1] < 3 or xy.shape[2] < 3:  # a window then spans the whole axis
        xy = np.pad(xy, ((0, 0), (0, max(0, 3 - xy.shape[1])), (0, max(0, 3 - xy.shape[2]))))
    rows = xy[:, :-2] + xy[:, 1:-1] + xy[:, 2:]  # 3-cell sums along x, (N, nx - 2, ny)
    windows = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]  # 3 x 3 sums, (N, nx - 2, ny - 2)
    best = windows.reshape(windows.shape[0], windows.shape[1] * windows.shape[2]).max(axis=1)
    return _safe_divide(best, xy.sum(axis=(1, 2), dtype=np.float64))


def sparsity_curve(cells: np.ndarray, thresholds_gev: np.ndarray) -> np.ndarray:
    """Fraction of the cells strictly above each threshold, shape (N, T) for ``thresholds_gev`` (T,) in GeV.

    Computed in one pass over the cells whatever the number of thresholds (the thresholds need not be sorted).
    """
    cells = _as_cells(cells)
    thresholds = np.asarray(thresholds_gev, dtype=np.float64).reshape(-1)
    flat = _flat(cells)
    n_events, n_cells = flat.shape
    n_levels = thresholds.size + 1
    order = np.argsort(thresholds, kind="stable")
    sorted_thresholds = thresholds[order]
    # Histogram, per event, each cell's number of thresholds strictly below it; then count from the top.
    levels = np.zeros((n_events, n_levels), dtype=np.int64)
    step = max(1, (1 << 22) // max(1, n_cells))
    for start in range(0, n_events, step):  # blocks of events, to bound the memory of the indices
        block = flat[start : start + step]
        below = np.searchsorted(sorted_thresholds, block, side="left")
        below[np.isnan(block)] = 0  # NaN is above no threshold
        offsets = np.arange(block.shape[0])[:, None] * n_levels
        levels[start : start + step] = np.bincount(
            (below + offsets).reshape(-1), minlength=block.shape[0] * n_levels
        ).reshape(block.shape[0], n_levels)
    above_sorted = np.cumsum(levels[:, ::-1], axis=1)[:, ::-1][:, 1:]  # column k: cells above sorted threshold k
    above = np.empty_like(above_sorted)
    above[:, order] = above_sorted
    return above / max(1, n_cells)


def cell_spectrum(cells: np.ndarray, bin_edges_gev: np.ndarray) -> np.ndarray:
    """Histogram of the cell energies of each event, counts of shape (N, B) for ``bin_edges_gev`` (B + 1,) in GeV.

    ``np.histogram`` semantics; cells outside the edges (for example empty cells with logarithmic edges) are not
    counted. Sum over axis 0 for the spectrum of the whole sample.
    """
    cells = _as_cells(cells)
    return histogram_per_event(cells, bin_edges_gev)


def max_deposit_position(cells: np.ndarray) -> np.ndarray:
    """0-based (x, y, z) indices of the cell with the largest energy, shape (N, 3), int64.

    The first such cell in C order on ties; (0, 0, 0) for an empty event.
    """
    cells = _as_cells(cells)
    flat_index = _flat(cells).argmax(axis=1)
    return np.stack(np.unravel_index(flat_index, cells.shape[1:]), axis=1).astype(np.int64)


def _as_cells(cells: np.ndarray) -> np.ndarray:
    cells = np.asarray(cells)
    if cells.ndim == 5 and cells.shape[-1] == 1:
        cells = cells[..., 0]
    if cells.ndim != 4:
        raise DataError(f"expected showers of shape (N, nx, ny, nz) or (N, nx, ny, nz, 1), got {cells.shape}")
    if not np.issubdtype(cells.dtype, np.floating):
        cells = cells.astype(np.float64)
    return cells


def _flat(cells: np.ndarray) -> np.ndarray:
    """(N, ...) -> (N, cells per event), also for an empty batch."""
    return cells.reshape(cells.shape[0], math.prod(cells.shape[1:]))


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator, denominator = np.broadcast_arrays(
        np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    )
    out = np.zeros(numerator.shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _count_above(flat: np.ndarray, threshold: float) -> np.ndarray:
    """Number of values strictly above ``threshold`` in each row of ``flat`` (n, m), int64."""
    n, m = flat.shape
    if not hasattr(np, "bitwise_count"):  # NumPy < 2.0
        return np.count_nonzero(flat > threshold, axis=1).astype(np.int64)
    # Comparison into a byte mask padded to whole 64-bit words, then a popcount per word: faster than
    # count_nonzero along an axis, which the LCD expert features run on every simulated batch.
    width = -(-m // 8) * 8
    mask = np.zeros((n, width), dtype=bool)
    np.greater(flat, threshold, out=mask[:, :m])
    return np.bitwise_count(mask.view(np.uint64)).sum(axis=1, dtype=np.int64)


def _depth_ratios_from_profile(profile: np.ndarray) -> np.ndarray:
    nz = profile.shape[1]
    bounds = [0, nz // 3, 2 * nz // 3, nz]
    cumulative = np.concatenate([np.zeros((profile.shape[0], 1)), np.cumsum(profile, axis=1)], axis=1)
    parts = np.diff(cumulative[:, bounds], axis=1)  # (N, 3); an empty third (nz < 3) gives 0
    return _safe_divide(parts, profile.sum(axis=1, keepdims=True))


def _first_layer_ratios_from_profile(profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first = profile[:, 0]
    second = profile[:, 1] if profile.shape[1] > 1 else np.zeros_like(first)
    return _safe_divide(first, profile.sum(axis=1)), _safe_divide(first, second)
