"""The simulator's validation report: every measurement of :data:`caloml.sim.validation.VALIDATIONS` plus a
CaloChallenge dataset-2 check, compared with the targets of ``shared/reference/physics.md`` section 6, drawn as
plots and written as a Markdown table (``validation.md``) and a JSON record (``validation.json``).

Usage::

    from caloml.sim.report import write_validation_report
    report = write_validation_report("runs/validation", seed=1)

The targets and their tolerances are defined once, in :data:`TARGETS`. Every status is ``pass`` or ``fail``; a
tolerance is never adjusted to the result. Depths are in radiation lengths (X0), energies in GeV, angles in
radians, unless a name says otherwise.

Seeds: measurement ``k`` of the report is seeded with ``seed + SEED_OFFSETS[k]`` (offsets 0, 10, ..., 70), so
``seed=1`` reproduces the default seeds of the ``measure_*`` functions. Where a plot needs more than a
measurement returns (mean profiles, the HCAL/ECAL ratios, the cell spectrum), the same events are simulated again
with the same seeds and sizes, so the plots show exactly the showers that were measured.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

import caloml
from caloml.geometry import CALOCHALLENGE_2
from caloml.json_values import json_plain
from caloml.observables.cylinder import apply_threshold, energy_per_layer, etot_over_einc
from caloml.observables.grid import cell_spectrum, sparsity_curve
from caloml.report_directory import check_report_dir, install_report_dir
from caloml.sim import validation
from caloml.sim.engine import simulate_batch, simulate_spots
from caloml.sim.layouts import LAYOUTS
from caloml.sim.particles import Primaries
from caloml.sim.run import SimulationRequest, iter_chunks, simulate_events

__all__ = [
    "FULL_SIZES",
    "QUICK_SIZES",
    "SEED_OFFSETS",
    "TARGETS",
    "Target",
    "evaluate_targets",
    "lateral_containment_curve",
    "measure_calochallenge",
    "write_validation_report",
]

# ---------------------------------------------------------------------------------------------------------------
# Targets (physics.md section 6), defined once
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One validation target.

    Attributes:
        name: the quantity, as printed in the table.
        measured_key: key of the measured figure in the report's ``figures`` (``measurement.figure``).
        expected: the expected value or behaviour, in words.
        low, high: accepted range (None: unbounded on that side).
        unit: unit of the measured figure ("" for a pure number).
        source: where the expectation comes from.
        inclusive: whether the bounds themselves are accepted (False for strict inequalities such as "> 0").
    """

    name: str
    measured_key: str
    expected: str
    low: float | None
    high: float | None
    unit: str
    source: str
    inclusive: bool = True

    def accepts(self, value: float | None) -> bool:
        """Whether ``value`` lies in the accepted range (a missing or non-finite value never does)."""
        if value is None or not math.isfinite(value):
            return False
        if self.inclusive:
            return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        return (self.low is None or value > self.low) and (self.high is None or value < self.high)

    def tolerance(self) -> str:
        """The accepted range in words, e.g. ``1.8 to 2.8`` or ``< 0.01``."""
        lt, gt = ("≤", "≥") if self.inclusive else ("<", ">")
        if self.low is not None and self.high is not None:
            return f"{self.low:g} to {self.high:g}"
        if self.high is not None:
            return f"{lt} {self.high:g}"
        if self.low is not None:
            return f"{gt} {self.low:g}"
        return "any"


_S6 = "physics.md §6"
TARGETS: tuple[Target, ...] = (
    Target(
        "depth of maximum, slope per decade of E (e-)",
        "longitudinal.depth_max_per_decade_x0",
        "≈ 2.3",
        1.8,
        2.8,
        "X0/decade",
        f"{_S6}: depth of the longitudinal maximum grows like ln E",
    ),
    Target(
        "centre of gravity, slope per decade of E (e-)",
        "longitudinal.centre_of_gravity_per_decade_x0",
        "≈ 2.1",
        1.6,
        2.6,
        "X0/decade",
        f"{_S6}: centre of gravity cut by the finite depth",
    ),
    Target(
        "depth of maximum at 10 GeV (e-)",
        "longitudinal.depth_max_10gev_x0",
        "≈ 5.9 (6.3 minus 0.3-0.5 for sampling)",
        5.0,
        6.8,
        "X0",
        f"{_S6}: T about 6.3 X0 at 10 GeV, homogeneous",
    ),
    Target(
        "depth of maximum at 100 GeV (e-)",
        "longitudinal.depth_max_100gev_x0",
        "≈ 8.2 (8.6 minus 0.3-0.5 for sampling)",
        7.4,
        9.0,
        "X0",
        f"{_S6}: T about 8.6 X0 at 100 GeV, homogeneous",
    ),
    Target(
        "photon minus electron centre of gravity (100 GeV)",
        "photon_shift.photon_minus_electron_x0",
        "≈ 1",
        0.6,
        1.5,
        "X0",
        f"{_S6}: photons vs electrons",
    ),
    Target(
        "lateral containment within 1 RM (100 GeV e-)",
        "lateral_containment.within_1_rm",
        "≈ 0.90",
        0.85,
        0.95,
        "",
        f"{_S6}: lateral containment",
    ),
    Target(
        "lateral containment within 2 RM (100 GeV e-)",
        "lateral_containment.within_2_rm",
        "≈ 0.95",
        0.92,
        0.99,
        "",
        f"{_S6}: lateral containment",
    ),
    Target(
        "longitudinal containment, slope per decade of E",
        "longitudinal.containment_per_decade",
        "< 0 (leakage grows with E)",
        None,
        0.0,
        "1/decade",
        f"{_S6}: longitudinal leakage (calibrated ECAL sum / E, linear fit in log10 E)",
        inclusive=False,
    ),
    Target(
        "longitudinal containment at 500 GeV",
        "longitudinal.containment_500gev",
        "most of the shower contained",
        0.95,
        None,
        "",
        f"{_S6}: the 22.6 X0 ECAL contains most of a 500 GeV shower (calibrated ECAL sum / E)",
        inclusive=False,
    ),
    Target(
        "ECAL sampling fraction at 100 GeV",
        "longitudinal.sampling_fraction_100gev",
        "≈ 0.02",
        0.017,
        0.023,
        "",
        f"{_S6}: ECAL sampling fraction",
    ),
    Target(
        "sampling fraction, 500 GeV minus 10 GeV",
        "longitudinal.sampling_fraction_500_minus_10gev",
        "< 0 (slowly decreasing)",
        None,
        0.0,
        "",
        f"{_S6}: ECAL sampling fraction slowly decreasing with energy",
        inclusive=False,
    ),
    Target(
        "stochastic term a (calibrated sum, e-)",
        "longitudinal.stochastic_term",
        "0.166",
        0.13,
        0.20,
        "√GeV",
        f"{_S6}: energy resolution (CALICE 16.6%/√E)",
    ),
    Target(
        "constant term b (calibrated sum, e-)",
        "longitudinal.constant_term",
        "0.01-0.02",
        0.0,
        0.03,
        "",
        f"{_S6}: energy resolution",
    ),
    Target(
        "measured angle at 90°, |mean - π/2|",
        "angle_response.bias_at_90_rad",
        "0 (unbiased)",
        None,
        0.01,
        "rad",
        f"{_S6}: incidence angle unbiased at 90 degrees",
        inclusive=False,
    ),
    Target(
        "measured angle, smallest rise between neighbouring θ",
        "angle_response.min_step_rad",
        "> 0 (monotonic)",
        0.0,
        None,
        "rad",
        f"{_S6}: measured angle rises monotonically with theta",
        inclusive=False,
    ),
    Target(
        "measured angle, largest |d(90°+x) + d(90°-x)|",
        "angle_response.max_asymmetry_rad",
        "0 (symmetric)",
        None,
        0.02,
        "rad",
        f"{_S6}: measured angle symmetric about 90 degrees (d = mean - π/2)",
        inclusive=False,
    ),
    Target(
        "occupancy (non-zero ECAL cells, 100 GeV e-)",
        "occupancy.nonzero_share",
        "a sizeable fraction (GEANT4 ≈ 0.20)",
        0.10,
        0.30,
        "",
        f"{_S6}: occupancy",
    ),
    Target(
        "π± with HCAL/ECAL < 0.1, lowest energy bin",
        "pion_ratio.chpi_share_lowest_bin",
        "a few percent",
        0.01,
        0.10,
        "",
        f"{_S6}: e vs pi+-",
    ),
    Target(
        "π± with HCAL/ECAL < 0.1, lowest minus highest bin",
        "pion_ratio.chpi_share_lowest_minus_highest_bin",
        "> 0 (more at low energy)",
        0.0,
        None,
        "",
        f"{_S6}: e vs pi+-",
        inclusive=False,
    ),
    Target(
        "e- with HCAL/ECAL < 0.1, smallest over bins",
        "pion_ratio.electron_share_min",
        "essentially all",
        0.99,
        None,
        "",
        f"{_S6}: e vs pi+-",
        inclusive=False,
    ),
    Target(
        "γ/π0 width separation power at 10 GeV",
        "gamma_pi0.separation_10gev",
        "large (two clusters)",
        0.5,
        None,
        "",
        f"{_S6}: gamma vs pi0 separable at low energy",
        inclusive=False,
    ),
    Target(
        "γ/π0 width separation power, largest at E ≥ 100 GeV",
        "gamma_pi0.max_separation_from_100gev",
        "small (merged showers)",
        None,
        0.3,
        "",
        f"{_S6}: gamma vs pi0 nearly indistinguishable above about 100 GeV",
        inclusive=False,
    ),
    Target(
        "CaloChallenge-2 E_tot/E_inc mode (e-, 1 GeV-1 TeV)",
        "calochallenge.etot_over_einc_mode",
        "≈ 1",
        0.9,
        1.05,
        "",
        "physics.md §1: CaloChallenge dataset-2 voxels calibrated so that E_tot/E_inc peaks near 1",
    ),
)

# ---------------------------------------------------------------------------------------------------------------
# Sizes and seeds
# ---------------------------------------------------------------------------------------------------------------

#: Added to the report's seed for each measurement: seed=1 gives the ``measure_*`` functions' default seeds.
SEED_OFFSETS: dict[str, int] = {
    "longitudinal": 0,
    "photon_shift": 10,
    "lateral_containment": 20,
    "angle_response": 30,
    "occupancy": 40,
    "pion_ratio": 50,
    "gamma_pi0": 60,
    "calochallenge": 70,
}

#: Keyword arguments (besides the seed) of each measurement in quick mode: the whole report in well under a minute.
QUICK_SIZES: dict[str, dict[str, Any]] = {
    "longitudinal": {"n": 30},
    "photon_shift": {"n": 60},
    "lateral_containment": {"n": 20},
    "angle_response": {"n": 20},
    "occupancy": {"n": 10},
    "pion_ratio": {"n": 150},
    "gamma_pi0": {"n": 40},
    "calochallenge": {"n": 300},
}

#: Keyword arguments (besides the seed) of each measurement in the full report (a few minutes on one core).
FULL_SIZES: dict[str, dict[str, Any]] = {
    "longitudinal": {"n": 300},
    "photon_shift": {"n": 600},
    "lateral_containment": {"n": 200},
    "angle_response": {"n": 200},
    "occupancy": {"n": 100},
    "pion_ratio": {"n": 2000},
    "gamma_pi0": {"n": 400},
    "calochallenge": {"n": 2000},
}

#: Critical energy of tungsten (GeV), physics.md section 1: the homogeneous reference T = ln(E/Ec) - 0.858.
_TUNGSTEN_CRITICAL_ENERGY_GEV = 8.0e-3
#: CALICE Si-W resolution (physics.md section 4), drawn as a reference.
_CALICE_STOCHASTIC, _CALICE_CONSTANT = 0.166, 0.011
#: Energy ranges (GeV) of the CaloChallenge profiles.
_CC_ENERGY_RANGES_GEV = ((1.0, 10.0), (10.0, 100.0), (100.0, 1000.0))
#: E_tot/E_inc histogram of the CaloChallenge check: the community's 0.5-1.5, bins of 0.02.
_CC_RATIO_EDGES = np.linspace(0.5, 1.5, 51)
#: Thresholds of the sparsity curve (GeV) and edges of the cell spectrum (GeV).
_SPARSITY_THRESHOLDS_GEV = np.logspace(-13, 0, 53)
_SPECTRUM_EDGES_GEV = np.logspace(-14, 1, 76)
#: The 3DGAN hit threshold (GeV).
_HIT_THRESHOLD_GEV = 3e-4
#: Ratio edges of the HCAL/ECAL histograms; ratios outside are drawn in the first or last bin.
_RATIO_EDGES = np.logspace(-5, 4, 73)
_RATIO_CUT = 0.1

# ---------------------------------------------------------------------------------------------------------------
# Extra measurements and plot data
# ---------------------------------------------------------------------------------------------------------------


def measure_calochallenge(n: int = 2000, seed: int = 71) -> dict[str, Any]:
    """CaloChallenge dataset-2 electrons, log-uniform in 1 GeV - 1 TeV, after the 15.15 keV readout threshold.

    Returns plain figures: the E_tot/E_inc mode (centre of the fullest bin of 0.02 on 0.5-1.5), mean, median,
    standard deviation and share inside 0.5-1.5; the histogram (edges, counts); per incident-energy range
    (GeV) the mean energy per layer and per radial bin divided by the incident energy, with the layer depths
    (X0 of tungsten plus silicon, layer centres) and the radial bin centres (mm).
    """
    geometry = CALOCHALLENGE_2
    events = simulate_events(SimulationRequest("calochallenge-2", "electron", n, seed))
    showers = apply_threshold(events["showers"], geometry.threshold_gev)
    incident = events["incident_energies"][:, 0].astype(np.float64)
    ratio = etot_over_einc(showers, incident)
    counts, edges = np.histogram(ratio, bins=_CC_RATIO_EDGES)
    centres = 0.5 * (edges[1:] + edges[:-1])
    mode = float(centres[np.argmax(counts)]) if counts.sum() > 0 else None
    layers = energy_per_layer(showers, geometry) / incident[:, None]
    radial = showers.sum(axis=(1, 2), dtype=np.float64) / incident[:, None]
    layer_fraction, radial_fraction, n_in_range = [], [], []
    for low, high in _CC_ENERGY_RANGES_GEV:
        select = (incident >= low) & (incident < high)
        n_in_range.append(int(select.sum()))
        layer_fraction.append(layers[select].mean(axis=0).tolist() if select.any() else None)
        radial_fraction.append(radial[select].mean(axis=0).tolist() if select.any() else None)
    bounds = np.concatenate([[0.0], np.cumsum(geometry.stack.layer_x0)])
    return {
        "n_events": int(n),
        "threshold_gev": geometry.threshold_gev,
        "etot_over_einc_mode": mode,
        "etot_over_einc_mean": float(np.mean(ratio)),
        "etot_over_einc_median": float(np.median(ratio)),
        "etot_over_einc_std": float(np.std(ratio)),
        "share_in_0.5_1.5": float(np.mean((ratio >= 0.5) & (ratio <= 1.5))),
        "histogram_edges": edges.tolist(),
        "histogram_counts": counts.tolist(),
        "energy_ranges_gev": [list(r) for r in _CC_ENERGY_RANGES_GEV],
        "events_per_range": n_in_range,
        "layer_centres_x0": (0.5 * (bounds[1:] + bounds[:-1])).tolist(),
        "layer_energy_over_einc": layer_fraction,
        "radial_centres_mm": list(geometry.radial_centres_mm),
        "radial_energy_over_einc": radial_fraction,
    }


def lateral_containment_curve(
    radii_rm: np.ndarray, energy_gev: float = 100.0, n: int = 100, seed: int = 21
) -> np.ndarray:
    """Share of the ECAL energy within each radius (Moliere units, shape (R,)) of the axis: the curve of which
    :func:`caloml.sim.validation.measure_lateral_containment` gives the 1 and 2 RM points (same showers for the
    same arguments). Perpendicular electrons of ``energy_gev`` (GeV); returns shape (R,)."""
    rng = np.random.default_rng(seed)
    layout = LAYOUTS["lcd-gen"]
    detector = layout.build_detector()
    primaries = Primaries(np.full(n, float(energy_gev)), np.full(n, validation.PERPENDICULAR), np.zeros(n))
    spots, _ = simulate_spots(rng, layout, "electron", primaries)
    in_ecal = detector.section[spots.layer] == 0
    radius = np.hypot(spots.x_mm, spots.y_mm)[in_ecal] / detector.moliere_mm[spots.layer[in_ecal]]
    weight = spots.visible_gev[in_ecal] / detector.visible_fraction[spots.layer[in_ecal]]
    order = np.argsort(radius)
    cumulative = np.cumsum(weight[order])
    index = np.searchsorted(radius[order], np.asarray(radii_rm, dtype=np.float64), side="left")
    inside = np.where(index > 0, cumulative[np.maximum(index - 1, 0)], 0.0)
    return inside / weight.sum()


def _simulate_lcd(particle: str, energy_gev: float, n: int, seed: int) -> dict[str, np.ndarray]:
    """The events ``caloml.sim.validation`` measures for the same arguments (perpendicular, ``lcd-gen``)."""
    rng = np.random.default_rng(seed)
    primaries = Primaries(np.full(n, float(energy_gev)), np.full(n, validation.PERPENDICULAR), np.zeros(n))
    return simulate_batch(rng, LAYOUTS["lcd-gen"], particle, primaries)


def _longitudinal_profiles(energies_gev: Sequence[float], n: int, seed: int) -> dict[str, Any]:
    """Mean calibrated dE/dt / E (1/X0) per layer for each energy, the showers of ``measure_longitudinal``."""
    stack = LAYOUTS["lcd-gen"].build_detector().sections[0].stack
    profiles = []
    for i, energy in enumerate(energies_gev):
        ecal = _simulate_lcd("electron", energy, n, seed + i)["ECAL"]
        layers = validation.calibrated_layer_energy(ecal)
        del ecal
        profiles.append((layers.mean(axis=0) / stack.layer_x0 / energy).tolist())
    return {"layer_centres_x0": validation.layer_centres_x0().tolist(), "profiles_per_x0": profiles}


def _cell_statistics(energy_gev: float, n: int, seed: int) -> dict[str, Any]:
    """ECAL cell spectrum (cells per event per bin) and sparsity curve of the showers of ``measure_occupancy``."""
    ecal = _simulate_lcd("electron", energy_gev, n, seed)["ECAL"]
    spectrum = cell_spectrum(ecal, _SPECTRUM_EDGES_GEV).sum(axis=0) / n
    sparsity = sparsity_curve(ecal, _SPARSITY_THRESHOLDS_GEV).mean(axis=0)
    return {
        "spectrum_edges_gev": _SPECTRUM_EDGES_GEV.tolist(),
        "cells_per_event": spectrum.tolist(),
        "thresholds_gev": _SPARSITY_THRESHOLDS_GEV.tolist(),
        "share_above": sparsity.tolist(),
    }


def _pion_ratios(energy_bins_gev: Sequence[Sequence[float]], n: int, seed: int) -> dict[str, list[np.ndarray]]:
    """HCAL/ECAL of every event of ``measure_pion_ratio`` (same requests, chunk by chunk)."""
    out: dict[str, list[np.ndarray]] = {"chpi": [], "electron": []}
    for i, (low, high) in enumerate(energy_bins_gev):
        for particle in ("chpi", "electron"):
            request = SimulationRequest("lcd-rec", particle, n if particle == "chpi" else n // 5, seed + i, (low, high))
            ratios = [chunk["HCAL_E"] / np.maximum(chunk["ECAL_E"], 1e-12) for chunk in iter_chunks(request, workers=1)]
            out[particle].append(np.concatenate(ratios).astype(np.float64))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Derived figures and target evaluation
# ---------------------------------------------------------------------------------------------------------------


def _at(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    for xi, yi in zip(xs, ys, strict=True):
        if math.isclose(float(xi), x, rel_tol=1e-9):
            return float(yi)
    return None


def _derive(measurements: dict[str, Any]) -> dict[str, float | None]:
    """The scalar figures the targets compare, keyed ``measurement.figure``."""
    figures: dict[str, float | None] = {}
    lon = measurements.get("longitudinal")
    if lon is not None:
        energies = lon["energies_gev"]
        for key in ("depth_max_per_decade_x0", "centre_of_gravity_per_decade_x0", "stochastic_term", "constant_term"):
            figures[f"longitudinal.{key}"] = float(lon[key])
        figures["longitudinal.depth_max_10gev_x0"] = _at(energies, lon["depth_max_x0"], 10.0)
        figures["longitudinal.depth_max_100gev_x0"] = _at(energies, lon["depth_max_x0"], 100.0)
        figures["longitudinal.sampling_fraction_100gev"] = _at(energies, lon["sampling_fraction"], 100.0)
        sf10, sf500 = _at(energies, lon["sampling_fraction"], 10.0), _at(energies, lon["sampling_fraction"], 500.0)
        figures["longitudinal.sampling_fraction_500_minus_10gev"] = (
            None if sf10 is None or sf500 is None else sf500 - sf10
        )
        figures["longitudinal.containment_500gev"] = _at(energies, lon["containment"], 500.0)
        figures["longitudinal.containment_per_decade"] = float(np.polyfit(np.log10(energies), lon["containment"], 1)[0])
    shift = measurements.get("photon_shift")
    if shift is not None:
        figures["photon_shift.photon_minus_electron_x0"] = float(shift["photon_minus_electron_x0"])
    lateral = measurements.get("lateral_containment")
    if lateral is not None:
        for k in (1, 2):
            figures[f"lateral_containment.within_{k}_rm"] = float(lateral[f"within_{k}_rm"])
    angle = measurements.get("angle_response")
    if angle is not None:
        figures.update(_angle_figures(angle["theta_rad"], angle["mtheta_mean_rad"]))
    occupancy = measurements.get("occupancy")
    if occupancy is not None:
        figures["occupancy.nonzero_share"] = float(occupancy["nonzero_share"])
    pions = measurements.get("pion_ratio")
    if pions is not None:
        shares = pions["chpi_share_below_0.1"]
        figures["pion_ratio.chpi_share_lowest_bin"] = float(shares[0])
        figures["pion_ratio.chpi_share_lowest_minus_highest_bin"] = float(shares[0] - shares[-1])
        figures["pion_ratio.electron_share_min"] = float(min(pions["electron_share_below_0.1"]))
    gamma = measurements.get("gamma_pi0")
    if gamma is not None:
        energies, powers = gamma["energies_gev"], gamma["width_separation_power"]
        figures["gamma_pi0.separation_10gev"] = _at(energies, powers, 10.0)
        high = [p for e, p in zip(energies, powers, strict=True) if e >= 100.0]
        figures["gamma_pi0.max_separation_from_100gev"] = float(max(high)) if high else None
    cc = measurements.get("calochallenge")
    if cc is not None:
        figures["calochallenge.etot_over_einc_mode"] = cc["etot_over_einc_mode"]
    return figures


def _angle_figures(theta_rad: Sequence[float], mean_rad: Sequence[float]) -> dict[str, float | None]:
    degrees = np.round(np.degrees(np.asarray(theta_rad, dtype=np.float64)), 6)
    mean = np.asarray(mean_rad, dtype=np.float64)
    order = np.argsort(degrees)
    # d = mean - pi/2 keyed by the true angle in degrees (rounded, so that 90 + x and 90 - x are found)
    deviation = {float(d): float(m - np.pi / 2) for d, m in zip(degrees, mean, strict=True)}
    offsets = sorted({round(abs(d - 90.0), 6) for d in deviation} - {0.0})
    asym = [
        abs(deviation[round(90.0 + x, 6)] + deviation[round(90.0 - x, 6)])
        for x in offsets
        if round(90.0 + x, 6) in deviation and round(90.0 - x, 6) in deviation
    ]
    return {
        "angle_response.bias_at_90_rad": abs(deviation[90.0]) if 90.0 in deviation else None,
        "angle_response.min_step_rad": float(np.min(np.diff(mean[order]))) if mean.size > 1 else None,
        "angle_response.max_asymmetry_rad": float(max(asym)) if asym else None,
    }


def evaluate_targets(figures: dict[str, float | None], targets: Sequence[Target] = TARGETS) -> list[dict[str, Any]]:
    """Each target as a dict (its fields, ``tolerance`` in words, ``measured`` and ``status`` pass/fail)."""
    rows = []
    for target in targets:
        value = figures.get(target.measured_key)
        rows.append(
            dataclasses.asdict(target)
            | {
                "tolerance": target.tolerance(),
                "measured": value,
                "status": "pass" if target.accepts(value) else "fail",
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------------


def _target(measured_key: str) -> Target:
    return next(t for t in TARGETS if t.measured_key == measured_key)


# Figures are drawn on matplotlib's object API (no pyplot): the report neither changes a notebook's backend nor
# keeps figures alive in pyplot's registry.
def _save(fig: Figure, folder: Path, name: str) -> str:
    fig.savefig(folder / name, dpi=110)
    return name


def _subplots(nrows: int, ncols: int, **kwargs: Any) -> tuple[Figure, Any]:
    fig = Figure(figsize=kwargs.pop("figsize"), layout="constrained")
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _figure(ncols: int = 1, width: float = 6.4, height: float = 4.6, **kwargs: Any) -> tuple[Figure, Any]:
    return _subplots(1, ncols, figsize=(width, height), **kwargs)


def _plot_longitudinal(folder: Path, lon: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    energies = np.asarray(lon["energies_gev"])
    log_e = np.log10(energies)
    grid = np.logspace(log_e.min() - 0.1, log_e.max() + 0.1, 100)
    names = []

    fig, ax = _figure()
    colours = colormaps["viridis"](np.linspace(0, 0.9, energies.size))
    for energy, profile, colour in zip(energies, extra["profiles_per_x0"], colours, strict=True):
        ax.step(extra["layer_centres_x0"], profile, where="mid", color=colour, label=f"{energy:g} GeV")
    ax.set_yscale("log")
    ax.set_xlabel("depth t [X0]")
    ax.set_ylabel("mean calibrated (1/E) dE/dt [1/X0]")
    ax.set_title(f"Electron longitudinal profiles, CLIC ECAL ({lon['n']} showers per energy)")
    ax.legend(title="electron energy")
    names.append(_save(fig, folder, "longitudinal_profiles.png"))

    fig, ax = _figure()
    for key, label, marker in (
        ("depth_max_x0", "depth of maximum T", "o"),
        ("centre_of_gravity_x0", "centre of gravity <t>", "s"),
    ):
        values = np.asarray(lon[key])
        slope, intercept = np.polyfit(log_e, values, 1)
        points = ax.plot(energies, values, marker, label=f"{label}")[0]
        ax.plot(
            grid,
            slope * np.log10(grid) + intercept,
            "-",
            color=points.get_color(),
            label=f"fit: {slope:.2f} X0 per decade",
        )
    ax.plot(
        grid,
        np.log(grid / _TUNGSTEN_CRITICAL_ENERGY_GEV) - 0.858,
        "k--",
        lw=1,
        label="homogeneous W: ln(E/Ec) - 0.858",
    )
    ax.set_xscale("log")
    ax.set_xlabel("electron energy E [GeV]")
    ax.set_ylabel("depth [X0]")
    ax.set_title("Shower depth vs energy")
    ax.legend()
    names.append(_save(fig, folder, "shower_depth_vs_energy.png"))

    fig, ax = _figure()
    ax.plot(energies, lon["sampling_fraction"], "o-", label="simulation (visible ECAL sum / E)")
    sf = _target("longitudinal.sampling_fraction_100gev")
    ax.axhspan(sf.low, sf.high, color="tab:green", alpha=0.15, label=f"accepted at 100 GeV ({sf.tolerance()})")
    ax.axhline(0.02, color="k", ls="--", lw=1, label="CLIC data ≈ 0.02")
    ax.set_xscale("log")
    ax.set_xlabel("electron energy E [GeV]")
    ax.set_ylabel("ECAL sampling fraction")
    ax.set_title("ECAL sampling fraction")
    ax.legend()
    names.append(_save(fig, folder, "sampling_fraction.png"))

    fig, ax = _figure()
    containment = np.asarray(lon["containment"])
    slope, intercept = np.polyfit(log_e, containment, 1)
    ax.plot(energies, containment, "o", label="calibrated ECAL sum / E")
    ax.plot(grid, slope * np.log10(grid) + intercept, "-", label=f"fit: {slope:+.4f} per decade")
    floor = _target("longitudinal.containment_500gev")
    ax.axhline(floor.low, color="tab:red", ls="--", lw=1, label=f"target at 500 GeV: {floor.tolerance()}")
    ax.set_xscale("log")
    ax.set_xlabel("electron energy E [GeV]")
    ax.set_ylabel("longitudinal containment")
    ax.set_title("Longitudinal containment (leakage grows with E)")
    ax.legend()
    names.append(_save(fig, folder, "longitudinal_containment.png"))

    fig, ax = _figure()
    a, b = lon["stochastic_term"], lon["constant_term"]
    ax.plot(energies, lon["resolution"], "o", label=f"simulation ({lon['n']} showers per energy)")
    ax.plot(grid, np.hypot(a / np.sqrt(grid), b), "-", label=f"fit: {100 * a:.1f}%/√E ⊕ {100 * b:.2f}% (E in GeV)")
    ax.plot(
        grid,
        np.hypot(_CALICE_STOCHASTIC / np.sqrt(grid), _CALICE_CONSTANT),
        "k--",
        lw=1,
        label=f"CALICE: {100 * _CALICE_STOCHASTIC:.1f}%/√E ⊕ {100 * _CALICE_CONSTANT:.1f}%",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("electron energy E [GeV]")
    ax.set_ylabel("σ/E of the calibrated ECAL sum")
    ax.set_title("Energy resolution")
    ax.legend()
    names.append(_save(fig, folder, "energy_resolution.png"))
    return names


def _plot_lateral(folder: Path, lateral: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    fig, ax = _figure()
    ax.plot(extra["radii_rm"], extra["containment"], "-", label="simulation, 100 GeV e-")
    ax.plot([1, 2], [lateral["within_1_rm"], lateral["within_2_rm"]], "o", label="measured at 1 and 2 RM")
    accepted = [_target(f"lateral_containment.within_{k}_rm") for k in (1, 2)]
    for k, target in enumerate(accepted, start=1):
        ax.plot([k, k], [target.low, target.high], "_-", color="tab:red", ms=14, label=None if k > 1 else "accepted")
    ax.set_xlabel("radius from the shower axis [Moliere radii of the layer]")
    ax.set_ylabel("share of the ECAL energy within the radius")
    ax.set_title(f"Lateral containment (RM of the thin layers {lateral['moliere_radius_thin_layers_mm']:.1f} mm)")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")
    return [_save(fig, folder, "lateral_containment.png")]


def _plot_angle(folder: Path, angle: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    theta = np.asarray(angle["theta_rad"])
    mean = np.asarray(angle["mtheta_mean_rad"])
    spread = np.asarray(angle["mtheta_std_rad"])
    fig, (top, bottom) = _subplots(2, 1, figsize=(6.4, 6.0), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    top.errorbar(theta, mean, yerr=spread, fmt="o", capsize=3, label="mean ± std of the measured angle")
    span = np.array([theta.min() - 0.05, theta.max() + 0.05])
    top.plot(span, span, "k--", lw=1, label="diagonal (measured = true)")
    top.set_ylabel("measured angle [rad]")
    top.set_title("Measured incidence angle (100 GeV e-, image algorithm)")
    top.legend()
    bottom.errorbar(theta, mean - theta, yerr=spread, fmt="o", capsize=3)
    bottom.axhline(0, color="k", ls="--", lw=1)
    bottom.set_xlabel("true θ [rad]")
    bottom.set_ylabel("measured - true [rad]")
    return [_save(fig, folder, "angle_response.png")]


def _plot_occupancy(folder: Path, occupancy: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    names = []
    edges = np.asarray(extra["spectrum_edges_gev"])
    counts = np.asarray(extra["cells_per_event"])
    fig, ax = _figure()
    ax.stairs(counts, edges, label="simulation, 100 GeV e-")
    ax.axvline(_HIT_THRESHOLD_GEV, color="tab:red", ls="--", lw=1, label="3DGAN hit threshold 3e-4 GeV")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ECAL cell energy (visible) [GeV]")
    ax.set_ylabel("cells per event per bin")
    ax.set_title(f"ECAL cell-energy spectrum ({len(edges) - 1} log bins)")
    ax.legend()
    names.append(_save(fig, folder, "cell_spectrum.png"))

    fig, ax = _figure()
    ax.plot(extra["thresholds_gev"], extra["share_above"], "o-", ms=3, label="simulation, 100 GeV e-")
    occ = _target("occupancy.nonzero_share")
    ax.axhspan(occ.low, occ.high, color="tab:green", alpha=0.15, label=f"accepted non-zero share ({occ.tolerance()})")
    ax.axhline(occupancy["nonzero_share"], color="k", ls=":", lw=1, label="non-zero share")
    ax.axvline(_HIT_THRESHOLD_GEV, color="tab:red", ls="--", lw=1, label="3e-4 GeV")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("threshold [GeV]")
    ax.set_ylabel("share of the 51 x 51 x 25 cells above the threshold")
    ax.set_title("Sparsity")
    ax.legend()
    names.append(_save(fig, folder, "sparsity.png"))
    return names


def _plot_pion_ratio(folder: Path, pions: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    bins = pions["energy_bins_gev"]
    fig, axes = _figure(ncols=len(bins), width=4.2 * len(bins), height=4.4, sharey=True)
    axes = np.atleast_1d(axes)
    low_edge, high_edge = _RATIO_EDGES[0], _RATIO_EDGES[-1]
    for i, (ax, (low, high)) in enumerate(zip(axes, bins, strict=True)):
        for particle, label, share_key in (
            ("electron", "e-", "electron_share_below_0.1"),
            ("chpi", "π±", "chpi_share_below_0.1"),
        ):
            ratio = np.clip(extra[particle][i], low_edge * 1.0001, high_edge * 0.9999)
            counts, _ = np.histogram(ratio, bins=_RATIO_EDGES)
            ax.stairs(
                counts / max(1, ratio.size),
                _RATIO_EDGES,
                label=f"{label} ({ratio.size} events, {100 * pions[share_key][i]:.1f}% < 0.1)",
            )
        ax.axvline(_RATIO_CUT, color="k", ls="--", lw=1, label="cut HCAL/ECAL = 0.1")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("HCAL/ECAL energy ratio")
        ax.set_title(f"{low:g}-{high:g} GeV")
        ax.legend(fontsize="small")
    axes[0].set_ylabel("fraction of events per bin")
    fig.suptitle(f"HCAL/ECAL energy ratio (ratios outside {low_edge:g}-{high_edge:g} drawn in the edge bins)")
    return [_save(fig, folder, "hcal_ecal_ratio.png")]


def _plot_gamma_pi0(folder: Path, gamma: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    fig, ax = _figure()
    ax.plot(gamma["energies_gev"], gamma["width_separation_power"], "o-", label="transverse width, γ vs π0")
    low, high = _target("gamma_pi0.separation_10gev"), _target("gamma_pi0.max_separation_from_100gev")
    ax.axhline(low.low, color="tab:green", ls="--", lw=1, label=f"target at 10 GeV: {low.tolerance()}")
    ax.axhline(high.high, color="tab:red", ls="--", lw=1, label=f"target at ≥ 100 GeV: {high.tolerance()}")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("primary energy [GeV]")
    ax.set_ylabel("separation power")
    ax.set_title("Photon vs π0: separation power of the shower width")
    ax.legend()
    return [_save(fig, folder, "gamma_pi0_separation.png")]


def _plot_calochallenge(folder: Path, cc: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    names = []
    fig, ax = _figure()
    edges = np.asarray(cc["histogram_edges"])
    ax.stairs(cc["histogram_counts"], edges, label=f"simulation ({cc['n_events']} e-, 1 GeV-1 TeV)")
    if cc["etot_over_einc_mode"] is not None:
        ax.axvline(cc["etot_over_einc_mode"], color="k", ls=":", lw=1, label=f"mode {cc['etot_over_einc_mode']:.2f}")
    mode = _target("calochallenge.etot_over_einc_mode")
    ax.axvspan(mode.low, mode.high, color="tab:green", alpha=0.15, label=f"accepted mode ({mode.tolerance()})")
    ax.set_xlim(0.5, 1.5)
    ax.set_xlabel("E_tot / E_inc (after the 15.15 keV threshold)")
    ax.set_ylabel("events per bin of 0.02")
    ax.set_title("CaloChallenge dataset 2: total over incident energy")
    ax.legend()
    names.append(_save(fig, folder, "calochallenge_etot_einc.png"))

    fig, (left, right) = _figure(ncols=2, width=11.0, height=4.4)
    for (low, high), layers, radial, count in zip(
        cc["energy_ranges_gev"],
        cc["layer_energy_over_einc"],
        cc["radial_energy_over_einc"],
        cc["events_per_range"],
        strict=True,
    ):
        if layers is None:
            continue
        label = f"{low:g}-{high:g} GeV ({count} events)"
        left.step(cc["layer_centres_x0"], layers, where="mid", label=label)
        right.step(cc["radial_centres_mm"], radial, where="mid", label=label)
    left.set_yscale("log")
    left.set_xlabel("depth of the voxel layer [X0]")
    left.set_ylabel("mean layer energy / E_inc")
    left.set_title("Energy per layer")
    left.legend()
    right.set_yscale("log")
    right.set_xlabel("radius [mm]")
    right.set_ylabel("mean energy per radial bin (4.65 mm) / E_inc")
    right.set_title("Radial profile")
    right.legend()
    names.append(_save(fig, folder, "calochallenge_profiles.png"))
    return names


# ---------------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    measure: Callable[..., Any]
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    plot: Callable[[Path, dict[str, Any], dict[str, Any]], list[str]] | None = None


def _steps() -> dict[str, _Step]:
    """Every measurement of ``VALIDATIONS`` (in its order) and the CaloChallenge check, with plot data and plots."""
    known: dict[str, _Step] = {
        "longitudinal": _Step(
            validation.measure_longitudinal,
            lambda kw: _longitudinal_profiles(
                kw.get("energies_gev", _default(validation.measure_longitudinal, "energies_gev")), kw["n"], kw["seed"]
            ),
            _plot_longitudinal,
        ),
        "lateral_containment": _Step(
            validation.measure_lateral_containment,
            lambda kw: {
                "radii_rm": (radii := np.linspace(0.0, 5.0, 101)).tolist(),
                "containment": lateral_containment_curve(
                    radii,
                    kw.get("energy_gev", _default(validation.measure_lateral_containment, "energy_gev")),
                    kw["n"],
                    kw["seed"],
                ).tolist(),
            },
            _plot_lateral,
        ),
        "angle_response": _Step(validation.measure_angle_response, None, _plot_angle),
        "occupancy": _Step(
            validation.measure_occupancy,
            lambda kw: _cell_statistics(
                kw.get("energy_gev", _default(validation.measure_occupancy, "energy_gev")), kw["n"], kw["seed"]
            ),
            _plot_occupancy,
        ),
        "pion_ratio": _Step(
            validation.measure_pion_ratio,
            lambda kw: _pion_ratios(
                kw.get("energy_bins_gev", _default(validation.measure_pion_ratio, "energy_bins_gev")),
                kw["n"],
                kw["seed"],
            ),
            _plot_pion_ratio,
        ),
        "gamma_pi0": _Step(validation.measure_gamma_pi0_separation, None, _plot_gamma_pi0),
    }
    steps = {}
    for name, function in validation.VALIDATIONS.items():
        step = known.get(name)
        steps[name] = step if step is not None and step.measure is function else _Step(function)
    steps["calochallenge"] = _Step(measure_calochallenge, None, _plot_calochallenge)
    return steps


def _default(function: Callable[..., Any], parameter: str) -> Any:
    return inspect.signature(function).parameters[parameter].default


def _arguments(name: str, function: Callable[..., Any], seed: int, quick: bool, index: int) -> dict[str, Any]:
    """Keyword arguments of one measurement: the size table's, plus the seed where the function takes one."""
    parameters = inspect.signature(function).parameters
    sizes = (QUICK_SIZES if quick else FULL_SIZES).get(name, {})
    kwargs = {k: v for k, v in sizes.items() if k in parameters}
    if "seed" in parameters:
        kwargs["seed"] = seed + SEED_OFFSETS.get(name, 10 * index)
    return kwargs


def _format(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}"


def _markdown(report: dict[str, Any]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    summary = report["summary"]
    lines = [
        "# caloml simulator validation",
        "",
        f"caloml {report['caloml_version']}, seed {report['seed']}, {'quick' if report['quick'] else 'full'} sizes; "
        f"{summary['pass']} of {summary['pass'] + summary['fail']} targets pass; "
        f"{report['elapsed_s']['total']:.0f} s. Targets: `shared/reference/physics.md` section 6.",
        "",
        "| quantity | measured | target | status |",
        "|---|---|---|---|",
    ]
    for row in report["targets"]:
        unit = f" {row['unit']}" if row["unit"] else ""
        measured = _format(row["measured"]) + unit
        target = f"{row['expected']}; accept {row['tolerance']}{unit}"
        status = "pass" if row["status"] == "pass" else "**fail**"
        lines.append(f"| {cell(row['name'])} | {cell(measured)} | {cell(target)} | {status} |")
    lines += ["", "## Sizes and seeds", ""]
    for name, kwargs in report["sizes"].items():
        arguments = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        lines.append(f"- `{name}`: {arguments} ({report['elapsed_s'][name]:.1f} s)")
    lines += ["", "## Plots", ""]
    lines += [f"![{Path(name).stem}]({name})" for name in report["plots"]]
    return "\n".join(lines) + "\n"


def write_validation_report(
    out_dir: str | Path,
    *,
    seed: int = 1,
    quick: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every simulator validation, compare it with :data:`TARGETS` and write the report into ``out_dir``.

    Writes the plots (PNG), ``validation.md`` (a table quantity | measured | target | status, with the seed and
    sizes) and ``validation.json`` (every measurement, every figure, every target with its status, the seed,
    the sizes, the caloml version, the timings). The report is built in a temporary directory next to
    ``out_dir`` and renamed at the end, so a failed run leaves no partial report.

    Args:
        out_dir: the report directory; it must not exist or be empty unless ``overwrite``.
        seed: base seed; measurement ``k`` uses ``seed + SEED_OFFSETS[k]``.
        quick: small samples (:data:`QUICK_SIZES`, well under a minute) instead of :data:`FULL_SIZES` (minutes).
        overwrite: replace an existing, non-empty ``out_dir``.
        progress: show a progress bar over the measurements.

    Returns:
        The content of ``validation.json``.

    Raises:
        OutputExistsError: ``out_dir`` exists, is not empty and ``overwrite`` is False.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    check_report_dir(out, overwrite, "validation report")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the report is an ordinary directory
        start = time.perf_counter()
        measurements: dict[str, Any] = {}
        sizes: dict[str, dict[str, Any]] = {}
        elapsed: dict[str, float] = {}
        plots: list[str] = []
        steps = _steps()
        bar = tqdm(steps.items(), total=len(steps), desc="validation", unit="check", disable=None if progress else True)
        with bar:
            for index, (name, step) in enumerate(bar):
                bar.set_postfix_str(name)
                t0 = time.perf_counter()
                kwargs = _arguments(name, step.measure, seed, quick, index)
                sizes[name] = json_plain(kwargs)
                measurements[name] = json_plain(step.measure(**kwargs))
                if step.plot is not None:
                    extra = step.extra(kwargs) if step.extra is not None else {}
                    result = measurements[name] | {"n": kwargs.get("n")}
                    plots += step.plot(tmp, result, extra)
                elapsed[name] = time.perf_counter() - t0
        elapsed["total"] = time.perf_counter() - start
        figures = _derive(measurements)
        targets = evaluate_targets(figures)
        failed = [row["name"] for row in targets if row["status"] == "fail"]
        report: dict[str, Any] = {
            "caloml_version": caloml.__version__,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seed": seed,
            "quick": quick,
            "seed_offsets": dict(SEED_OFFSETS),
            "sizes": sizes,
            "elapsed_s": {k: round(v, 2) for k, v in elapsed.items()},
            "measurements": measurements,
            "figures": figures,
            "targets": targets,
            "summary": {"pass": len(targets) - len(failed), "fail": len(failed), "failed": failed},
            "plots": plots,
        }
        report = json_plain(report)
        (tmp / "validation.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        (tmp / "validation.md").write_text(_markdown(report), encoding="utf-8")
        install_report_dir(tmp, out, overwrite, "validation report")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report
