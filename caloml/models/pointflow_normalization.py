"""Normalization statistics of a CaloPointFlow training set and the incident-energy range a model accepts.

:class:`PointCloudNormalization` holds the per-dimension means and standard deviations of the points, of log n_hits,
of the log total and log incident energies, and the trained incident-energy range (GeV); it is stored in the
model's config. :func:`check_incident_energy_range` is the one incident-energy check of the PointFlow code (the
model, its sampler and its export use it). NumPy only. See ``docs/pointflow.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from caloml.errors import CalomlError
from caloml.float32_bounds import float32_inside

__all__ = [
    "POINT_DIM",
    "PointCloudNormalization",
    "check_incident_energy_range",
    "incident_energy_bounds",
    "incident_energy_bounds_float32",
]

#: Dimensions of a point: three continuous cell coordinates and log(E / GeV).
POINT_DIM = 4
#: Smallest standard deviation of a normalization statistic (a constant feature would otherwise divide by zero).
_STD_FLOOR = 1e-2
#: Relative tolerance of the incident-energy range check: [low * (1 - t), high * (1 + t)] (float32 round-off).
_RANGE_TOLERANCE = 1e-6


def _floats(values: Sequence[float], n: int, name: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if len(out) != n:
        raise CalomlError(f"PointCloudNormalization: {name} needs {n} values, got {len(out)}")
    return out


@dataclass(frozen=True)
class PointCloudNormalization:
    """Normalization statistics of a point-cloud training set, stored in the model's config.

    Points are normalized per dimension, ``(x - point_mean) / point_std`` (cell coordinates and log(E / GeV));
    log n_hits, log(total energy / GeV) and log(incident energy / GeV) likewise with their means and standard
    deviations. ``incident_energy_range_gev`` is the (min, max) incident energy of the training data (GeV), the
    range the model may be asked to generate. Standard deviations are floored at 0.01.
    """

    grid_shape: tuple[int, int, int]
    point_mean: tuple[float, float, float, float]
    point_std: tuple[float, float, float, float]
    log_n_hits_mean: float
    log_n_hits_std: float
    log_total_energy_mean: float
    log_total_energy_std: float
    incident_energy_range_gev: tuple[float, float]
    log_incident_mean: float
    log_incident_std: float

    def __post_init__(self) -> None:
        grid = tuple(int(n) for n in self.grid_shape)
        if len(grid) != 3 or min(grid) < 1:
            raise CalomlError(f"PointCloudNormalization: grid_shape must be 3 positive ints, got {self.grid_shape}")
        object.__setattr__(self, "grid_shape", grid)
        object.__setattr__(self, "point_mean", _floats(self.point_mean, POINT_DIM, "point_mean"))
        object.__setattr__(self, "point_std", _floats(self.point_std, POINT_DIM, "point_std"))
        object.__setattr__(
            self, "incident_energy_range_gev", _floats(self.incident_energy_range_gev, 2, "incident_energy_range_gev")
        )
        for name in ("log_n_hits_mean", "log_n_hits_std", "log_total_energy_mean", "log_total_energy_std"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("log_incident_mean", "log_incident_std"):
            object.__setattr__(self, name, float(getattr(self, name)))
        scalars = [getattr(self, f.name) for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), float)]
        if not all(math.isfinite(v) for v in [*self.point_mean, *self.point_std, *scalars]):
            raise CalomlError("PointCloudNormalization: statistics must be finite")
        stds = [*self.point_std, self.log_n_hits_std, self.log_total_energy_std, self.log_incident_std]
        if min(stds) <= 0:
            raise CalomlError(f"PointCloudNormalization: standard deviations must be positive, got {stds}")
        low, high = self.incident_energy_range_gev
        if not 0 < low <= high:
            raise CalomlError(f"PointCloudNormalization: bad incident_energy_range_gev ({low}, {high})")

    @classmethod
    def from_data(
        cls,
        points: Any,
        mask: Any,
        n_hits: Any,
        total_energy_gev: Any,
        incident_energy_gev: Any,
        grid_shape: Sequence[int],
    ) -> PointCloudNormalization:
        """Statistics of a training set (NumPy arrays).

        ``points`` (N, P, 4) (continuous cell coordinates, log GeV), ``mask`` (N, P) bool, ``n_hits`` (N,),
        ``total_energy_gev`` (N,) GeV, ``incident_energy_gev`` (N,) GeV. Raises :class:`CalomlError` on
        inconsistent shapes, non-finite real points, zero-hit showers and non-positive or non-finite energies.
        """
        points = np.asarray(points, dtype=np.float64)
        mask = np.asarray(mask, dtype=bool)
        n_hits = np.asarray(n_hits).reshape(-1)
        total = np.asarray(total_energy_gev, dtype=np.float64).reshape(-1)
        incident = np.asarray(incident_energy_gev, dtype=np.float64).reshape(-1)
        n = len(points)
        if points.ndim != 3 or points.shape[-1] != POINT_DIM or mask.shape != points.shape[:2]:
            raise CalomlError(f"points {points.shape} must be (N, P, 4) and mask {mask.shape} (N, P)")
        if n == 0 or not len(n_hits) == len(total) == len(incident) == n:
            raise CalomlError(
                f"need the same number (> 0) of showers: points {n}, n_hits {len(n_hits)}, "
                f"total_energy {len(total)}, incident_energy {len(incident)}"
            )
        empty = np.flatnonzero((n_hits < 1) | ~mask.any(axis=1))
        if empty.size:
            raise CalomlError(f"shower {empty[0]} has no hits ({empty.size} zero-hit showers); drop them first")
        bad = np.flatnonzero(~np.isfinite(points).all(axis=2) & mask)
        if bad.size:
            raise CalomlError(f"non-finite point in shower {bad[0] // mask.shape[1]} (NaN or inf in the point cloud)")
        for name, values in (("total_energy_gev", total), ("incident_energy_gev", incident)):
            bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
            if bad.size:
                raise CalomlError(f"{name} must be finite and positive; got {values[bad[0]]} at shower {bad[0]}")
        real = points[mask]

        def stats(values: np.ndarray) -> tuple[float, float]:
            return float(np.mean(values)), max(float(np.std(values)), _STD_FLOOR)

        log_n = stats(np.log(n_hits.astype(np.float64)))
        log_total = stats(np.log(total))
        log_incident = stats(np.log(incident))
        point_std = np.maximum(real.std(axis=0), _STD_FLOOR)
        return cls(
            grid_shape=tuple(int(g) for g in grid_shape),  # type: ignore[arg-type]
            point_mean=tuple(float(v) for v in real.mean(axis=0)),  # type: ignore[arg-type]
            point_std=tuple(float(v) for v in point_std),  # type: ignore[arg-type]
            log_n_hits_mean=log_n[0],
            log_n_hits_std=log_n[1],
            log_total_energy_mean=log_total[0],
            log_total_energy_std=log_total[1],
            incident_energy_range_gev=(float(incident.min()), float(incident.max())),
            log_incident_mean=log_incident[0],
            log_incident_std=log_incident[1],
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able dict (tuples as lists)."""
        return {
            f.name: list(value) if isinstance(value := getattr(self, f.name), tuple) else value
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PointCloudNormalization:
        """Inverse of :meth:`to_dict`; raises :class:`CalomlError` on missing or unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing, unknown = names - set(data), set(data) - names
        if missing or unknown:
            raise CalomlError(
                f"PointCloudNormalization: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}"
            )
        values: dict[str, Any] = {
            key: tuple(value) if isinstance(value, (list, tuple)) else value for key, value in data.items()
        }
        return cls(**values)

    @property
    def n_cells(self) -> int:
        """Number of cells of the grid (the largest possible n_hits)."""
        return int(np.prod(self.grid_shape))


def incident_energy_bounds(trained_range_gev: Sequence[float]) -> tuple[float, float]:
    """The incident energies (GeV) a model accepts: its trained range widened by a relative ``_RANGE_TOLERANCE``
    (1e-6) of each end, ``[low * (1 - 1e-6), high * (1 + 1e-6)]``: float32 round-off, never extrapolation."""
    low, high = (float(v) for v in trained_range_gev)
    return low * (1.0 - _RANGE_TOLERANCE), high * (1.0 + _RANGE_TOLERANCE)


def incident_energy_bounds_float32(trained_range_gev: Sequence[float]) -> tuple[np.float32, np.float32]:
    """float32 bounds for graph-side checks (export signatures): :func:`incident_energy_bounds` rounded inwards,
    so that a float32 energy passes exactly when :func:`check_incident_energy_range` accepts it."""
    low, high = incident_energy_bounds(trained_range_gev)
    return float32_inside(low, high)


def check_incident_energy_range(
    incident_energy_gev: Any, trained_range_gev: Sequence[float], what: str = "incident energy"
) -> None:
    """Raise a one-line :class:`CalomlError` unless every value (GeV) is finite and inside
    :func:`incident_energy_bounds` of the trained range: the one incident-energy check of the PointFlow code."""
    energy = np.atleast_1d(np.asarray(incident_energy_gev, dtype=np.float64)).reshape(-1)
    low, high = incident_energy_bounds(trained_range_gev)
    bad = np.flatnonzero(~(np.isfinite(energy) & (energy >= low) & (energy <= high)))
    if bad.size:
        trained_low, trained_high = (float(v) for v in trained_range_gev)
        raise CalomlError(
            f"{what} {energy[bad[0]]:g} GeV at index {bad[0]} is outside the range the PointFlow model was trained "
            f"on, [{trained_low:g}, {trained_high:g}] GeV ({bad.size} value(s))"
        )
