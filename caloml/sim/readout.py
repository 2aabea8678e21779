"""Readout: bin spots into the cells of the Cartesian LCD windows or the CaloChallenge cylinder.

The LCD windows are centred on the shower barycentre as in the real data. The cell grid has a random offset
with respect to the entry point; spots are first binned into a wider grid anchored on the particle's axis,
the barycentre of the ECAL cells is computed there, and the 51 x 51 window whose central cell contains it is
cut out (the HCAL 11 x 11 window is centred on the barycentre carried along the particle's direction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloml.geometry import CartesianCalorimeter, CylindricalCalorimeter
from caloml.sim.detector import SimulationDetector
from caloml.sim.spots import Spots


@dataclass(frozen=True)
class WideGrid:
    """Cells of a Cartesian section binned in a window wider than the stored one, around an anchor point.

    ``cells`` has shape (B, n_x + 2 margin_x, n_y + 2 margin_y, n_layers) (GeV); cell (i, j) spans
    x in anchor_x + offset_x + (i - centre_x) * cell + [0, cell), likewise in y, with centre = n // 2 + margin.
    """

    cells: np.ndarray
    grid: CartesianCalorimeter
    anchor_mm: np.ndarray  # (B, 2)
    offset_mm: np.ndarray  # (B, 2)
    margin: tuple[int, int]

    @property
    def centre_index(self) -> tuple[int, int]:
        """Index of the cell that contains the anchor when the offset is 0."""
        return self.grid.n_x // 2 + self.margin[0], self.grid.n_y // 2 + self.margin[1]

    def cell_index_of(self, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
        """Wide-grid indices (B, 2) of the cells containing the points (x_mm, y_mm), each shape (B,)."""
        cx, cy = self.centre_index
        cell = self.grid.cell_mm
        ix = np.floor((x_mm - self.anchor_mm[:, 0] - self.offset_mm[:, 0]) / cell) + cx
        iy = np.floor((y_mm - self.anchor_mm[:, 1] - self.offset_mm[:, 1]) / cell) + cy
        return np.stack([ix, iy], axis=1).astype(np.int64)

    def cell_centres_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres of the wide-grid cells, shapes (B, nx_wide) and (B, ny_wide), mm."""
        cx, cy = self.centre_index
        cell = self.grid.cell_mm
        x = (np.arange(self.cells.shape[1]) - cx + 0.5) * cell
        y = (np.arange(self.cells.shape[2]) - cy + 0.5) * cell
        base = self.anchor_mm + self.offset_mm
        return base[:, :1] + x[None, :], base[:, 1:] + y[None, :]

    def crop(self, centre_index: np.ndarray) -> np.ndarray:
        """The stored window whose central cell is ``centre_index`` (B, 2), clipped to the wide grid.

        Returns shape (B, n_x, n_y, n_layers), float32.
        """
        nx, ny = self.grid.n_x, self.grid.n_y
        low_x = np.clip(centre_index[:, 0] - nx // 2, 0, self.cells.shape[1] - nx)
        low_y = np.clip(centre_index[:, 1] - ny // 2, 0, self.cells.shape[2] - ny)
        event = np.arange(self.cells.shape[0])[:, None, None]
        ix = (low_x[:, None] + np.arange(nx)[None, :])[:, :, None]
        iy = (low_y[:, None] + np.arange(ny)[None, :])[:, None, :]
        return self.cells[event, ix, iy]


def bin_wide(
    spots: Spots,
    detector: SimulationDetector,
    section: int,
    anchor_mm: np.ndarray,
    offset_mm: np.ndarray,
    margin: tuple[int, int],
) -> WideGrid:
    """Sum the spots of ``section`` into a wide grid around ``anchor_mm`` (B, 2) with cell offsets ``offset_mm``."""
    grid = detector.sections[section]
    n_events = anchor_mm.shape[0]
    mask = detector.section[spots.layer] == section
    event = spots.event[mask]
    layer = detector.section_layer[spots.layer[mask]]
    wide_x, wide_y = grid.n_x + 2 * margin[0], grid.n_y + 2 * margin[1]
    cx, cy = grid.n_x // 2 + margin[0], grid.n_y // 2 + margin[1]
    base = anchor_mm + offset_mm
    scale = np.float32(1.0 / grid.cell_mm)
    ix = np.floor((spots.x_mm[mask] - base[event, 0]) * scale).astype(np.int64) + cx
    iy = np.floor((spots.y_mm[mask] - base[event, 1]) * scale).astype(np.int64) + cy
    inside = (ix >= 0) & (ix < wide_x) & (iy >= 0) & (iy < wide_y)
    n_layers = grid.stack.n_layers
    flat = ((event * wide_x + ix) * wide_y + iy) * n_layers + layer
    cells = np.bincount(
        flat[inside], weights=spots.visible_gev[mask][inside], minlength=n_events * wide_x * wide_y * n_layers
    )
    cells = cells.astype(np.float32).reshape(n_events, wide_x, wide_y, n_layers)
    return WideGrid(cells, grid, anchor_mm, offset_mm, margin)


@dataclass(frozen=True)
class Barycentre:
    """Energy-weighted barycentre of cells per event, arrays of shape (B,), mm: ``x_mm``, ``y_mm`` transverse
    relative to the entry point, ``depth_mm`` behind the ECAL front (sensor-plane depths)."""

    x_mm: np.ndarray
    y_mm: np.ndarray
    depth_mm: np.ndarray


def barycentre(wide: WideGrid, sensor_depth_mm: np.ndarray) -> Barycentre:
    """Barycentre of the wide grid's cells; empty events give the anchor."""
    x_centres, y_centres = wide.cell_centres_mm()
    per_x = wide.cells.sum(axis=(2, 3), dtype=np.float64)
    per_y = wide.cells.sum(axis=(1, 3), dtype=np.float64)
    per_z = wide.cells.sum(axis=(1, 2), dtype=np.float64)
    total = per_z.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    x = np.where(total > 0, (per_x * x_centres).sum(axis=1) / safe, wide.anchor_mm[:, 0])
    y = np.where(total > 0, (per_y * y_centres).sum(axis=1) / safe, wide.anchor_mm[:, 1])
    depth = (per_z * sensor_depth_mm[None, :]).sum(axis=1) / safe
    return Barycentre(x, y, depth)


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
