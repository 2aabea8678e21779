"""Readout: bin spots into the cells of the Cartesian LCD windows or the CaloChallenge cylinder.

The LCD windows are centred on the shower barycentre as in the real data: the cell grid has a random offset
with respect to the entry point, and the stored 51 x 51 window is the block of cells whose central cell contains
the energy-weighted barycentre of the ECAL deposits (the HCAL 11 x 11 window is centred on that barycentre
carried along the particle's direction to the HCAL face). See ``docs/simulator.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloml.geometry import CartesianCalorimeter, CylindricalCalorimeter
from caloml.sim.detector import SimulationDetector
from caloml.sim.spots import Spots


@dataclass(frozen=True)
class Barycentre:
    """Energy-weighted barycentre of the first section's spots per event, arrays of shape (B,), mm: ``x_mm``,
    ``y_mm`` transverse relative to the entry point, ``depth_mm`` behind the front (sensor-plane depths)."""

    x_mm: np.ndarray
    y_mm: np.ndarray
    depth_mm: np.ndarray


def barycentre(spots: Spots, detector: SimulationDetector, n_events: int) -> Barycentre:
    """Barycentre of the spots in the first section (the ECAL); events without any give the entry point."""
    weight = np.where(detector.section[spots.layer] == 0, spots.visible_gev, 0.0)
    total = np.bincount(spots.event, weights=weight, minlength=n_events)
    safe = np.where(total > 0, total, 1.0)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(spots.event, weights=weight * values, minlength=n_events) / safe

    return Barycentre(mean(spots.x_mm), mean(spots.y_mm), mean(detector.sensor_depth_mm[spots.layer]))


@dataclass(frozen=True)
class Window:
    """Where one section's stored window lies for each event, arrays of shape (B,), mm.

    The cell grid is offset by ``offset_x_mm``, ``offset_y_mm`` (in [0, cell)) from the entry point; the window is
    the block of cells whose central cell contains (``centre_x_mm``, ``centre_y_mm``).
    """

    section: int
    centre_x_mm: np.ndarray
    centre_y_mm: np.ndarray
    offset_x_mm: np.ndarray
    offset_y_mm: np.ndarray


def bin_windows(spots: Spots, detector: SimulationDetector, windows: list[Window], n_events: int) -> list[np.ndarray]:
    """Sum the spots of each window's section into its stored window.

    Returns:
        one array per window, shape (B, n_x, n_y, n_layers), float32, GeV.
    """
    spot_section = detector.section[spots.layer]
    out = []
    for window in windows:
        grid = detector.sections[window.section]
        assert isinstance(grid, CartesianCalorimeter)
        mine = spot_section == window.section
        if np.count_nonzero(mine) > mine.size // 2:
            # Most spots are in this section: work on all of them (no copies) and mask at the end.
            event, layer, x, y, energy = spots.event, spots.layer, spots.x_mm, spots.y_mm, spots.visible_gev
            layer = detector.section_layer[layer]
        else:
            event, layer = spots.event[mine], detector.section_layer[spots.layer[mine]]
            x, y, energy = spots.x_mm[mine], spots.y_mm[mine], spots.visible_gev[mine]
            mine = np.ones(event.size, bool)
        inv = 1.0 / grid.cell_mm
        # Cell index in the window = floor((position - offset) / cell) - (index of the window's first cell).
        first_x = np.floor((window.centre_x_mm - window.offset_x_mm) * inv) - grid.n_x // 2
        first_y = np.floor((window.centre_y_mm - window.offset_y_mm) * inv) - grid.n_y // 2
        shift_x = (window.offset_x_mm * inv + first_x).astype(np.float32)
        shift_y = (window.offset_y_mm * inv + first_y).astype(np.float32)
        ix = np.floor(x * np.float32(inv) - shift_x[event]).astype(np.int64)
        iy = np.floor(y * np.float32(inv) - shift_y[event]).astype(np.int64)
        inside = mine & (ix >= 0) & (ix < grid.n_x) & (iy >= 0) & (iy < grid.n_y)
        flat = ((event * grid.n_x + ix) * grid.n_y + iy) * grid.stack.n_layers + layer
        cells = np.bincount(flat[inside], weights=energy[inside], minlength=n_events * grid.n_cells)
        out.append(cells.astype(np.float32).reshape(n_events, *grid.shape))
    return out


def bin_cylindrical(spots: Spots, grid: CylindricalCalorimeter, n_events: int) -> np.ndarray:
    """Sum the spots into (layer, angular bin, radial bin) voxels around the entry axis; energy beyond the last
    radial edge is lost. Returns shape (B, n_layers, n_alpha, n_radial), float32, GeV."""
    radius = np.hypot(spots.x_mm, spots.y_mm)
    alpha = np.mod(np.arctan2(spots.y_mm, spots.x_mm), 2.0 * np.pi)
    edges = np.asarray(grid.radial_edges_mm, dtype=radius.dtype)
    ir = np.searchsorted(edges, radius, side="right") - 1
    ia = np.minimum((alpha * (grid.n_alpha / (2.0 * np.pi))).astype(np.int64), grid.n_alpha - 1)
    inside = ir < grid.n_radial
    n_layers = grid.stack.n_layers
    flat = ((spots.event * n_layers + spots.layer) * grid.n_alpha + ia) * grid.n_radial + ir
    voxels = np.bincount(flat[inside], weights=spots.visible_gev[inside], minlength=n_events * grid.n_voxels)
    return voxels.astype(np.float32).reshape(n_events, *grid.shape)
