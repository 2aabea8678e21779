"""Physics measurements of the simulator (the GFlash parametrization, Grindhammer and Peters, arXiv:hep-ex/0001020).

Each ``measure_*`` function simulates what it needs (seeded), returns plain figures, and serves twice: the physics
tests compare them with tolerances, and the validation report (:mod:`caloml.sim.validation_report`) draws and
tabulates them. Depths are in radiation lengths of the ECAL (tungsten plus silicon, along the normal), energies in
GeV. See ``docs/simulator.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from caloml.observables.grid import moments
from caloml.observables.metrics import histogram_pair, separation_power
from caloml.sim.detector import ECAL_THIN_LAYER_VISIBLE_FRACTION
from caloml.sim.engine import simulate_batch, simulate_spots
from caloml.sim.layouts import DEGREE, LAYOUTS
from caloml.sim.particles import Primaries
from caloml.sim.run import SimulationRequest, iter_chunks

PERPENDICULAR = np.pi / 2


def simulate_showers(
    particle: str, energy_gev: float, n: int, seed: int, theta_rad: float = PERPENDICULAR, layout: str = "lcd-gen"
) -> dict[str, np.ndarray]:
    """``n`` seeded showers of ``particle`` at ``energy_gev`` (GeV) and incidence ``theta_rad`` in ``layout``
    (the layout's keys, GeV): the events every measurement here simulates."""
    rng = np.random.default_rng(seed)
    primaries = Primaries(np.full(n, float(energy_gev)), np.full(n, float(theta_rad)), np.zeros(n))
    return simulate_batch(rng, LAYOUTS[layout], particle, primaries)


def _ecal_layers():
    detector = LAYOUTS["lcd-gen"].build_detector()
    stack = detector.sections[0].stack
    return detector, stack


def calibrated_layer_energy(ecal_gev: np.ndarray) -> np.ndarray:
    """Visible energy per layer weighted by absorber thickness and divided by the thin-layer visible fraction:
    an estimate of the deposited energy per layer, shape (N, 25), GeV."""
    _, stack = _ecal_layers()
    visible = ecal_gev.sum(axis=(1, 2), dtype=np.float64)
    return visible * stack.calibration_weights[None, :] / ECAL_THIN_LAYER_VISIBLE_FRACTION


def layer_centres_x0() -> np.ndarray:
    """Depth of each ECAL layer's centre, radiation lengths, shape (25,)."""
    _, stack = _ecal_layers()
    bounds = np.concatenate([[0.0], np.cumsum(stack.layer_x0)])
    return 0.5 * (bounds[1:] + bounds[:-1])


def profile_maximum_x0(layer_energy: np.ndarray) -> float:
    """Depth of the maximum of the mean longitudinal profile dE/dt (parabola through the highest bin)."""
    _, stack = _ecal_layers()
    density = layer_energy.mean(axis=0) / stack.layer_x0
    centres = layer_centres_x0()
    k = int(np.clip(np.argmax(density), 1, density.size - 2))
    coeffs = np.polyfit(centres[k - 1 : k + 2], density[k - 1 : k + 2], 2)
    return float(-coeffs[1] / (2 * coeffs[0])) if coeffs[0] < 0 else float(centres[k])


@dataclass(frozen=True)
class LongitudinalFigures:
    """Per energy: depth of maximum and centre of gravity (X0), ECAL sampling fraction, calibrated resolution
    sigma/E, containment (calibrated ECAL sum / E); plus fits: slopes per decade, stochastic and constant terms."""

    energies_gev: list[float]
    depth_max_x0: list[float]
    centre_of_gravity_x0: list[float]
    sampling_fraction: list[float]
    resolution: list[float]
    containment: list[float]
    depth_max_per_decade_x0: float
    centre_of_gravity_per_decade_x0: float
    stochastic_term: float
    constant_term: float


def measure_longitudinal(
    energies_gev: tuple[float, ...] = (10.0, 20.0, 50.0, 100.0, 200.0, 500.0), n: int = 200, seed: int = 1
) -> LongitudinalFigures:
    """Electron showers at perpendicular incidence for each energy."""
    depth_max, cog, sf, resolution, containment = [], [], [], [], []
    centres = layer_centres_x0()
    for i, energy in enumerate(energies_gev):
        ecal = simulate_showers("electron", energy, n, seed + i)["ECAL"]
        layers = calibrated_layer_energy(ecal)
        calibrated = layers.sum(axis=1)
        depth_max.append(profile_maximum_x0(layers))
        cog.append(float(np.mean((layers * centres).sum(axis=1) / calibrated)))
        sf.append(float(np.mean(ecal.sum(axis=(1, 2, 3), dtype=np.float64)) / energy))
        resolution.append(float(np.std(calibrated) / np.mean(calibrated)))
        containment.append(float(np.mean(calibrated) / energy))
    log_e = np.log10(energies_gev)
    res = np.asarray(resolution)
    # sigma/E = a/sqrt(E) (+) b: linear least squares in (1/E, 1) for (sigma/E)^2, non-negative terms.
    design = np.stack([1.0 / np.asarray(energies_gev), np.ones(len(energies_gev))], axis=1)
    coeffs, _ = nnls(design, res**2)
    return LongitudinalFigures(
        energies_gev=list(map(float, energies_gev)),
        depth_max_x0=depth_max,
        centre_of_gravity_x0=cog,
        sampling_fraction=sf,
        resolution=resolution,
        containment=containment,
        depth_max_per_decade_x0=float(np.polyfit(log_e, depth_max, 1)[0]),
        centre_of_gravity_per_decade_x0=float(np.polyfit(log_e, cog, 1)[0]),
        stochastic_term=float(np.sqrt(coeffs[0])),
        constant_term=float(np.sqrt(coeffs[1])),
    )


def measure_photon_shift(energy_gev: float = 100.0, n: int = 300, seed: int = 11) -> dict[str, float]:
    """Centre of gravity of photon and electron showers (X0) and their difference."""
    centres = layer_centres_x0()
    out = {}
    for particle in ("electron", "photon"):
        layers = calibrated_layer_energy(simulate_showers(particle, energy_gev, n, seed)["ECAL"])
        out[particle] = float(np.mean((layers * centres).sum(axis=1) / layers.sum(axis=1)))
    return {
        "electron_cog_x0": out["electron"],
        "photon_cog_x0": out["photon"],
        "photon_minus_electron_x0": out["photon"] - out["electron"],
    }


def measure_lateral_containment(energy_gev: float = 100.0, n: int = 100, seed: int = 21) -> dict[str, float]:
    """Share of the ECAL energy within 1 and 2 Moliere radii of the axis (perpendicular electrons, from the spots;
    the radius unit is each layer's effective Moliere radius)."""
    radius, weight = _ecal_spot_radii(energy_gev, n, seed)
    total = weight.sum()
    return {f"within_{k}_rm": float(weight[radius < k].sum() / total) for k in (1, 2)} | {
        "moliere_radius_thin_layers_mm": float(LAYOUTS["lcd-gen"].build_detector().moliere_mm[0])
    }


def lateral_containment_curve(
    radii_rm: np.ndarray, energy_gev: float = 100.0, n: int = 100, seed: int = 21
) -> np.ndarray:
    """Share of the ECAL energy within each radius (Moliere units, shape (R,)) of the axis: the curve of which
    :func:`measure_lateral_containment` gives the 1 and 2 RM points (same showers for the same arguments).
    Perpendicular electrons of ``energy_gev`` (GeV); returns shape (R,)."""
    radius, weight = _ecal_spot_radii(energy_gev, n, seed)
    order = np.argsort(radius)
    cumulative = np.cumsum(weight[order])
    index = np.searchsorted(radius[order], np.asarray(radii_rm, dtype=np.float64), side="left")
    inside = np.where(index > 0, cumulative[np.maximum(index - 1, 0)], 0.0)
    return inside / weight.sum()


def _ecal_spot_radii(energy_gev: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Radius from the axis (units of each layer's Moliere radius) and deposited energy (GeV) of every ECAL spot of
    ``n`` perpendicular electrons of ``energy_gev``."""
    rng = np.random.default_rng(seed)
    layout = LAYOUTS["lcd-gen"]
    detector = layout.build_detector()
    primaries = Primaries(np.full(n, float(energy_gev)), np.full(n, PERPENDICULAR), np.zeros(n))
    spots, _ = simulate_spots(rng, layout, "electron", primaries)
    in_ecal = detector.section[spots.layer] == 0
    radius = np.hypot(spots.x_mm, spots.y_mm)[in_ecal] / detector.moliere_mm[spots.layer[in_ecal]]
    weight = spots.visible_gev[in_ecal] / detector.visible_fraction[spots.layer[in_ecal]]
    return radius, weight


def measure_angle_response(
    thetas_deg: tuple[float, ...] = (60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0),
    energy_gev: float = 100.0,
    n: int = 100,
    seed: int = 31,
) -> dict[str, list[float]]:
    """Mean measured angle (mtheta) and its spread for fixed true angles (radians)."""
    mean, spread = [], []
    for i, theta in enumerate(thetas_deg):
        mtheta = simulate_showers("electron", energy_gev, n, seed + i, theta_rad=theta * DEGREE)["mtheta"]
        mean.append(float(np.mean(mtheta)))
        spread.append(float(np.std(mtheta)))
    return {"theta_rad": [t * DEGREE for t in thetas_deg], "mtheta_mean_rad": mean, "mtheta_std_rad": spread}


def measure_occupancy(energy_gev: float = 100.0, n: int = 50, seed: int = 41) -> dict[str, float]:
    """Share of non-zero ECAL cells, of cells above 3e-4 GeV (the 3DGAN hit threshold), smallest deposits."""
    ecal = simulate_showers("electron", energy_gev, n, seed)["ECAL"]
    nonzero = ecal[ecal > 0]
    return {
        "nonzero_share": float(np.mean(ecal > 0)),
        "above_3e-4_gev_share": float(np.mean(ecal > 3e-4)),
        "cell_energy_p01_gev": float(np.percentile(nonzero, 1)),
        "cell_energy_median_gev": float(np.median(nonzero)),
    }


def measure_pion_ratio(
    energy_bins_gev: tuple[tuple[float, float], ...] = ((10.0, 50.0), (50.0, 200.0), (200.0, 510.0)),
    n: int = 1000,
    seed: int = 51,
) -> dict[str, list]:
    """Share of charged pions (and electrons) with HCAL/ECAL < 0.1, per primary-energy bin."""
    ratios = hcal_ecal_ratios(energy_bins_gev, n, seed)
    return {
        "energy_bins_gev": [list(b) for b in energy_bins_gev],
        "chpi_share_below_0.1": [float(np.mean(r < 0.1)) for r in ratios["chpi"]],
        "electron_share_below_0.1": [float(np.mean(r < 0.1)) for r in ratios["electron"]],
    }


def hcal_ecal_ratios(energy_bins_gev: Sequence[Sequence[float]], n: int, seed: int) -> dict[str, list[np.ndarray]]:
    """HCAL/ECAL energy ratio of every event of :func:`measure_pion_ratio`: per particle (``chpi``: ``n`` events,
    ``electron``: ``n // 5``), one array per primary-energy bin (GeV), bin ``i`` seeded ``seed + i``."""
    out: dict[str, list[np.ndarray]] = {"chpi": [], "electron": []}
    for i, (low, high) in enumerate(energy_bins_gev):
        for particle in ("chpi", "electron"):
            request = SimulationRequest("lcd-rec", particle, n if particle == "chpi" else n // 5, seed + i, (low, high))
            ratios = [chunk["HCAL_E"] / np.maximum(chunk["ECAL_E"], 1e-12) for chunk in iter_chunks(request, workers=1)]
            out[particle].append(np.concatenate(ratios).astype(np.float64))
    return out


def measure_gamma_pi0_separation(
    energies_gev: tuple[float, ...] = (10.0, 50.0, 100.0, 300.0), n: int = 200, seed: int = 61
) -> dict[str, list[float]]:
    """Separation power of the transverse width (max of the x and y second moments) between photons and pi0s."""
    powers = []
    for i, energy in enumerate(energies_gev):
        widths = []
        for particle in ("photon", "pi0"):
            ecal = simulate_showers(particle, energy, n, seed + i)["ECAL"]
            widths.append(np.maximum(moments(ecal, "x", 2)[:, 1], moments(ecal, "y", 2)[:, 1]))
        h1, h2, _ = histogram_pair(widths[0], widths[1], bins=30)
        powers.append(separation_power(h1, h2))
    return {"energies_gev": list(map(float, energies_gev)), "width_separation_power": powers}


VALIDATIONS: dict[str, Callable[..., object]] = {
    "longitudinal": measure_longitudinal,
    "photon_shift": measure_photon_shift,
    "lateral_containment": measure_lateral_containment,
    "angle_response": measure_angle_response,
    "occupancy": measure_occupancy,
    "pion_ratio": measure_pion_ratio,
    "gamma_pi0": measure_gamma_pi0_separation,
}
