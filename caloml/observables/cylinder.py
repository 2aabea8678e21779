"""Shower observables of cylindrical (CaloChallenge) showers.

Showers have shape (N, n_layers, n_alpha, n_radial) with voxel energies in GeV (the CaloChallenge files store
MeV; the readers convert) and come with their :class:`caloml.geometry.CylindricalCalorimeter`. Voxel positions
are the bin centres: radius ``geometry.radial_centres_mm`` (mm) and angle ``geometry.alpha_centres_rad``;
transverse coordinates are x = r_mid cos(alpha_mid), y = r_mid sin(alpha_mid) (mm).

All functions are vectorized over the batch. Layers without energy give 0 centres and widths, an event
without energy gives 0 ratios; never NaN. Energies and lengths are returned as float64. See ``docs/evaluation.md``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from caloml.errors import DataError
from caloml.geometry import CylindricalCalorimeter
from caloml.observables.metrics import histogram_per_event

__all__ = [
    "apply_threshold",
    "centres_of_energy",
    "energy_per_layer",
    "etot_over_einc",
    "layer_centre_and_width",
    "radial_centre",
    "radial_width",
    "sparsity_per_layer",
    "voxel_spectrum",
    "widths",
]

Coordinate = Literal["x", "y", "r"]


def energy_per_layer(showers: np.ndarray, geometry: CylindricalCalorimeter | None = None) -> np.ndarray:
    """Energy of each layer, shape (N, n_layers), GeV. With ``geometry``, the shower shape is checked against it."""
    showers = _as_showers(showers, geometry)
    return showers.sum(axis=(2, 3), dtype=np.float64)


def layer_centre_and_width(
    showers: np.ndarray, geometry: CylindricalCalorimeter, coordinate: Coordinate
) -> tuple[np.ndarray, np.ndarray]:
    """Energy-weighted centre and width (standard deviation) of each layer along one coordinate (mm).

    ``coordinate`` is "x" (r cos alpha), "y" (r sin alpha) or "r" (the radius). Returns ``(centre, width)``,
    each of shape (N, n_layers); 0 for a layer without energy.
    """
    showers = _as_showers(showers, geometry)
    position = _voxel_coordinate(geometry, coordinate)  # (n_alpha, n_radial)
    energy = showers.sum(axis=(2, 3), dtype=np.float64)
    first = np.einsum("nlar,ar->nl", showers, position, dtype=np.float64)
    second = np.einsum("nlar,ar->nl", showers, position**2, dtype=np.float64)
    has_energy = energy != 0
    centre = np.zeros_like(energy)
    mean_square = np.zeros_like(energy)
    np.divide(first, energy, out=centre, where=has_energy)
    np.divide(second, energy, out=mean_square, where=has_energy)
    width = np.sqrt(np.maximum(mean_square - centre**2, 0.0))  # rounding can make a zero variance negative
    return centre, width


def centres_of_energy(showers: np.ndarray, geometry: CylindricalCalorimeter) -> tuple[np.ndarray, np.ndarray]:
    """Centres of energy of each layer in x and in y, each of shape (N, n_layers), mm."""
    return (
        layer_centre_and_width(showers, geometry, "x")[0],
        layer_centre_and_width(showers, geometry, "y")[0],
    )


def widths(showers: np.ndarray, geometry: CylindricalCalorimeter) -> tuple[np.ndarray, np.ndarray]:
    """Widths (energy-weighted standard deviations) of each layer in x and in y, each (N, n_layers), mm."""
    return (
        layer_centre_and_width(showers, geometry, "x")[1],
        layer_centre_and_width(showers, geometry, "y")[1],
    )


def radial_centre(showers: np.ndarray, geometry: CylindricalCalorimeter) -> np.ndarray:
    """Energy-weighted mean radius of each layer, shape (N, n_layers), mm."""
    return layer_centre_and_width(showers, geometry, "r")[0]


def radial_width(showers: np.ndarray, geometry: CylindricalCalorimeter) -> np.ndarray:
    """Energy-weighted standard deviation of the radius of each layer, shape (N, n_layers), mm."""
    return layer_centre_and_width(showers, geometry, "r")[1]


def sparsity_per_layer(
    showers: np.ndarray, geometry: CylindricalCalorimeter, threshold_gev: float | None = None
) -> np.ndarray:
    """Fraction of the voxels of each layer that survive the readout threshold, shape (N, n_layers).

    A voxel survives when it is non-zero and at least ``threshold_gev`` (GeV; default the geometry's
    ``threshold_gev``), that is when :func:`apply_threshold` keeps it.
    """
    showers = _as_showers(showers, geometry)
    threshold = geometry.threshold_gev if threshold_gev is None else threshold_gev
    kept = (showers >= threshold) & (showers != 0)
    return kept.sum(axis=(2, 3)) / float(showers.shape[2] * showers.shape[3])


def voxel_spectrum(showers: np.ndarray, bin_edges_gev: np.ndarray) -> np.ndarray:
    """Histogram of the voxel energies of each event, counts of shape (N, B) for ``bin_edges_gev`` (B + 1,), GeV.

    ``np.histogram`` semantics; voxels outside the edges are not counted. Sum over axis 0 for the whole sample.
    """
    showers = _as_showers(showers)
    return histogram_per_event(showers, bin_edges_gev)


def etot_over_einc(showers: np.ndarray, incident_energy_gev: np.ndarray | float) -> np.ndarray:
    """Total deposited over incident energy, shape (N,); ``incident_energy_gev`` (N,), (N, 1) or scalar (GeV).

    0 where the incident energy is 0.
    """
    showers = _as_showers(showers)
    total = showers.reshape(showers.shape[0], math.prod(showers.shape[1:])).sum(axis=1, dtype=np.float64)
    incident = np.asarray(incident_energy_gev, dtype=np.float64)
    if incident.ndim == 2 and incident.shape[1] == 1:
        incident = incident[:, 0]
    incident = np.broadcast_to(incident, total.shape)
    out = np.zeros_like(total)
    np.divide(total, incident, out=out, where=incident != 0)
    return out


def apply_threshold(showers: np.ndarray, threshold_gev: float) -> np.ndarray:
    """Copy of ``showers`` (any shape, GeV) with the voxels below ``threshold_gev`` (GeV) set to 0.

    Voxels equal to the threshold are kept, as in the official CaloChallenge evaluation.
    """
    showers = np.asarray(showers)
    return np.where(showers < threshold_gev, np.zeros((), dtype=showers.dtype), showers)


def _as_showers(showers: np.ndarray, geometry: CylindricalCalorimeter | None = None) -> np.ndarray:
    showers = np.asarray(showers)
    if showers.ndim != 4:
        raise DataError(f"expected showers of shape (N, n_layers, n_alpha, n_radial), got {showers.shape}")
    if geometry is not None and showers.shape[1:] != geometry.shape:
        raise DataError(
            f"showers of shape {showers.shape[1:]} per event do not match geometry {geometry.name} {geometry.shape}"
        )
    if not np.issubdtype(showers.dtype, np.floating):
        showers = showers.astype(np.float64)
    return showers


def _voxel_coordinate(geometry: CylindricalCalorimeter, coordinate: Coordinate) -> np.ndarray:
    radius = np.asarray(geometry.radial_centres_mm, dtype=np.float64)[None, :]
    alpha = np.asarray(geometry.alpha_centres_rad, dtype=np.float64)[:, None]
    if coordinate == "x":
        return radius * np.cos(alpha)
    if coordinate == "y":
        return radius * np.sin(alpha)
    if coordinate == "r":
        return np.broadcast_to(radius, (alpha.shape[0], radius.shape[1]))
    raise DataError(f"coordinate must be 'x', 'y' or 'r', got {coordinate!r}")
