"""Per-event shower features of a file, computed in one streamed pass over its cells.

:func:`extract_features` reads a file chunk by chunk (the readers of :mod:`caloml.data`; memory stays bounded by
one chunk of cells plus the small per-event features) and returns a :class:`ShowerFeatures`:

* ``observables`` - named per-event features, each (N,) (a scalar per shower) or (N, K) (one value per layer or
  per transverse position), with an :class:`ObservableSpec` giving its label, unit and binning;
* the cell (voxel) energy spectrum of the whole file, on fixed logarithmic edges common to every file;
* optionally the low-level input of the classifier two-sample test for a subset of the events (cells divided by
  the incident energy, pooled for the LCD window; see :func:`low_level_input`).

LCD files (ECAL 51 x 51 x 25 or its 25 x 25 crop, GeV; the HCAL is not evaluated, generators produce the ECAL):
the observables of the 3DGAN validation (3DGAN, arXiv:2109.07388) - deposited energy,
sampling fraction, hits above 3e-4 GeV, occupancy, largest cell, measured angle, centres and widths (the first
moment and the square root of the second central moment, in cell indices) along x, y and z, the energy fractions
in the thirds of the depth and in the first layer, R9, and the longitudinal and transverse profiles.

CaloChallenge files (datasets 2 and 3, GeV; the 15.15 keV readout threshold of the official evaluation is applied
to every voxel first): the community's high-level features - energy per layer, centres of energy and widths in x
and y per layer, radial centre and width per layer (mm), sparsity per layer (fraction of voxels above the
threshold), E_tot / E_inc - plus scalar summaries (deposited energy, shower depth and its spread in layers,
number of hit voxels, energy-weighted mean widths) used by the correlation matrices. See ``docs/evaluation.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from caloml.evaluate.inputs import EvaluationInput
from caloml.geometry import CylindricalCalorimeter
from caloml.observables.angle import MEASURED_ANGLE_EMPTY, measured_angle
from caloml.observables.cylinder import apply_threshold, etot_over_einc, layer_centre_and_width, sparsity_per_layer
from caloml.observables.grid import hits_above, profile_moments, project, r9_from_projection

__all__ = [
    "CALOCHALLENGE_POOLING",
    "HIT_THRESHOLD_GEV",
    "LCD_POOLING",
    "SPECTRUM_EDGES_GEV",
    "ObservableSpec",
    "ShowerFeatures",
    "extract_features",
    "high_level_input",
    "low_level_input",
    "observable_specs",
]

#: Hit threshold of the 3DGAN paper's hit counts (GeV).
HIT_THRESHOLD_GEV = 3e-4
#: Logarithmic edges of the cell / voxel energy spectrum: 10 bins per decade from 1e-7 to 1e3 GeV.
SPECTRUM_EDGES_GEV = np.logspace(-7.0, 3.0, 101)
#: Sum-pooling of the LCD ECAL (x, y, z) for the low-level classifier input: 51 = 3 x 17, so 3 x 3 cells in x and
#: y become one (17 x 17 x 25 = 7,225 inputs instead of 65,025), the depth is kept. The 25 x 25 crop is not
#: pooled (15,625 inputs).
LCD_POOLING = (3, 3, 1)
#: Pooling (layer, alpha, radius) of the CaloChallenge voxels for the low-level input: none for dataset 2
#: (6,480 voxels), 5 angular bins into one for dataset 3 (40,500 -> 8,100).
CALOCHALLENGE_POOLING = {"calochallenge-2": (1, 1, 1), "calochallenge-3": (1, 5, 1)}


@dataclass(frozen=True)
class ObservableSpec:
    """How an observable is shown and binned.

    Attributes:
        name: key in :attr:`ShowerFeatures.observables`.
        label: axis label, with the unit.
        unit: the unit ("" for a pure number).
        log: histogram on logarithmic bins (energies, counts spanning decades).
        components: None for a scalar per event; else what the K columns are ("layer", "x cell", "y cell").
        scalar_summary: part of the scalar set of the correlation matrices and the high-level classifier input.
    """

    name: str
    label: str
    unit: str = ""
    log: bool = False
    components: str | None = None
    scalar_summary: bool = True


@dataclass
class ShowerFeatures:
    """The features of one file (see the module docstring); arrays have the event axis first."""

    path: Path
    layout: str
    geometry_name: str
    energy_gev: np.ndarray
    theta_rad: np.ndarray | None
    observables: dict[str, np.ndarray]
    specs: dict[str, ObservableSpec]
    spectrum_counts: np.ndarray
    spectrum_edges_gev: np.ndarray = field(default_factory=lambda: SPECTRUM_EDGES_GEV.copy())
    low_level: np.ndarray | None = None
    low_level_indices: np.ndarray | None = None

    @property
    def n_events(self) -> int:
        """Number of showers."""
        return int(self.energy_gev.shape[0])

    def scalar_names(self) -> list[str]:
        """Names of the scalar observables (one value per event)."""
        return [name for name, spec in self.specs.items() if spec.components is None]


def observable_specs(layout: str) -> dict[str, ObservableSpec]:
    """The observables of a layout (``"lcd"`` or ``"calochallenge"``), in report order."""
    if layout == "lcd":
        specs = [
            ObservableSpec("deposited_energy_gev", "E_ECAL [GeV]", "GeV", log=True),
            ObservableSpec("sampling_fraction", "E_ECAL / E_p"),
            ObservableSpec("hits", f"cells above {HIT_THRESHOLD_GEV:g} GeV", "cells"),
            ObservableSpec("occupancy", "fraction of non-zero cells"),
            ObservableSpec("max_cell_energy_gev", "largest cell [GeV]", "GeV", log=True),
            ObservableSpec("measured_angle_rad", "measured angle [rad]", "rad"),
            ObservableSpec("centre_x", "centre in x [cells]", "cells"),
            ObservableSpec("centre_y", "centre in y [cells]", "cells"),
            ObservableSpec("centre_z", "centre in z [layers]", "layers"),
            ObservableSpec("width_x", "width in x [cells]", "cells"),
            ObservableSpec("width_y", "width in y [cells]", "cells"),
            ObservableSpec("width_z", "width in z [layers]", "layers"),
            ObservableSpec("first_third_fraction", "energy fraction, first third of the layers"),
            ObservableSpec("second_third_fraction", "energy fraction, second third of the layers"),
            ObservableSpec("last_third_fraction", "energy fraction, last third of the layers"),
            ObservableSpec("first_layer_fraction", "energy fraction in the first layer"),
            ObservableSpec("r9", "R9 (largest 3x3 / total)"),
            ObservableSpec("longitudinal_profile_gev", "energy per layer [GeV]", "GeV", True, "layer", False),
            ObservableSpec("x_profile_gev", "energy per x cell [GeV]", "GeV", True, "x cell", False),
            ObservableSpec("y_profile_gev", "energy per y cell [GeV]", "GeV", True, "y cell", False),
        ]
    elif layout == "calochallenge":
        specs = [
            ObservableSpec("etot_over_einc", "E_tot / E_inc"),
            ObservableSpec("deposited_energy_gev", "E_tot [GeV]", "GeV", log=True),
            ObservableSpec("hits", "voxels above threshold", "voxels"),
            ObservableSpec("shower_depth", "energy-weighted mean layer", "layers"),
            ObservableSpec("depth_width", "energy-weighted spread of the layer", "layers"),
            ObservableSpec("mean_width_x", "energy-weighted mean layer width in x [mm]", "mm"),
            ObservableSpec("mean_width_y", "energy-weighted mean layer width in y [mm]", "mm"),
            ObservableSpec("mean_radial_width", "energy-weighted mean radial width [mm]", "mm"),
            ObservableSpec("energy_per_layer_gev", "energy per layer [GeV]", "GeV", True, "layer", False),
            ObservableSpec("centre_x_mm", "centre of energy in x [mm]", "mm", False, "layer", False),
            ObservableSpec("centre_y_mm", "centre of energy in y [mm]", "mm", False, "layer", False),
            ObservableSpec("width_x_mm", "width in x [mm]", "mm", False, "layer", False),
            ObservableSpec("width_y_mm", "width in y [mm]", "mm", False, "layer", False),
            ObservableSpec("radial_centre_mm", "radial centre [mm]", "mm", False, "layer", False),
            ObservableSpec("radial_width_mm", "radial width [mm]", "mm", False, "layer", False),
            ObservableSpec("sparsity", "fraction of voxels above threshold", "", False, "layer", False),
        ]
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return {spec.name: spec for spec in specs}


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, np.float64), np.asarray(denominator, np.float64))
    out = np.zeros(numerator.shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _spectrum(cells: np.ndarray) -> np.ndarray:
    """Counts of the non-zero cells of a chunk on :data:`SPECTRUM_EDGES_GEV` (uniform in log10, a fast histogram)."""
    values = cells[cells > 0]
    log_edges = np.log10(SPECTRUM_EDGES_GEV)
    counts, _ = np.histogram(
        np.log10(values, dtype=np.float64), bins=len(log_edges) - 1, range=(log_edges[0], log_edges[-1])
    )
    return counts.astype(np.int64)


def _pool(cells: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Sum-pool showers (n, a, b, c) by ``factors`` along the three axes (each must divide its axis)."""
    n, a, b, c = cells.shape
    fa, fb, fc = factors
    if (fa, fb, fc) == (1, 1, 1):
        return cells
    if a % fa or b % fb or c % fc:
        raise ValueError(f"pooling {factors} does not divide the shower shape {cells.shape[1:]}")
    return cells.reshape(n, a // fa, fa, b // fb, fb, c // fc, fc).sum(axis=(2, 4, 6))


def low_level_input(
    cells: np.ndarray, energy_gev: np.ndarray, pooling: tuple[int, int, int], theta_rad: np.ndarray | None = None
) -> np.ndarray:
    """Low-level classifier input of showers ``cells`` (n, a, b, c) in GeV, (n, D + 1 or D + 2) float32.

    The D sum-pooled cells divided by the incident energy ``energy_gev`` (n,), then log10 of the incident energy
    and, if given, the angle ``theta_rad`` (n,). Pooling (:data:`LCD_POOLING`, :data:`CALOCHALLENGE_POOLING`)
    sums cells, so the total energy is kept.
    """
    pooled = _pool(np.asarray(cells, dtype=np.float32), pooling)
    n, width = pooled.shape[0], math.prod(pooled.shape[1:])
    energy = np.asarray(energy_gev, dtype=np.float32)
    out = np.empty((n, width + 1 + (theta_rad is not None)), dtype=np.float32)
    np.divide(pooled.reshape(n, width), energy[:, None], out=out[:, :width])
    out[:, width] = np.log10(energy)
    if theta_rad is not None:
        out[:, width + 1] = theta_rad
    return out


def high_level_input(features: ShowerFeatures, *, use_theta: bool) -> np.ndarray:
    """High-level classifier input of every event, (N, D) float32: conditions and every observable column.

    Columns: log10 of the incident energy (GeV), theta (rad) if ``use_theta``, then every column of every
    observable in spec order. Energies (observables in GeV) enter as log10(E / E_inc + 1e-7), so that the
    network sees fractions over many decades; undefined values (an undefined measured angle) become 0.
    """
    energy = np.asarray(features.energy_gev, dtype=np.float64)
    columns: list[np.ndarray] = [np.log10(energy)[:, None]]
    if use_theta:
        if features.theta_rad is None:
            raise ValueError(f"{features.path}: no theta for the high-level input")
        columns.append(np.asarray(features.theta_rad, dtype=np.float64)[:, None])
    for name, spec in features.specs.items():
        values = np.asarray(features.observables[name], dtype=np.float64)
        values = values[:, None] if values.ndim == 1 else values
        if spec.unit == "GeV":
            values = np.log10(np.maximum(values, 0.0) / energy[:, None] + 1e-7)
        columns.append(values)
    matrix = np.concatenate(columns, axis=1)
    return np.nan_to_num(matrix, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def _lcd_chunk(cells: np.ndarray, energy_gev: np.ndarray) -> dict[str, np.ndarray]:
    """Observables of a chunk of LCD showers (n, nx, ny, nz), GeV; see :func:`observable_specs`."""
    projections = project(cells, hit_threshold_gev=HIT_THRESHOLD_GEV)
    total = projections.total
    x_profile, y_profile, z_profile = projections.x, projections.y, projections.z
    angle = measured_angle(cells)
    angle = np.where(angle == MEASURED_ANGLE_EMPTY, np.nan, angle)  # no usable layer: undefined, not 100 rad
    n, nx, ny, nz = cells.shape
    assert projections.hits is not None
    nonzero = hits_above(cells, 0.0)
    cumulative = np.concatenate([np.zeros((n, 1)), np.cumsum(z_profile, axis=1)], axis=1)
    thirds = np.diff(cumulative[:, [0, nz // 3, 2 * nz // 3, nz]], axis=1)
    out: dict[str, np.ndarray] = {
        "deposited_energy_gev": total,
        "sampling_fraction": _safe_divide(total, energy_gev),
        "hits": projections.hits.astype(np.float64),
        "occupancy": nonzero / float(nx * ny * nz),
        "max_cell_energy_gev": cells.reshape(n, nx * ny * nz).max(axis=1).astype(np.float64),
        "measured_angle_rad": angle,
    }
    for axis, profile in (("x", x_profile), ("y", y_profile), ("z", z_profile)):
        moments = profile_moments(profile, 2)
        out[f"centre_{axis}"] = moments[:, 0]
        out[f"width_{axis}"] = np.sqrt(np.maximum(moments[:, 1], 0.0))
    fractions = _safe_divide(thirds, total[:, None])
    out["first_third_fraction"] = fractions[:, 0]
    out["second_third_fraction"] = fractions[:, 1]
    out["last_third_fraction"] = fractions[:, 2]
    out["first_layer_fraction"] = _safe_divide(z_profile[:, 0], total)
    out["r9"] = r9_from_projection(projections.xy)
    out["longitudinal_profile_gev"] = z_profile
    out["x_profile_gev"] = x_profile
    out["y_profile_gev"] = y_profile
    return out


def _calochallenge_chunk(
    showers: np.ndarray, energy_gev: np.ndarray, geometry: CylindricalCalorimeter
) -> dict[str, np.ndarray]:
    """Observables of a chunk of thresholded CaloChallenge showers (n, layers, alpha, radius), GeV."""
    energy_layer = showers.sum(axis=(2, 3), dtype=np.float64)
    total = energy_layer.sum(axis=1)
    out: dict[str, np.ndarray] = {
        "etot_over_einc": etot_over_einc(showers, energy_gev),
        "deposited_energy_gev": total,
        "hits": np.count_nonzero(showers.reshape(showers.shape[0], -1), axis=1).astype(np.float64),
    }
    layer_index = np.arange(energy_layer.shape[1], dtype=np.float64)
    depth = _safe_divide(energy_layer @ layer_index, total)
    second = _safe_divide(energy_layer @ layer_index**2, total)
    out["shower_depth"] = depth
    out["depth_width"] = np.sqrt(np.maximum(second - depth**2, 0.0))
    centres_widths = {axis: layer_centre_and_width(showers, geometry, axis) for axis in ("x", "y", "r")}
    for axis, key in (("x", "mean_width_x"), ("y", "mean_width_y"), ("r", "mean_radial_width")):
        out[key] = _safe_divide((centres_widths[axis][1] * energy_layer).sum(axis=1), total)
    out["energy_per_layer_gev"] = energy_layer
    out["centre_x_mm"], out["width_x_mm"] = centres_widths["x"]
    out["centre_y_mm"], out["width_y_mm"] = centres_widths["y"]
    out["radial_centre_mm"], out["radial_width_mm"] = centres_widths["r"]
    out["sparsity"] = sparsity_per_layer(showers, geometry, threshold_gev=0.0)  # the threshold is applied already
    return out


def extract_features(
    source: EvaluationInput,
    *,
    low_level_indices: np.ndarray | None = None,
    low_level_theta: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ShowerFeatures:
    """Stream ``source`` once and compute its :class:`ShowerFeatures`.

    Args:
        source: an opened, checked file (:func:`caloml.evaluate.inputs.open_pair`).
        low_level_indices: event indices whose low-level classifier input to keep (None: none); the rows of
            :attr:`ShowerFeatures.low_level` follow :attr:`ShowerFeatures.low_level_indices`, these sorted.
        low_level_theta: append the angle theta to the low-level input (:func:`low_level_input`).
        progress: called with the number of events of each chunk once it is done.

    Raises:
        DataError: a chunk holds NaN, infinite or negative cells (the readers check every chunk).
    """
    specs = observable_specs(source.layout)
    reader = source.reader
    cylinder = source.cylinder
    if source.layout == "lcd":
        cell_key = "ECAL"
        pooling = (
            LCD_POOLING if all(s % f == 0 for s, f in zip(source.event_shape, LCD_POOLING, strict=True)) else (1, 1, 1)
        )
    else:
        assert cylinder is not None
        cell_key, pooling = "showers", CALOCHALLENGE_POOLING[cylinder.name]
    keep = None if low_level_indices is None else np.unique(np.asarray(low_level_indices, dtype=np.int64))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in specs}
    low_level = None
    if keep is not None:
        if low_level_theta and source.theta_rad is None:
            raise ValueError(f"{source.path}: no theta for the low-level input")
        width = math.prod(s // f for s, f in zip(source.event_shape, pooling, strict=True)) + 1 + low_level_theta
        low_level = np.empty((len(keep), width), dtype=np.float32)  # filled in place: no second copy
    filled = 0
    spectrum = np.zeros(len(SPECTRUM_EDGES_GEV) - 1, dtype=np.int64)
    start = 0
    for chunk in reader.iter_chunks():
        cells = chunk[cell_key]
        n = cells.shape[0]
        energy = source.energy_gev[start : start + n]
        if source.layout == "lcd":
            values = _lcd_chunk(cells, energy)
        else:
            assert cylinder is not None
            cells = apply_threshold(cells, cylinder.threshold_gev)
            values = _calochallenge_chunk(cells, energy, cylinder)
        for name in specs:
            parts[name].append(np.asarray(values[name], dtype=np.float64))
        spectrum += _spectrum(cells)
        if keep is not None and low_level is not None:
            local = keep[(keep >= start) & (keep < start + n)] - start
            if local.size:
                theta = None
                if low_level_theta and source.theta_rad is not None:
                    theta = source.theta_rad[start : start + n][local]
                low_level[filled : filled + local.size] = low_level_input(cells[local], energy[local], pooling, theta)
                filled += local.size
        start += n
        if progress is not None:
            progress(n)
    observables = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    if keep is not None and filled != len(keep):
        raise ValueError(f"{source.path}: low-level indices outside the file's {start} events")
    return ShowerFeatures(
        path=source.path,
        layout=source.layout,
        geometry_name=source.geometry_name,
        energy_gev=source.energy_gev,
        theta_rad=source.theta_rad,
        observables=observables,
        specs=specs,
        spectrum_counts=spectrum,
        low_level=low_level,
        low_level_indices=keep,
    )
