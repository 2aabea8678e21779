"""Primary particles and their kinematics: energy and angle spectra, photon conversion, neutral-pion decay.

Energies in GeV, angles in radians; theta is the polar angle to the beam, 90 degrees being perpendicular
incidence on the barrel ECAL. See ``docs/simulator.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloml.particles import PARTICLES as PARTICLES  # the particle codes' home; re-exported for the simulator
from caloml.particles import PDG_ID as PDG_ID

PI0_MASS_GEV = 0.134977
#: Mean photon conversion depth, 9/7 X0.
PHOTON_CONVERSION_X0 = 9.0 / 7.0
#: Share of photons that convert in the material in front of the calorimeter (about 9% in the CLIC data).
PHOTON_EARLY_CONVERSION_SHARE = 0.09


@dataclass(frozen=True)
class Primaries:
    """Primary particles of a batch, arrays of shape (B,): energy (GeV), theta and phi (rad)."""

    energy_gev: np.ndarray
    theta_rad: np.ndarray
    phi_rad: np.ndarray


def sample_primaries(
    rng: np.random.Generator,
    n_events: int,
    *,
    energy_range_gev: tuple[float, float],
    theta_range_rad: tuple[float, float],
    log_uniform_energy: bool = False,
) -> Primaries:
    """Primary energies (uniform, or log-uniform) and angles (theta uniform in its range, phi uniform in [-pi, pi)).

    A range whose two ends are equal gives a fixed value.
    """
    low, high = energy_range_gev
    u = rng.random(n_events)
    if log_uniform_energy:
        energy = np.exp(np.log(low) + u * (np.log(high) - np.log(low)))
    else:
        energy = low + u * (high - low)
    theta = theta_range_rad[0] + rng.random(n_events) * (theta_range_rad[1] - theta_range_rad[0])
    phi = -np.pi + rng.random(n_events) * (2.0 * np.pi)
    return Primaries(energy, theta, phi)


def photon_conversions(rng: np.random.Generator, n_photons: int) -> tuple[np.ndarray, np.ndarray]:
    """Whether each photon converted in front of the calorimeter, and its shower start depth (X0 along its path).

    Early-converted photons enter as an electron-positron pair (start 0); the others convert after an
    exponential depth of mean 9/7 X0.
    """
    early = rng.random(n_photons) < PHOTON_EARLY_CONVERSION_SHARE
    depth = np.where(early, 0.0, rng.exponential(PHOTON_CONVERSION_X0, n_photons))
    return early.astype(np.int32), depth


@dataclass(frozen=True)
class Pi0Decays:
    """Two-photon decays, arrays of shape (B,): photon energies (GeV) and the opening angle (rad)."""

    energy_1_gev: np.ndarray
    energy_2_gev: np.ndarray
    opening_angle_rad: np.ndarray
    azimuth_rad: np.ndarray


def decay_pi0(rng: np.random.Generator, energy_gev: np.ndarray) -> Pi0Decays:
    """pi0 -> gamma gamma: isotropic in the rest frame, so E1 is uniform in [E(1-b)/2, E(1+b)/2].

    The opening angle follows cos(theta12) = 1 - m^2 / (2 E1 E2), at least 2 arcsin(m / E).
    """
    velocity = np.sqrt(np.clip(1.0 - (PI0_MASS_GEV / energy_gev) ** 2, 0.0, 1.0))
    energy_1 = 0.5 * energy_gev * (1.0 + velocity * (2.0 * rng.random(energy_gev.shape) - 1.0))
    energy_2 = energy_gev - energy_1
    cos_angle = 1.0 - PI0_MASS_GEV**2 / (2.0 * energy_1 * energy_2)
    opening = np.arccos(np.clip(cos_angle, -1.0, 1.0))
    azimuth = rng.random(energy_gev.shape) * (2.0 * np.pi)
    return Pi0Decays(energy_1, energy_2, opening, azimuth)
