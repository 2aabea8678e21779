"""Energy spots: the point deposits every simulated shower is made of before the readout bins them.

A spot has an event index, a readout layer (index into :class:`~caloml.sim.detector.SimulationDetector`), a
transverse position in that layer's sensor plane relative to the particle's entry point (mm; x along the
window's first axis, y along the second, the axis that inclined particles move along) and a visible energy (GeV).
See ``docs/simulator.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spots:
    """Arrays of shape (S,): ``event`` and ``layer`` (int64), ``x_mm``, ``y_mm`` (float32) and ``visible_gev``.

    ``halo`` marks a set of soft-halo deposits; ``n_core`` is the number of leading spots that are not halo
    (None: no such split is known), so that the window can be centred on the shower core without a pass over the
    many halo deposits.
    """

    event: np.ndarray
    layer: np.ndarray
    x_mm: np.ndarray
    y_mm: np.ndarray
    visible_gev: np.ndarray
    halo: bool = False
    n_core: int | None = None

    @property
    def size(self) -> int:
        """Number of spots."""
        return int(self.event.size)

    def head(self, n: int) -> Spots:
        """The first ``n`` spots (views, no copy)."""
        return Spots(self.event[:n], self.layer[:n], self.x_mm[:n], self.y_mm[:n], self.visible_gev[:n])

    @staticmethod
    def concatenate(parts: list[Spots]) -> Spots:
        """All spots of ``parts`` in one set, the core parts first (their count is ``n_core``)."""
        parts = [p for p in parts if p.size]
        ordered = [p for p in parts if not p.halo] + [p for p in parts if p.halo]
        n_core = sum(p.size for p in parts if not p.halo)
        if not ordered:
            empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0)
            return Spots(empty_i, empty_i, empty_f, empty_f, empty_f, n_core=0)
        event, layer, x, y, energy = (np.concatenate([getattr(p, name) for p in ordered]) for name in _ARRAY_FIELDS)
        return Spots(event, layer, x, y, energy, n_core=n_core)


_ARRAY_FIELDS = ("event", "layer", "x_mm", "y_mm", "visible_gev")


def group_normalized_weights(rng: np.random.Generator, group: np.ndarray, n_groups: int, shape: float) -> np.ndarray:
    """Random weights (Gamma(shape)) that sum to 1 within each group; ``group`` has shape (S,), values < n_groups."""
    weights = rng.gamma(shape, size=group.shape)
    totals = np.bincount(group, weights=weights, minlength=n_groups)
    return weights / np.where(totals > 0, totals, 1.0)[group]


def place_in_sensor_plane(
    rng: np.random.Generator,
    radius_mm: np.ndarray,
    axis_x_mm: np.ndarray,
    axis_y_mm: np.ndarray,
    sin_theta: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Transverse positions of spots at ``radius_mm`` from an inclined shower axis, in the layer's sensor plane.

    A lateral offset perpendicular to an axis inclined by theta in the y-z plane meets the sensor plane
    stretched by 1 / sin(theta) along y; the azimuth is uniform. All arguments have shape (S,).
    """
    azimuth = rng.random(radius_mm.shape, dtype=np.float32) * np.float32(2.0 * np.pi)
    radius = radius_mm.astype(np.float32, copy=False)
    x = radius * np.cos(azimuth)
    x += axis_x_mm.astype(np.float32, copy=False)
    y = radius * np.sin(azimuth)
    y /= sin_theta.astype(np.float32, copy=False)
    y += axis_y_mm.astype(np.float32, copy=False)
    return x, y


def repeat_by_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a (M, L) table of counts, the (row, column) of every one of its ``counts.sum()`` items."""
    flat = np.repeat(np.arange(counts.size), counts.ravel())
    return np.divmod(flat, counts.shape[1])
