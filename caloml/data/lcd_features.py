"""The Triforce expert features of LCD events, computed on the full ECAL and HCAL windows.

:func:`expert_features` takes the ECAL (N, 51, 51, 25) and HCAL (N, 11, 11, 60) cells **in GeV** (the readers
divide the stored 50 x GeV values by :data:`caloml.units.LCD_STORED_PER_GEV`) and returns the keys of
:data:`EXPERT_FEATURE_KEYS`, each of shape (N,) and float32:

* ``ECAL_E``, ``HCAL_E`` - sums of the windows, **in GeV**; :class:`caloml.data.lcd.LCDWriter` stores them, like
  the cells, in 50 x GeV (the sums of the stored cells, as in the real files).
* ``ECAL_nHits``, ``HCAL_nHits`` - cells strictly above 0.1 stored units, that is 0.1 / 50 = 0.002 GeV.
* ``HCAL_ECAL_ERatio``, ``HCAL_ECAL_nHitsRatio`` - HCAL over ECAL sums and hit counts.
* ``{ECAL,HCAL}_ratioFirstLayerToTotalE``, ``{ECAL,HCAL}_ratioFirstLayerToSecondLayerE``.
* ``{ECAL,HCAL}moment{X,Y,Z}{1..6}`` - moment 1 is the energy-weighted mean 0-based cell index of the projection
  onto the axis, moments 2..6 the central moments about it divided by the total energy (not standardized),
  see :func:`caloml.observables.grid.profile_moments`.
* ``R9`` - the ECAL summed over the depth: the largest 3 x 3 window sum over the total.

Every division by zero gives 0. The big cell arrays are read once each, by blocks that stay in the CPU cache for
the three reductions (the (x, y) and z projections and the hit count); everything else derives from the
projections, the 36 moments in one set of array operations, so that the simulator can afford the features on every
batch. The results are those of :mod:`caloml.observables.grid` (``project``, ``profile_moments``,
``r9_from_projection``) up to float32 rounding.
See ``docs/data.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloml.errors import DataError
from caloml.units import LCD_STORED_PER_GEV

__all__ = ["EXPERT_FEATURE_KEYS", "HIT_THRESHOLD_GEV", "HIT_THRESHOLD_STORED", "expert_features"]

#: Hit threshold of the Triforce feature files, in stored units (50 x GeV).
HIT_THRESHOLD_STORED = 0.1
#: The same threshold in GeV.
HIT_THRESHOLD_GEV = HIT_THRESHOLD_STORED / LCD_STORED_PER_GEV

_MOMENT_ORDERS = 6
#: Bytes of cells per block of the pass over the cells (the block stays in the CPU cache).
_BLOCK_BYTES = 1 << 20
#: Events per group of the R9 window sums (64 x 51 x 51 float32 sums: about 650 kB).
_R9_EVENTS = 64

EXPERT_FEATURE_KEYS: tuple[str, ...] = (
    "ECAL_E",
    "HCAL_E",
    "ECAL_nHits",
    "HCAL_nHits",
    "HCAL_ECAL_ERatio",
    "HCAL_ECAL_nHitsRatio",
    "ECAL_ratioFirstLayerToTotalE",
    "ECAL_ratioFirstLayerToSecondLayerE",
    "HCAL_ratioFirstLayerToTotalE",
    "HCAL_ratioFirstLayerToSecondLayerE",
    *(f"ECALmoment{axis}{order}" for axis in "XYZ" for order in range(1, _MOMENT_ORDERS + 1)),
    *(f"HCALmoment{axis}{order}" for axis in "XYZ" for order in range(1, _MOMENT_ORDERS + 1)),
    "R9",
)
"""Names of the expert features, in the order of the Triforce files' description."""


def expert_features(ecal_gev: np.ndarray, hcal_gev: np.ndarray) -> dict[str, np.ndarray]:
    """Triforce expert features of a batch of LCD events; see the module docstring.

    Parameters
    ----------
    ecal_gev
        ECAL cells (N, nx, ny, nz) in GeV (51 x 51 x 25 for the LCD windows); float32 is the fastest.
    hcal_gev
        HCAL cells (N, nx', ny', nz') in GeV (11 x 11 x 60), the same events.

    Returns
    -------
    dict
        One float32 array of shape (N,) per key of :data:`EXPERT_FEATURE_KEYS`, in that order.
    """
    ecal_gev = np.asarray(ecal_gev)
    hcal_gev = np.asarray(hcal_gev)
    for name, cells in (("ECAL", ecal_gev), ("HCAL", hcal_gev)):
        if cells.ndim != 4:
            raise DataError(f"expert_features: {name} cells must have shape (N, nx, ny, nz), got {cells.shape}")
    if ecal_gev.shape[0] != hcal_gev.shape[0]:
        raise DataError(f"expert_features: {ecal_gev.shape[0]} ECAL events but {hcal_gev.shape[0]} HCAL events")

    ecal = _scan(ecal_gev, with_r9=True)
    hcal = _scan(hcal_gev)
    ecal_e = ecal.z.sum(axis=1)
    hcal_e = hcal.z.sum(axis=1)
    ecal_hits = ecal.hits.astype(np.float64)
    hcal_hits = hcal.hits.astype(np.float64)

    features: dict[str, np.ndarray] = {
        "ECAL_E": ecal_e,
        "HCAL_E": hcal_e,
        "ECAL_nHits": ecal_hits,
        "HCAL_nHits": hcal_hits,
        "HCAL_ECAL_ERatio": _safe_divide(hcal_e, ecal_e),
        "HCAL_ECAL_nHitsRatio": _safe_divide(hcal_hits, ecal_hits),
        "ECAL_ratioFirstLayerToTotalE": _safe_divide(ecal.z[:, 0], ecal_e),
        "ECAL_ratioFirstLayerToSecondLayerE": _safe_divide(ecal.z[:, 0], _layer(ecal.z, 1)),
        "HCAL_ratioFirstLayerToTotalE": _safe_divide(hcal.z[:, 0], hcal_e),
        "HCAL_ratioFirstLayerToSecondLayerE": _safe_divide(hcal.z[:, 0], _layer(hcal.z, 1)),
    }
    profiles: dict[str, np.ndarray] = {}
    for prefix, scan in (("ECAL", ecal), ("HCAL", hcal)):
        profiles[f"{prefix}momentX"] = scan.x
        profiles[f"{prefix}momentY"] = scan.y
        profiles[f"{prefix}momentZ"] = scan.z
    for name, values in zip(profiles, _all_profile_moments(list(profiles.values())), strict=True):
        for order in range(1, _MOMENT_ORDERS + 1):
            features[f"{name}{order}"] = values[:, order - 1]
    assert ecal.r9 is not None
    features["R9"] = ecal.r9
    return {key: np.asarray(features[key], dtype=np.float32) for key in EXPERT_FEATURE_KEYS}


@dataclass(frozen=True)
class _Scan:
    """What one pass over a batch of cells gives: ``z`` (N, nz) the longitudinal profile (summed in the cells'
    precision), ``x`` (N, nx) and ``y`` (N, ny) the transverse profiles (the (x, y) projection, in the cells'
    precision, summed in float64), ``hits`` (N,) int64, and R9 (N,) if asked for; float64, GeV."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    hits: np.ndarray
    r9: np.ndarray | None


def _scan(cells: np.ndarray, *, with_r9: bool = False) -> _Scan:
    """Project cells (N, nx, ny, nz) (GeV) onto (x, y) and z and count the hits, in one pass over the memory.

    Blocks of about a megabyte of events are read once from memory and then stay in the CPU cache for the
    reductions, each a vectorised kernel: a matrix-vector product over the depth (the (x, y) projection, whose x
    and y profiles follow while it is in the cache; R9 after the pass, by groups of events), a vector-matrix
    product over the (x, y) cells (the longitudinal profile) and a comparison counted per event with
    ``np.count_nonzero`` (a contiguous byte mask, the fastest count NumPy has).
    """
    if not np.issubdtype(cells.dtype, np.floating):
        cells = cells.astype(np.float64)
    n, nx, ny, nz = cells.shape
    cells_per_event = nx * ny * nz
    x = np.empty((n, nx))
    y = np.empty((n, ny))
    z = np.empty((n, nz), dtype=cells.dtype)
    hits = np.empty(n, dtype=np.int64)
    r9 = np.empty(n) if with_r9 else None
    over_depth = np.ones(nz, dtype=cells.dtype)
    over_xy = np.ones(nx * ny, dtype=cells.dtype)
    step = max(1, _BLOCK_BYTES // max(1, cells_per_event * cells.itemsize))
    mask = np.empty((min(step, n), cells_per_event), dtype=bool)
    xy = np.empty((n, nx * ny), dtype=cells.dtype)
    for start in range(0, n, step):
        stop = min(n, start + step)
        block = np.ascontiguousarray(cells[start:stop]).reshape(stop - start, nx * ny, nz)
        block_xy = xy[start:stop]
        np.matmul(block, over_depth, out=block_xy)
        np.matmul(over_xy, block, out=z[start:stop])
        xy64 = block_xy.reshape(stop - start, nx, ny).astype(np.float64)  # the transverse profiles in float64
        np.matmul(xy64, np.ones(ny), out=x[start:stop])
        np.matmul(np.ones(nx), xy64, out=y[start:stop])
        block_mask = mask[: stop - start]
        # a Python float threshold compares in the cells' precision, as the Triforce files' float32 cells
        np.greater(block.reshape(stop - start, cells_per_event), HIT_THRESHOLD_GEV, out=block_mask)
        for row, event_mask in enumerate(block_mask):
            hits[start + row] = np.count_nonzero(event_mask)
    if r9 is not None:  # by groups of events whose window sums stay in the cache
        for start in range(0, n, _R9_EVENTS):
            r9[start : start + _R9_EVENTS] = _r9(xy[start : start + _R9_EVENTS].reshape(-1, nx, ny))
    return _Scan(x=x, y=y, z=z.astype(np.float64, copy=False), hits=hits, r9=r9)


def _all_profile_moments(profiles: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`caloml.observables.grid.profile_moments` of several profiles (N, n_i) at once, float64.

    The profiles are laid side by side in one (N, sum n_i) array, so that each order costs a few whole-array
    operations and one ``np.add.reduceat`` over the segments, whatever the number of profiles (not a matrix
    product: a multithreaded BLAS would spin on these small products). Returns one (N, 6) array per profile: M1
    the mean 0-based index, then the central moments over the total energy; 0 for a profile with zero total.
    """
    lengths = [profile.shape[1] for profile in profiles]
    side_by_side = np.concatenate(profiles, axis=1)  # (N, L)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    segment = np.repeat(np.arange(len(profiles)), lengths)
    index = np.concatenate([np.arange(length, dtype=np.float64) for length in lengths])

    def segment_sums(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, starts, axis=1)  # (N, profiles)

    total = segment_sums(side_by_side)
    out = np.zeros((side_by_side.shape[0], len(profiles), _MOMENT_ORDERS))
    out[:, :, 0] = _safe_divide(segment_sums(side_by_side * index), total)
    delta = index - out[:, :, 0][:, segment]  # (N, L)
    power = delta.copy()
    weighted = np.empty_like(power)
    for order in range(2, _MOMENT_ORDERS + 1):  # loop over the orders, not the events or the profiles
        power *= delta
        np.multiply(side_by_side, power, out=weighted)
        out[:, :, order - 1] = _safe_divide(segment_sums(weighted), total)
    return [out[:, i] for i in range(len(profiles))]


def _r9(xy: np.ndarray) -> np.ndarray:
    """Largest 3 x 3 window of the (x, y) projections (N, nx, ny) over their total, (N,) float64; 0 if empty.

    :func:`caloml.observables.grid.r9_from_projection` with the same additions in the same order, written
    into two reused buffers instead of four temporaries.
    """
    n, nx, ny = xy.shape
    if nx < 3 or ny < 3:  # a window then spans the whole axis
        xy = np.pad(xy, ((0, 0), (0, max(0, 3 - nx)), (0, max(0, 3 - ny))))
        n, nx, ny = xy.shape
    rows = np.add(xy[:, :-2], xy[:, 1:-1])
    rows += xy[:, 2:]  # 3-cell sums along x, (N, nx - 2, ny)
    windows = np.add(rows[:, :, :-2], rows[:, :, 1:-1])
    windows += rows[:, :, 2:]  # 3 x 3 sums, (N, nx - 2, ny - 2)
    best = windows.reshape(n, (nx - 2) * (ny - 2)).max(axis=1)
    return _safe_divide(best, xy.sum(axis=(1, 2), dtype=np.float64))


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(np.shape(numerator))
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _layer(profile: np.ndarray, index: int) -> np.ndarray:
    """Energy of one layer of longitudinal profiles (N, nz); 0 if there is no such layer."""
    return profile[:, index] if profile.shape[1] > index else np.zeros(profile.shape[0])
