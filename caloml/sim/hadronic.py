"""Charged pions: a minimum-ionizing track up to a nuclear interaction, then a two-component hadronic shower.

Parametrization in the style of GFlash (arXiv:hep-ex/0001020): interaction depth exponential in
interaction lengths; deposited energy E_dep = (0.35 + 0.09 ln E) E; the shower is an electromagnetic Gamma
profile in X0 (share c) plus a hadronic Gamma profile in lambda_I (share 1 - c), both from the interaction
point. The electromagnetic share fluctuates strongly from event to event (pi0 production), with a few percent of
charge-exchange-like interactions that are almost entirely electromagnetic; the hadronic part is seen 1/(e/h)
times less. Energies in GeV. See ``docs/simulator.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from caloml.sim import gflash
from caloml.sim.detector import E_OVER_H, SimulationDetector
from caloml.sim.electromagnetic import HaloModel, ShowerAxes, em_showers, sampling_fluctuation
from caloml.sim.spots import Spots, group_normalized_weights, place_in_sensor_plane, repeat_by_counts

#: Sampling term of the hadronic part, 50% / sqrt(E).
HADRONIC_STOCHASTIC_TERM = 0.5
#: Concentration of the Beta distribution of the event-by-event electromagnetic share.
EM_SHARE_CONCENTRATION = 3.0
#: Lateral scale of the hadronic component (fraction of the layer's interaction length): 95% within about 1 lambda.
HADRONIC_RADIUS_LAMBDA = 0.23
#: Mode of the standard Landau distribution (scipy's parametrization).
LANDAU_MODE = -0.22278
#: Landau width relative to the most probable value for thin sensors.
LANDAU_WIDTH_OVER_MPV = 0.1


@dataclass(frozen=True)
class HadronicParameters:
    """Per-pion shower parameters, shape (B,): deposited energy (GeV), EM share and the two Gamma profiles."""

    deposited_gev: np.ndarray
    em_share: np.ndarray
    a_em: np.ndarray
    b_em: np.ndarray
    a_had: np.ndarray
    b_had: np.ndarray


def charge_exchange_share(energy_gev: np.ndarray) -> np.ndarray:
    """Probability of an almost purely electromagnetic (charge-exchange-like) first interaction: 9% at 10 GeV,
    falling logarithmically to about 4% at 500 GeV (tuned so that a few percent of low-energy pions have
    HCAL/ECAL < 0.1, see the README's simulator table)."""
    return np.clip(0.09 - 0.012 * np.log(energy_gev / 10.0), 0.03, 0.15)


def sample_hadronic_parameters(rng: np.random.Generator, energy_gev: np.ndarray) -> HadronicParameters:
    """Draw the deposited energy, the fluctuating EM share and the profile parameters of each pion shower."""
    deposited = (0.35 + 0.09 * np.log(energy_gev)) * energy_gev
    log_dep = np.log(deposited)
    high = energy_gev > 10.0
    a_em = np.where(high, 1.30 + 0.255 * log_dep, 1.08 + 0.24 * log_dep)
    b_em = np.where(high, 0.289 - 0.010 * log_dep, 0.478 - 0.135 * log_dep)
    a_had = np.where(high, 0.38 + 0.23 * log_dep, 1.17 + 0.21 * log_dep)
    b_had = np.where(high, 0.83 - 0.049 * log_dep, 2.10 - 0.72 * log_dep)
    mean_share = np.clip(np.where(high, 0.509 - 0.021 * log_dep, 0.751 - 0.177 * log_dep), 0.05, 0.95)
    share = rng.beta(mean_share * EM_SHARE_CONCENTRATION, (1.0 - mean_share) * EM_SHARE_CONCENTRATION)
    exchange = rng.random(energy_gev.shape) < charge_exchange_share(energy_gev)
    share = np.where(exchange, rng.uniform(0.88, 1.0, energy_gev.shape), share)
    return HadronicParameters(
        deposited_gev=deposited,
        em_share=share,
        a_em=np.maximum(a_em, 1.1),
        b_em=np.maximum(b_em, 0.05),
        a_had=np.maximum(a_had, 1.05),
        b_had=np.maximum(b_had, 0.2),
    )


def mip_track(
    rng: np.random.Generator, detector: SimulationDetector, axes: ShowerAxes, reach_lambda: np.ndarray
) -> Spots:
    """Landau deposits of a minimum-ionizing track in every layer it enters before ``reach_lambda``.

    ``reach_lambda`` (shape (M,)) is the depth along the track (interaction lengths) where it stops being a
    MIP. Deposits scale with the path length 1/sin(theta) and sit on the track.
    """
    layer_start = detector.lambda_bounds[:-1][None, :] / axes.sin_theta[:, None]
    crossed = layer_start < reach_lambda[:, None]
    track, layer = np.nonzero(crossed)
    mpv = detector.mip_mpv_gev[layer] / axes.sin_theta[track]
    landau = stats.landau.rvs(size=track.size, random_state=rng)
    energy = np.clip(mpv * (1.0 + LANDAU_WIDTH_OVER_MPV * (landau - LANDAU_MODE)), 0.3 * mpv, 30.0 * mpv)
    y = axes.axis_y_at_layer(detector, track, layer)
    return Spots(axes.event[track], layer, axes.x_mm[track].copy(), y, energy)


def charged_pions(
    rng: np.random.Generator,
    detector: SimulationDetector,
    energy_gev: np.ndarray,
    axes: ShowerAxes,
    *,
    halo: HaloModel | None,
) -> list[Spots]:
    """Charged pions of ``energy_gev`` (shape (M,)) entering along ``axes`` (which must start at depth 0)."""
    n_pions = energy_gev.size
    total_lambda = detector.lambda_bounds[-1] / axes.sin_theta
    interaction = rng.exponential(1.0, n_pions)  # interaction lengths along the track
    interacts = interaction < total_lambda
    parts = [mip_track(rng, detector, axes, np.where(interacts, interaction, np.inf))]
    if not interacts.any():
        return parts

    pions = np.nonzero(interacts)[0]
    params = sample_hadronic_parameters(rng, energy_gev[pions])
    # The interaction point in radiation lengths along the track (material is mapped layer by layer).
    sin_theta = axes.sin_theta[pions]
    start_x0 = np.interp(interaction[pions] * sin_theta, detector.lambda_bounds, detector.x0_bounds) / sin_theta
    sub_axes = ShowerAxes(
        event=axes.event[pions],
        start_x0=start_x0,
        x_mm=axes.x_mm[pions],
        y_mm=axes.y_mm[pions],
        sin_theta=sin_theta,
        cot_theta=axes.cot_theta[pions],
    )
    em_energy = params.deposited_gev * params.em_share
    em_profiles = gflash.LongitudinalProfiles(
        depth_max=(params.a_em - 1.0) / params.b_em, alpha=params.a_em, mean_alpha=params.a_em
    )
    parts.extend(em_showers(rng, detector, em_energy, sub_axes, halo=halo, profiles=em_profiles))
    parts.append(
        hadronic_component(
            rng, detector, params.deposited_gev * (1.0 - params.em_share), params, sub_axes, interaction[pions]
        )
    )
    return parts


def hadronic_component(
    rng: np.random.Generator,
    detector: SimulationDetector,
    energy_gev: np.ndarray,
    params: HadronicParameters,
    axes: ShowerAxes,
    interaction_lambda: np.ndarray,
) -> Spots:
    """The purely hadronic part: Gamma profile in interaction lengths, broad lateral spread, seen 1/(e/h)."""
    n_showers, n_layers = energy_gev.size, detector.n_layers
    bounds = detector.lambda_bounds[None, :] / axes.sin_theta[:, None] - interaction_lambda[:, None]
    deposited = energy_gev[:, None] * gflash.layer_fractions(bounds, params.a_had, params.b_had)
    deposited = sampling_fluctuation(rng, deposited, HADRONIC_STOCHASTIC_TERM)
    visible = deposited * detector.visible_fraction[None, :] / E_OVER_H
    n_spots = np.maximum(np.rint(40.0 * np.power(np.maximum(energy_gev, 1e-3), 0.8)), 1)
    share = visible / np.maximum(visible.sum(axis=1, keepdims=True), 1e-30)
    counts = np.where(visible > 0, np.maximum(np.ceil(n_spots[:, None] * share), 1), 0).astype(np.int64)
    shower, layer = repeat_by_counts(counts)
    group = shower * n_layers + layer
    energy = visible.ravel()[group] * group_normalized_weights(rng, group, n_showers * n_layers, 1.0)
    u = np.minimum(rng.random(shower.size), 0.99)  # r <= 10 R, about 2.3 interaction lengths
    radius = HADRONIC_RADIUS_LAMBDA * detector.lambda_mm[layer] * np.sqrt(u / (1.0 - u))
    x, y = place_in_sensor_plane(
        rng, radius, axes.x_mm[shower], axes.axis_y_at_layer(detector, shower, layer), axes.sin_theta[shower]
    )
    return Spots(axes.event[shower], layer, x, y, energy)
