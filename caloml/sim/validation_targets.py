"""The simulator's validation targets, defined once: what each measured figure must reach, and where that comes from.

Every status is ``pass`` or ``fail``; a tolerance is never adjusted to the result. The sources are the textbook
shower physics of the Review of Particle Physics, the GFlash parametrization (Grindhammer and Peters,
arXiv:hep-ex/0001020), the CALICE Si-W test beam and the CLIC/LCD calorimeter data. See ``docs/simulator.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from caloml.sim.crystal_validation import CRYSTAL_TARGETS, crystal_figures

__all__ = ["TARGETS", "Target", "derive_figures", "evaluate_targets", "target_of"]

#: The sources of the targets.
SHOWER_PHYSICS = 'Review of Particle Physics (Particle Data Group), "Passage of particles through matter"'
GFLASH = "GFlash (Grindhammer and Peters, arXiv:hep-ex/0001020)"
CALICE = "CALICE Si-W ECAL physics prototype, electrons (arXiv:0811.2354)"
LCD_DATA = (
    '"Calorimetry with deep learning: particle simulation and reconstruction for collider physics" (arXiv:1912.06794)'
)
CALOCHALLENGE = "Fast Calorimeter Simulation Challenge 2022, dataset 2"


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


TARGETS: tuple[Target, ...] = (
    Target(
        "depth of maximum, slope per decade of E (e-)",
        "longitudinal.depth_max_per_decade_x0",
        "≈ 2.3",
        1.8,
        2.8,
        "X0/decade",
        f"{SHOWER_PHYSICS}: depth of the longitudinal maximum grows like ln E",
    ),
    Target(
        "centre of gravity, slope per decade of E (e-)",
        "longitudinal.centre_of_gravity_per_decade_x0",
        "≈ 2.1",
        1.6,
        2.6,
        "X0/decade",
        f"{SHOWER_PHYSICS}: centre of gravity, cut by the finite depth",
    ),
    Target(
        "depth of maximum at 10 GeV (e-)",
        "longitudinal.depth_max_10gev_x0",
        "≈ 5.9 (6.3 minus 0.3-0.5 for sampling)",
        5.0,
        6.8,
        "X0",
        f"{GFLASH}: T about 6.3 X0 at 10 GeV, homogeneous",
    ),
    Target(
        "depth of maximum at 100 GeV (e-)",
        "longitudinal.depth_max_100gev_x0",
        "≈ 8.2 (8.6 minus 0.3-0.5 for sampling)",
        7.4,
        9.0,
        "X0",
        f"{GFLASH}: T about 8.6 X0 at 100 GeV, homogeneous",
    ),
    Target(
        "photon minus electron centre of gravity (100 GeV)",
        "photon_shift.photon_minus_electron_x0",
        "≈ 1",
        0.6,
        1.5,
        "X0",
        f"{SHOWER_PHYSICS}: photon showers about 1 X0 deeper than electron showers",
    ),
    Target(
        "lateral containment within 1 RM (100 GeV e-)",
        "lateral_containment.within_1_rm",
        "≈ 0.90",
        0.85,
        0.95,
        "",
        f"{SHOWER_PHYSICS}: lateral containment in Moliere radii",
    ),
    Target(
        "lateral containment within 2 RM (100 GeV e-)",
        "lateral_containment.within_2_rm",
        "≈ 0.95",
        0.92,
        0.99,
        "",
        f"{SHOWER_PHYSICS}: lateral containment in Moliere radii",
    ),
    Target(
        "longitudinal containment, slope per decade of E",
        "longitudinal.containment_per_decade",
        "< 0 (leakage grows with E)",
        None,
        0.0,
        "1/decade",
        f"{SHOWER_PHYSICS}: longitudinal leakage (calibrated ECAL sum / E, linear fit in log10 E)",
        inclusive=False,
    ),
    Target(
        "longitudinal containment at 500 GeV",
        "longitudinal.containment_500gev",
        "most of the shower contained",
        0.95,
        None,
        "",
        f"{SHOWER_PHYSICS}: the 22.6 X0 ECAL contains most of a 500 GeV shower (calibrated ECAL sum / E)",
        inclusive=False,
    ),
    Target(
        "ECAL sampling fraction at 100 GeV",
        "longitudinal.sampling_fraction_100gev",
        "≈ 0.02",
        0.017,
        0.023,
        "",
        f"{LCD_DATA}: ECAL sampling fraction",
    ),
    Target(
        "sampling fraction, 500 GeV minus 10 GeV",
        "longitudinal.sampling_fraction_500_minus_10gev",
        "< 0 (slowly decreasing)",
        None,
        0.0,
        "",
        f"{LCD_DATA}: ECAL sampling fraction slowly decreasing with energy",
        inclusive=False,
    ),
    Target(
        "stochastic term a (calibrated sum, e-)",
        "longitudinal.stochastic_term",
        "0.166",
        0.13,
        0.20,
        "√GeV",
        f"{CALICE}: energy resolution 16.6%/√E ⊕ 1.1%",
    ),
    Target(
        "constant term b (calibrated sum, e-)",
        "longitudinal.constant_term",
        "0.01-0.02",
        0.0,
        0.03,
        "",
        f"{CALICE}: energy resolution",
    ),
    Target(
        "measured angle at 90°, |mean - π/2|",
        "angle_response.bias_at_90_rad",
        "0 (unbiased)",
        None,
        0.01,
        "rad",
        f"{LCD_DATA}: incidence angle unbiased at 90 degrees",
        inclusive=False,
    ),
    Target(
        "measured angle, smallest rise between neighbouring θ",
        "angle_response.min_step_rad",
        "> 0 (monotonic)",
        0.0,
        None,
        "rad",
        f"{LCD_DATA}: measured angle rises monotonically with theta",
        inclusive=False,
    ),
    Target(
        "measured angle, largest |d(90°+x) + d(90°-x)|",
        "angle_response.max_asymmetry_rad",
        "0 (symmetric)",
        None,
        0.02,
        "rad",
        f"{LCD_DATA}: measured angle symmetric about 90 degrees (d = mean - π/2)",
        inclusive=False,
    ),
    Target(
        "occupancy (non-zero ECAL cells, 100 GeV e-)",
        "occupancy.nonzero_share",
        "a sizeable fraction (GEANT4 ≈ 0.20)",
        0.10,
        0.30,
        "",
        f"{LCD_DATA}: occupancy (GEANT4 about 20% at 100 GeV)",
    ),
    Target(
        "π± with HCAL/ECAL < 0.1, lowest energy bin",
        "pion_ratio.chpi_share_lowest_bin",
        "a few percent",
        0.01,
        0.10,
        "",
        f"{LCD_DATA}: e vs pi+- from HCAL/ECAL",
    ),
    Target(
        "π± with HCAL/ECAL < 0.1, lowest minus highest bin",
        "pion_ratio.chpi_share_lowest_minus_highest_bin",
        "> 0 (more at low energy)",
        0.0,
        None,
        "",
        f"{LCD_DATA}: e vs pi+- from HCAL/ECAL",
        inclusive=False,
    ),
    Target(
        "e- with HCAL/ECAL < 0.1, smallest over bins",
        "pion_ratio.electron_share_min",
        "essentially all",
        0.99,
        None,
        "",
        f"{LCD_DATA}: e vs pi+- from HCAL/ECAL",
        inclusive=False,
    ),
    Target(
        "γ/π0 width separation power at 10 GeV",
        "gamma_pi0.separation_10gev",
        "large (two clusters)",
        0.5,
        None,
        "",
        f"{LCD_DATA}: gamma vs pi0 separable at low energy",
        inclusive=False,
    ),
    Target(
        "γ/π0 width separation power, largest at E ≥ 100 GeV",
        "gamma_pi0.max_separation_from_100gev",
        "small (merged showers)",
        None,
        0.3,
        "",
        f"{LCD_DATA}: gamma vs pi0 nearly indistinguishable above about 100 GeV",
        inclusive=False,
    ),
    Target(
        "CaloChallenge-2 E_tot/E_inc mode (e-, 1 GeV-1 TeV)",
        "calochallenge.etot_over_einc_mode",
        "≈ 1",
        0.9,
        1.05,
        "",
        f"{CALOCHALLENGE}: voxels calibrated so that E_tot/E_inc peaks near 1",
    ),
    *(Target(*row) for row in CRYSTAL_TARGETS),  # the crystal-5x5 array, caloml.sim.crystal_validation
)


def target_of(measured_key: str) -> Target:
    """The target of a measured figure (``measurement.figure``)."""
    return next(t for t in TARGETS if t.measured_key == measured_key)


def _at(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    for xi, yi in zip(xs, ys, strict=True):
        if math.isclose(float(xi), x, rel_tol=1e-9):
            return float(yi)
    return None


def derive_figures(measurements: dict[str, Any]) -> dict[str, float | None]:
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
    figures.update(crystal_figures(measurements.get("crystal")))
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
