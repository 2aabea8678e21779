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

Every division by zero gives 0. The big cell arrays are read once each (:func:`caloml.observables.grid.project`);
everything else derives from the projections, so that the simulator can afford the features on every batch.
See ``docs/data.md``.
"""

from __future__ import annotations

import numpy as np

from caloml.errors import DataError
from caloml.observables.grid import profile_moments, project, r9_from_projection
from caloml.units import LCD_STORED_PER_GEV

__all__ = ["EXPERT_FEATURE_KEYS", "HIT_THRESHOLD_GEV", "HIT_THRESHOLD_STORED", "expert_features"]

#: Hit threshold of the Triforce feature files, in stored units (50 x GeV).
HIT_THRESHOLD_STORED = 0.1
#: The same threshold in GeV.
HIT_THRESHOLD_GEV = HIT_THRESHOLD_STORED / LCD_STORED_PER_GEV

_MOMENT_ORDERS = 6

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

    ecal = project(ecal_gev, hit_threshold_gev=HIT_THRESHOLD_GEV)
    hcal = project(hcal_gev, hit_threshold_gev=HIT_THRESHOLD_GEV)
    ecal_e = ecal.total
    hcal_e = hcal.total
    assert ecal.hits is not None and hcal.hits is not None  # noqa: PT018 - project() was given a threshold
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
    for prefix, projections in (("ECAL", ecal), ("HCAL", hcal)):
        for axis, profile in (("X", projections.x), ("Y", projections.y), ("Z", projections.z)):
            values = profile_moments(profile, _MOMENT_ORDERS)
            for order in range(1, _MOMENT_ORDERS + 1):
                features[f"{prefix}moment{axis}{order}"] = values[:, order - 1]
    features["R9"] = r9_from_projection(ecal.xy)
    return {key: np.asarray(features[key], dtype=np.float32) for key in EXPERT_FEATURE_KEYS}


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(np.shape(numerator))
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _layer(profile: np.ndarray, index: int) -> np.ndarray:
    """Energy of one layer of longitudinal profiles (N, nz); 0 if there is no such layer."""
    return profile[:, index] if profile.shape[1] > index else np.zeros(profile.shape[0])
