"""Electromagnetic showers as spots: GFlash profiles, sampling fluctuations, visible energy and the soft halo.

One call develops M showers (electrons, converted photons, the photons of a pi0 or the electromagnetic part of
a hadronic shower) through all layers of a :class:`~caloml.sim.detector.SimulationDetector`. See ``docs/simulator.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloml.sim import gflash
from caloml.sim.detector import SimulationDetector
from caloml.sim.spots import Spots, group_normalized_weights, place_in_sensor_plane, repeat_by_counts


@dataclass(frozen=True)
class ShowerAxes:
    """Where M showers start, arrays of shape (M,).

    ``event``: index of the event each shower belongs to; ``start_x0``: depth of the shower start along its axis
    behind the entry face (radiation lengths); ``x_mm``, ``y_mm``: transverse offset of the axis at the entry face
    relative to the primary's entry point; ``sin_theta``, ``cot_theta``: the axis inclination.
    """

    event: np.ndarray
    start_x0: np.ndarray
    x_mm: np.ndarray
    y_mm: np.ndarray
    sin_theta: np.ndarray
    cot_theta: np.ndarray

    def axis_y_at_layer(self, detector: SimulationDetector, shower: np.ndarray, layer: np.ndarray) -> np.ndarray:
        """y of the axis of shower ``shower`` in the sensor plane of ``layer`` (mm), arrays of shape (S,)."""
        return self.y_mm[shower] + detector.sensor_depth_mm[layer] * self.cot_theta[shower]

    def axis_y_table(self, detector: SimulationDetector) -> np.ndarray:
        """y of every shower's axis in every layer's sensor plane, flattened (M * L,), float32, mm: index it with
        ``shower * n_layers + layer`` (one gather per spot instead of three)."""
        table = self.y_mm[:, None] + detector.sensor_depth_mm[None, :] * self.cot_theta[:, None]
        return table.astype(np.float32).ravel()


@dataclass(frozen=True)
class HaloModel:
    """The wide, soft component: ``hits_at_100_gev`` deposits per 100 GeV shower (scaling as E^0.6) carrying
    ``energy_share`` of the visible energy, spread with a lateral scale of ``radius_moliere`` Moliere radii;
    ``uniform_depth_share`` of the hits are spread uniformly in depth, the rest follow the shower's profile."""

    hits_at_100_gev: float
    energy_share: float = 0.015
    radius_moliere: float = 5.0
    uniform_depth_share: float = 0.5


def sampling_fluctuation(rng: np.random.Generator, deposited_gev: np.ndarray, stochastic_term: float) -> np.ndarray:
    """Replace each deposit dE (GeV) by a Gamma draw of mean dE and variance c^2 dE (c = stochastic term)."""
    c2 = stochastic_term**2
    return rng.gamma(np.maximum(deposited_gev, 0.0) / c2) * c2


def em_showers(
    rng: np.random.Generator,
    detector: SimulationDetector,
    energy_gev: np.ndarray,
    axes: ShowerAxes,
    *,
    halo: HaloModel | None,
    visible_scale: np.ndarray | float = 1.0,
    profiles: gflash.LongitudinalProfiles | None = None,
) -> list[Spots]:
    """Develop M electromagnetic showers of ``energy_gev`` (shape (M,)) along ``axes``.

    Per shower: correlated (T, alpha) draw, layer shares from the Gamma profile along the inclined axis, a
    sampling fluctuation per layer, visible energy through each layer's visible fraction (times
    ``visible_scale``, e.g. 1/(e/h)), then spots placed with the two-component lateral profile, plus a soft halo.
    ``profiles`` replaces the GFlash (T, alpha) draw (the electromagnetic part of hadronic showers has its own).
    Returns the core spots and, with a halo model, the halo spots.
    """
    n_showers = energy_gev.size
    n_layers = detector.n_layers
    profiles = profiles or gflash.sample_longitudinal(
        rng,
        energy_gev,
        atomic_number=detector.atomic_number,
        critical_energy_gev=detector.critical_energy_gev,
        fs=detector.em_fs,
        e_hat=detector.em_e_hat,
    )
    bounds = detector.x0_bounds[None, :] / axes.sin_theta[:, None] - axes.start_x0[:, None]
    deposited = energy_gev[:, None] * gflash.layer_fractions(bounds, profiles.alpha, profiles.beta)
    deposited = sampling_fluctuation(rng, deposited, detector.stochastic_term)
    visible = deposited * detector.visible_fraction[None, :] * visible_scale

    halo_share = halo.energy_share if halo is not None else 0.0
    core_visible = visible * (1.0 - halo_share)

    # Spot counts per layer follow the spot profile; every layer with energy gets at least one spot.
    a_spot, b_spot = gflash.spot_profile(profiles, detector.atomic_number)
    spot_share = gflash.layer_fractions(bounds, a_spot, b_spot)
    n_spots = gflash.spot_count(energy_gev, detector.stochastic_term)
    counts = np.where(core_visible > 0, np.maximum(np.ceil(n_spots[:, None] * spot_share), 1), 0).astype(np.int64)
    shower, layer = repeat_by_counts(counts)
    group = shower * n_layers + layer
    energy = core_visible.ravel()[group] * group_normalized_weights(rng, group, n_showers * n_layers, 1.0)

    # Depth of each spot inside its layer (radiation lengths from the shower start) for the lateral profile.
    low, high = bounds[shower, layer], bounds[shower, layer + 1]
    depth = np.maximum(low + rng.random(shower.size) * (high - low), 0.0)
    tau = gflash.reduced_depth(depth, profiles, shower)
    radius = (
        gflash.sample_lateral_radius(
            rng,
            tau,
            energy_gev[shower],
            atomic_number=detector.atomic_number,
            fs=detector.em_fs,
            e_hat=detector.em_e_hat,
        )
        * detector.moliere_mm[layer]
    )
    axis_y = axes.axis_y_table(detector)
    x, y = place_in_sensor_plane(rng, radius, axes.x_mm[shower], axis_y[group], axes.sin_theta[shower])
    core = Spots(axes.event[shower], layer, x, y, energy)
    if halo is None:
        return [core]
    halo_part = halo_spots(
        rng, detector, energy_gev, axes, visible.sum(axis=1) * halo_share, halo, layer, counts.sum(axis=1), axis_y
    )
    return [core, halo_part]


def halo_spots(
    rng: np.random.Generator,
    detector: SimulationDetector,
    energy_gev: np.ndarray,
    axes: ShowerAxes,
    halo_visible: np.ndarray,
    halo: HaloModel,
    core_layer: np.ndarray,
    core_counts: np.ndarray,
    axis_y: np.ndarray,
) -> Spots:
    """The soft halo: many tiny deposits far from the axis, sampled directly (not one draw per cell).

    ``halo_visible`` (shape (M,)) is the visible energy each shower gives its halo. Each halo hit takes the layer
    of a random core spot of its shower (``core_layer``, grouped by shower with ``core_counts`` (M,) spots each),
    so the halo follows the shower's depth profile, except for ``uniform_depth_share`` of the hits spread
    uniformly over the first section's layers. ``axis_y`` is the table of :meth:`ShowerAxes.axis_y_table`.
    Radii follow the long-tailed r^2 / (r^2 + R^2) law with R = ``radius_moliere`` Moliere radii; energies are
    u^4 (a steep soft spectrum spanning decades), scaled so that every shower's halo carries its halo energy on
    average.
    """
    n_showers = energy_gev.size
    n_hits = rng.poisson(halo.hits_at_100_gev * np.power(energy_gev / 100.0, 0.6)) * (core_counts > 0)
    shower = np.repeat(np.arange(n_showers), n_hits)
    first_spot = np.concatenate([[0], np.cumsum(core_counts)[:-1]])
    pick = first_spot[shower] + (rng.random(shower.size, dtype=np.float32) * core_counts[shower]).astype(np.int64)
    layer = core_layer[np.minimum(pick, core_layer.size - 1)]
    # Soft photons travel far: a share of the hits is spread uniformly over the first section's layers from the
    # shower's first layer on (one uniform number decides both whether and where; a shower that starts behind
    # the first section keeps its profile-following hits). Per-shower quantities are computed per shower and
    # gathered, and the spread layers only where a hit is spread (the same values as per hit, fewer passes).
    n_front = int(np.count_nonzero(detector.section == 0))
    shower_first_layer = core_layer[np.minimum(first_spot, core_layer.size - 1)]
    shower_span = np.maximum(n_front - shower_first_layer, 0).astype(np.float32)
    share = np.float32(halo.uniform_depth_share)
    u = rng.random(shower.size, dtype=np.float32)
    spread = np.flatnonzero((u < share) & (shower_span > 0)[shower])
    spread_shower = shower[spread]
    layer[spread] = shower_first_layer[spread_shower] + (u[spread] / share * shower_span[spread_shower]).astype(
        np.int64
    )
    u = rng.random(shower.size, dtype=np.float32)
    # E[u^4] = 1/5: each hit carries 5 u^4 / n_hits of its shower's halo energy, exact on average (the sum
    # fluctuates by about 1% of the 1.5% halo share, and saves a pass over the hits).
    per_hit = (5.0 * halo_visible / np.maximum(n_hits, 1)).astype(np.float32)
    energy = np.multiply(u, u, out=u)
    energy *= energy
    energy *= per_hit[shower]  # (u u)^2 per_hit, in place
    u = np.minimum(rng.random(shower.size, dtype=np.float32), np.float32(0.99))  # r <= 10 R
    # One lateral scale for the whole halo: the first layer's Moliere radius.
    ratio = np.subtract(np.float32(1), u)
    np.divide(u, ratio, out=ratio)
    radius = np.sqrt(ratio, out=ratio)
    radius *= np.float32(halo.radius_moliere * detector.moliere_mm[0])
    x, y = place_in_sensor_plane(
        rng,
        radius,
        axes.x_mm.astype(np.float32)[shower],
        axis_y[shower * detector.n_layers + layer],
        axes.sin_theta.astype(np.float32)[shower],
    )
    return Spots(axes.event[shower], layer, x, y, energy, halo=True)
