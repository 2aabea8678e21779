"""The Grindhammer-Peters (GFlash) parametrization of electromagnetic showers, vectorized over showers.

Formulas of "The parameterized simulation of electromagnetic showers in homogeneous and sampling calorimeters"
(Grindhammer and Peters, arXiv:hep-ex/0001020) and of the Geant4 sampling-calorimeter version. Depths ``t`` are in
radiation lengths along the shower axis, energies in GeV, lateral radii in Moliere radii. Two slips of public
implementations are avoided: the critical energy comes from X0 in g/cm2 (8.0 MeV for tungsten) and the sampling
correction of alpha is not divided by Z. See ``docs/simulator.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc

#: Geant4's bounds on the fluctuated parameters.
SIGMA_MAX = 0.5
T_MIN = 1.0
ALPHA_MIN = 1.1


@dataclass(frozen=True)
class LongitudinalProfiles:
    """Per-shower Gamma-profile parameters, arrays of shape (B,).

    ``depth_max`` = T (radiation lengths) and ``alpha`` the shape of f(t) = (beta t)^(alpha-1) beta exp(-beta t) /
    Gamma(alpha) with beta = (alpha - 1) / T; ``mean_alpha`` is the average alpha at the shower's energy (used by the
    lateral profile's reduced depth).
    """

    depth_max: np.ndarray
    alpha: np.ndarray
    mean_alpha: np.ndarray

    @property
    def beta(self) -> np.ndarray:
        """Rate of the Gamma profile, 1 / radiation lengths."""
        return (self.alpha - 1.0) / self.depth_max


def sample_longitudinal(
    rng: np.random.Generator,
    energy_gev: np.ndarray,
    *,
    atomic_number: float,
    critical_energy_gev: float,
    fs: float,
    e_hat: float,
    fluctuation_scale: float = 1.0,
) -> LongitudinalProfiles:
    """Draw correlated (T, alpha) for electromagnetic showers in a sampling calorimeter.

    Args:
        rng: random generator.
        energy_gev: shower energies, shape (B,), GeV (must be above the critical energy).
        atomic_number: Z of the absorber.
        critical_energy_gev: Ec of the absorber (GeV).
        fs: X0_eff / layer pitch.
        e_hat: 1 / (1 + 0.007 (Z_passive - Z_active)).
        fluctuation_scale: multiplies the widths of the (ln T, ln alpha) fluctuations (1: GFlash's own).
    """
    ln_y = np.log(np.maximum(energy_gev / critical_energy_gev, 20.0))
    z = atomic_number
    mean_t_hom = np.maximum(ln_y - 0.812, 1.0)
    mean_a_hom = 0.81 + (0.458 + 2.26 / z) * ln_y
    mean_ln_t = np.log(np.maximum(mean_t_hom - 0.55 / fs - 0.69 * (1.0 - e_hat), T_MIN))
    mean_a = np.maximum(mean_a_hom - 0.476 / fs, ALPHA_MIN + 0.1)
    mean_ln_a = np.log(mean_a)
    sigma_t = np.minimum(1.0 / np.maximum(-2.5 + 1.25 * ln_y, 1e-3), SIGMA_MAX)
    sigma_a = np.minimum(1.0 / np.maximum(-0.82 + 0.79 * ln_y, 1e-3), SIGMA_MAX)
    rho = np.clip(0.784 - 0.023 * ln_y, -1.0, 1.0)
    z1 = fluctuation_scale * rng.standard_normal(energy_gev.shape)
    z2 = fluctuation_scale * rng.standard_normal(energy_gev.shape)
    plus = np.sqrt((1.0 + rho) / 2.0) * z1
    minus = np.sqrt((1.0 - rho) / 2.0) * z2
    depth_max = np.maximum(np.exp(mean_ln_t + sigma_t * (plus + minus)), T_MIN)
    alpha = np.maximum(np.exp(mean_ln_a + sigma_a * (plus - minus)), ALPHA_MIN)
    return LongitudinalProfiles(depth_max=depth_max, alpha=alpha, mean_alpha=mean_a)


def gamma_cdf(depth: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Share of a Gamma(alpha, beta) profile before ``depth`` (0 for negative depths); broadcasts."""
    return gammainc(alpha, beta * np.clip(depth, 0.0, None))


def layer_fractions(bounds: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Share of each shower's profile inside each layer.

    Args:
        bounds: layer boundaries in the profile's depth unit measured from the shower start, shape (B, L+1).
        alpha, beta: Gamma shape and rate, shape (B,).

    Returns:
        shape (B, L); rows sum to the contained share (below 1 when the shower leaks out of the back).
    """
    cdf = gamma_cdf(bounds, alpha[:, None], beta[:, None])
    return np.diff(cdf, axis=1)


def spot_profile(profiles: LongitudinalProfiles, atomic_number: float) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, beta) of the spot-count profile of a sampling calorimeter (GFlash), each shape (B,)."""
    z = atomic_number
    t_spot = profiles.depth_max * (0.698 + 0.00212 * z) * (0.813 + 0.0019 * z)
    a_spot = np.maximum(profiles.alpha * (0.639 + 0.00334 * z) * (0.844 + 0.0026 * z), ALPHA_MIN)
    return a_spot, (a_spot - 1.0) / t_spot


def spot_count(energy_gev: np.ndarray, stochastic_term: float) -> np.ndarray:
    """Number of energy spots of a sampling calorimeter, N = (10.3 / c) E^0.959, shape (B,)."""
    return np.maximum(np.rint(10.3 / stochastic_term * np.power(energy_gev, 0.959)), 1).astype(np.int64)


def reduced_depth(depth_x0: np.ndarray, profiles: LongitudinalProfiles, event: np.ndarray) -> np.ndarray:
    """The lateral profile's depth tau (in units of the shower maximum) of spots at ``depth_x0`` of shower ``event``."""
    alpha = profiles.alpha[event]
    mean_alpha = profiles.mean_alpha[event]
    tau = (depth_x0 / profiles.depth_max[event]) * ((alpha - 1.0) / alpha) * (mean_alpha / (mean_alpha - 1.0))
    return np.clip(tau, 0.0, 10.0)


def sample_lateral_radius(
    rng: np.random.Generator,
    tau: np.ndarray,
    energy_gev: np.ndarray,
    *,
    atomic_number: float,
    fs: float,
    e_hat: float,
) -> np.ndarray:
    """Radial distance of spots from the shower axis, in Moliere radii (two-component core + tail profile).

    Args:
        tau: reduced depth of each spot, shape (S,).
        energy_gev: energy of each spot's shower, shape (S,), GeV.
    """
    z = atomic_number
    ln_e = np.log(energy_gev)
    r_core = 0.0251 + 0.00319 * ln_e + (0.1162 - 0.000381 * z) * tau
    k1 = 0.659 - 0.00309 * z
    k4 = 0.3585 + 0.0421 * ln_e
    r_tail = k1 * (np.exp(-2.59 * (tau - 0.645)) + np.exp(k4 * (tau - 0.645)))
    p1, p2, p3 = 2.632 - 0.00094 * z, 0.401 + 0.00187 * z, 1.313 - 0.0686 * ln_e
    arg = (p2 - tau) / p3
    p_core = p1 * np.exp(arg - np.exp(arg))
    # Sampling-calorimeter corrections.
    decay = np.exp(-tau) / fs
    r_core = np.maximum(r_core - 0.0203 * (1.0 - e_hat) + 0.0397 * decay, 0.01)
    r_tail = np.maximum(r_tail - 0.14 * (1.0 - e_hat) - 0.495 * decay, 0.05)
    p_core = np.clip(p_core + (1.0 - e_hat) * (0.348 - 0.642 * np.exp(-((tau - 1.0) ** 2)) / fs), 0.0, 1.0)
    radius = np.where(rng.random(tau.shape) < p_core, r_core, r_tail)
    u = rng.random(tau.shape)
    u = np.minimum(u, 0.9999)  # caps r at 100 R: beyond any window
    return radius * np.sqrt(u / (1.0 - u))
