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


#: Spots per block of the binning pass: the block's temporaries stay in the CPU cache.
_BLOCK_SPOTS = 1 << 15


@dataclass(frozen=True)
class _WindowCells:
    """Every spot's cell in one index space of all the windows (``outside`` for spots outside every window)."""

    spot_cell: np.ndarray
    base: np.ndarray
    outside: int


def _window_cells(
    spots: Spots, detector: SimulationDetector, windows: list[Window], n_events: int, *, cell_index: bool = True
) -> _WindowCells:
    """The cell of every spot in its section's window, in one pass over the spots by blocks that stay in the CPU
    cache; window ``w``'s cells are ``base[section] + event * n_cells + ((ix * n_y) + iy) * n_layers + layer``.
    Without ``cell_index``, only whether a spot is inside: 0 inside, ``outside`` outside."""
    n_sections = len(detector.sections)
    # Per-section tables, gathered per spot. A section without a window keeps n_x = 0: none of its spots is inside.
    inv = np.zeros(n_sections, np.float32)
    n_x = np.zeros(n_sections, np.int64)
    n_y = np.zeros(n_sections, np.int64)
    x_stride = np.zeros(n_sections, np.int64)
    y_stride = np.zeros(n_sections, np.int64)
    event_stride = np.zeros(n_sections, np.int64)
    base = np.zeros(n_sections, np.int64)
    shift_x = np.zeros((n_sections, n_events), np.float32)
    shift_y = np.zeros((n_sections, n_events), np.float32)
    total = 0
    for window in windows:
        grid = detector.sections[window.section]
        assert isinstance(grid, CartesianCalorimeter)
        k = window.section
        cell_inv = 1.0 / grid.cell_mm
        # Cell index in the window = floor((position - offset) / cell) - (index of the window's first cell).
        first_x = np.floor((window.centre_x_mm - window.offset_x_mm) * cell_inv) - grid.n_x // 2
        first_y = np.floor((window.centre_y_mm - window.offset_y_mm) * cell_inv) - grid.n_y // 2
        shift_x[k] = (window.offset_x_mm * cell_inv + first_x).astype(np.float32)
        shift_y[k] = (window.offset_y_mm * cell_inv + first_y).astype(np.float32)
        inv[k], n_x[k], n_y[k] = np.float32(cell_inv), grid.n_x, grid.n_y
        x_stride[k], y_stride[k] = grid.n_y * grid.stack.n_layers, grid.stack.n_layers
        event_stride[k], base[k] = grid.n_cells, total
        total += n_events * grid.n_cells
    spot_cell = np.empty(spots.size, np.int64)
    for start in range(0, spots.size, _BLOCK_SPOTS):
        block = slice(start, start + _BLOCK_SPOTS)
        event, layer = spots.event[block], spots.layer[block]
        section = detector.section[layer]
        row = section * n_events + event
        # Cell coordinates in cells from the window's corner, float32 (the spots' precision). A spot is inside
        # iff 0 <= coordinate < n on both axes (the same test as on floor(coordinate)); the truncation of an
        # inside coordinate to an integer is then its floor.
        fx = spots.x_mm[block] * inv[section]
        fx -= shift_x.ravel()[row]
        fy = spots.y_mm[block] * inv[section]
        fy -= shift_y.ravel()[row]
        inside = (fx >= 0) & (fx < n_x[section])
        inside &= fy >= 0
        inside &= fy < n_y[section]
        if not cell_index:
            spot_cell[block] = np.where(inside, 0, total)
            continue
        cell = base[section] + event * event_stride[section]
        cell += fx.astype(np.int64) * x_stride[section]
        cell += fy.astype(np.int64) * y_stride[section]
        cell += detector.section_layer[layer]
        np.copyto(spot_cell[block], total, where=~inside)
        np.copyto(spot_cell[block], cell, where=inside)
    return _WindowCells(spot_cell, base, total)


def bin_windows(spots: Spots, detector: SimulationDetector, windows: list[Window], n_events: int) -> list[np.ndarray]:
    """Sum the spots of each window's section into its stored window.

    One pass over the spots for all the windows (:func:`_window_cells`), then one ``np.bincount``: each cell sums
    its spots in their order, in float64, then rounds to float32.

    Returns:
        one array per window, shape (B, n_x, n_y, n_layers), float32, GeV.
    """
    cells = _window_cells(spots, detector, windows, n_events)
    sums = np.bincount(cells.spot_cell, weights=spots.visible_gev, minlength=cells.outside + 1)
    out = []
    for window in windows:
        grid = detector.sections[window.section]
        assert isinstance(grid, CartesianCalorimeter)
        first = int(cells.base[window.section])
        out.append(sums[first : first + n_events * grid.n_cells].astype(np.float32).reshape(n_events, *grid.shape))
    return out


def window_sums(spots: Spots, detector: SimulationDetector, windows: list[Window], n_events: int) -> np.ndarray:
    """Energy of each event in each window, shape (B, windows), float64, GeV, without filling any cell.

    The same spots as :func:`bin_windows` counts (the same inside test), summed per event in float64 in another
    order: the sums of the float32 cells differ from these by float32 rounding only (a relative 2^-23 at most,
    all energies being >= 0).
    """
    cells = _window_cells(spots, detector, windows, n_events, cell_index=False)
    window_of_section = np.full(len(detector.sections), len(windows), np.int64)
    for w, window in enumerate(windows):
        window_of_section[window.section] = w
    key = window_of_section[detector.section[spots.layer]] * n_events + spots.event
    np.copyto(key, len(windows) * n_events, where=cells.spot_cell == cells.outside)
    sums = np.bincount(key, weights=spots.visible_gev, minlength=(len(windows) + 1) * n_events)
    return sums[: len(windows) * n_events].reshape(len(windows), n_events).T.copy()


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
