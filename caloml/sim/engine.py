"""Simulate one batch of events in memory: primaries -> showers (spots) -> readout -> the file's keys.

Output dictionaries use the file layouts' key names with energies in GeV (the writers convert to the stored
units): for the LCD layouts ``ECAL`` (B, 51, 51, 25), ``HCAL`` (B, 11, 11, 60), ``energy``, ``theta``,
``mtheta``, ``phi``, ``eta``, ``recoTheta``, ``recoPhi``, ``recoEta``, ``pdgID``, ``ECAL_E``, ``HCAL_E``,
``openingAngle``, ``conversion`` (and the expert features for ``lcd-rec``); for CaloChallenge
``incident_energies`` (B, 1) and ``showers`` (B, layers, alphas, radii). See ``docs/simulator.md``.
"""

from __future__ import annotations

import numpy as np

from caloml.data.lcd_features import expert_features
from caloml.geometry import CLIC_ECAL_FRONT_MM, CLIC_HCAL_FRONT_MM, CartesianCalorimeter, CylindricalCalorimeter
from caloml.observables.angle import measured_angle
from caloml.sim import readout
from caloml.sim.crystal import simulate_crystal_batch
from caloml.sim.detector import SimulationDetector
from caloml.sim.electromagnetic import ShowerAxes, em_showers
from caloml.sim.hadronic import charged_pions
from caloml.sim.layouts import SimulationLayout
from caloml.sim.particles import PDG_ID, Primaries, decay_pi0, photon_conversions
from caloml.sim.spots import Spots

#: Distance from the interaction point to the ECAL face used for the pi0 photon separation (mm).
ECAL_FACE_DISTANCE_MM = CLIC_ECAL_FRONT_MM


def primary_axes(primaries: Primaries, event: np.ndarray | None = None) -> ShowerAxes:
    """Axes starting at the entry point, one per event (or per ``event`` index)."""
    n = primaries.energy_gev.size
    event = np.arange(n) if event is None else event
    theta = primaries.theta_rad[event]
    zeros = np.zeros(event.size)
    return ShowerAxes(event, zeros, zeros, zeros.copy(), np.sin(theta), np.cos(theta) / np.sin(theta))


def simulate_spots(
    rng: np.random.Generator, layout: SimulationLayout, particle: str, primaries: Primaries
) -> tuple[Spots, dict[str, np.ndarray]]:
    """The spots of every event (core first, then halo) and the particle-level truth (``openingAngle``,
    ``conversion``)."""
    detector = layout.build_detector()
    n = primaries.energy_gev.size
    energy = primaries.energy_gev
    axes = primary_axes(primaries)
    opening = np.full(n, -1.0)
    conversion = np.zeros(n, np.int32)
    if particle == "electron":
        parts = em_showers(rng, detector, energy, axes, halo=layout.halo)
    elif particle == "photon":
        conversion, start = photon_conversions(rng, n)
        photon_axes = ShowerAxes(axes.event, start, axes.x_mm, axes.y_mm, axes.sin_theta, axes.cot_theta)
        parts = em_showers(rng, detector, energy, photon_axes, halo=layout.halo)
    elif particle == "pi0":
        decay = decay_pi0(rng, energy)
        opening = decay.opening_angle_rad
        early, start = photon_conversions(rng, 2 * n)
        conversion = (early[:n] + early[n:]).astype(np.int32)
        # Impact points on the ECAL face: separated by distance x opening angle, the energy-weighted mean on the
        # pi0 axis; the separation lies in the plane transverse to the flight direction (stretched along y).
        separation = ECAL_FACE_DISTANCE_MM / axes.sin_theta * np.tan(opening)
        ux, uy = np.cos(decay.azimuth_rad), np.sin(decay.azimuth_rad) / axes.sin_theta
        share_1 = decay.energy_1_gev / energy
        dx = np.concatenate([separation * (1 - share_1) * ux, -separation * share_1 * ux])
        dy = np.concatenate([separation * (1 - share_1) * uy, -separation * share_1 * uy])
        both = np.concatenate([axes.event, axes.event])
        photon_axes = ShowerAxes(both, start, dx, dy, axes.sin_theta[both], axes.cot_theta[both])
        photon_energy = np.concatenate([decay.energy_1_gev, decay.energy_2_gev])
        parts = em_showers(rng, detector, photon_energy, photon_axes, halo=layout.halo)
    elif particle == "chpi":
        parts = charged_pions(rng, detector, energy, axes, halo=layout.halo)
    else:
        raise ValueError(f"unknown particle {particle!r}")
    return Spots.concatenate(parts), {"openingAngle": opening, "conversion": conversion}


def simulate_batch(
    rng: np.random.Generator, layout: SimulationLayout, particle: str, primaries: Primaries
) -> dict[str, np.ndarray]:
    """Simulate the events of ``primaries`` into ``layout``'s keys (energies in GeV)."""
    if layout.file_layout == "crystal":
        return simulate_crystal_batch(rng, layout.detector, particle, primaries)
    spots, truth = simulate_spots(rng, layout, particle, primaries)
    detector = layout.build_detector()
    n = primaries.energy_gev.size
    if layout.file_layout == "calochallenge":
        grid = detector.sections[0]
        assert isinstance(grid, CylindricalCalorimeter)
        showers = readout.bin_cylindrical(spots, grid, n)
        return {"incident_energies": primaries.energy_gev[:, None].astype(np.float32), "showers": showers}

    windows, bary = lcd_windows(rng, spots, detector, primaries)
    ecal, hcal = readout.bin_windows(spots, detector, windows, n)
    return assemble_lcd_event_keys(layout, particle, primaries, ecal, hcal, bary, truth)


def lcd_windows(
    rng: np.random.Generator, spots: Spots, detector: SimulationDetector, primaries: Primaries
) -> tuple[list[readout.Window], readout.Barycentre]:
    """Where the ECAL and HCAL windows of each event lie (the cell grids' random offsets are drawn here), and the
    barycentre of the ECAL core spots they are centred on."""
    n = primaries.energy_gev.size
    ecal_grid, hcal_grid = detector.sections
    assert isinstance(ecal_grid, CartesianCalorimeter)
    assert isinstance(hcal_grid, CartesianCalorimeter)
    cot_theta = np.cos(primaries.theta_rad) / np.sin(primaries.theta_rad)
    bary = readout.barycentre(spots.head(spots.n_core if spots.n_core is not None else spots.size), detector, n)
    hcal_depth = CLIC_HCAL_FRONT_MM - CLIC_ECAL_FRONT_MM
    ecal_offset = rng.random((2, n)) * ecal_grid.cell_mm
    hcal_offset = rng.random((2, n)) * hcal_grid.cell_mm
    windows = [
        readout.Window(0, bary.x_mm, bary.y_mm, ecal_offset[0], ecal_offset[1]),
        readout.Window(
            1, bary.x_mm, bary.y_mm + (hcal_depth - bary.depth_mm) * cot_theta, hcal_offset[0], hcal_offset[1]
        ),
    ]
    return windows, bary


def assemble_lcd_event_keys(
    layout: SimulationLayout,
    particle: str,
    primaries: Primaries,
    ecal: np.ndarray,
    hcal: np.ndarray,
    bary: readout.Barycentre,
    truth: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The LCD keys of a batch: cells, truth and reconstructed angles, sums, measured angle, features."""
    theta = primaries.theta_rad
    radius = CLIC_ECAL_FRONT_MM + bary.depth_mm
    beam = CLIC_ECAL_FRONT_MM * np.cos(theta) / np.sin(theta) + bary.y_mm
    reco_theta = np.arctan2(radius, beam)
    reco_phi = np.angle(np.exp(1j * (primaries.phi_rad + np.arctan2(bary.x_mm, radius))))
    n = theta.size
    f32 = np.float32
    events = {
        "ECAL": ecal,
        "HCAL": hcal,
        "energy": primaries.energy_gev.astype(f32),
        "theta": theta.astype(f32),
        "mtheta": measured_angle(ecal).astype(f32),
        "phi": primaries.phi_rad.astype(f32),
        "eta": (-np.log(np.tan(theta / 2.0))).astype(f32),
        "recoTheta": reco_theta.astype(f32),
        "recoPhi": reco_phi.astype(f32),
        "recoEta": (-np.log(np.tan(reco_theta / 2.0))).astype(f32),
        "pdgID": np.full(n, PDG_ID[particle], np.int32),
        "ECAL_E": ecal.sum(axis=(1, 2, 3), dtype=np.float64).astype(f32),
        "HCAL_E": hcal.sum(axis=(1, 2, 3), dtype=np.float64).astype(f32),
        "openingAngle": truth["openingAngle"].astype(f32),
        "conversion": truth["conversion"].astype(np.int32),
    }
    if layout.expert_features:
        events.update(expert_features(ecal, hcal))
    return events
