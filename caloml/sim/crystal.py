"""A 5 x 5 array of homogeneous CsI(Tl) crystals: geometry, shower development and readout (``crystal-5x5``).

Electrons and photons enter at normal incidence, at a point uniform over the central crystal's face. The shower is
the GFlash parametrization for homogeneous media (Grindhammer, Peters, hep-ex/0001020; no sampling term): a
correlated Gamma longitudinal profile, cut by the crystals' 30 cm depth (rear leakage), and energy spots on the
two-component radial profile, binned into the crystals (what falls outside the array is lateral leakage). The
readout of every crystal then adds, in order: a light-collection non-uniformity (the constant term), the
photo-statistics of the scintillation light, the electronic noise, and the hit threshold.

Every value and its source is in :data:`CSI_5X5` and ``docs/crystal-geometry.md``. Units: mm, GeV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloml.geometry import Material
from caloml.sim import gflash
from caloml.sim.particles import PDG_ID, PHOTON_CONVERSION_X0, Primaries
from caloml.sim.spots import group_normalized_weights, repeat_by_counts

#: CsI(Tl), PDG "Atomic and nuclear properties of materials": X0 = 1.86 cm (8.39 g/cm2 at 4.51 g/cm3), nuclear
#: interaction length 39.3 cm, Moliere radius 3.57 cm, critical energy 11.17 MeV (electrons); Z = 54 is the mean of
#: caesium (55) and iodine (53).
CSI_TL = Material("CsI(Tl)", 54.0, 18.6, 393.0, 35.7, 11.17)
#: Density of CsI(Tl), g/cm3 (PDG).
CSI_DENSITY_G_CM3 = 4.51
#: GFlash's sampling correction 1 / Fs vanishes for a homogeneous medium: a huge Fs switches it off.
HOMOGENEOUS_FS = 1.0e12


@dataclass(frozen=True)
class CrystalArray:
    """A square array of identical crystals, one readout each (no longitudinal segmentation).

    Attributes:
        name: the ``--geometry`` name.
        material: the crystal material (lengths in mm, critical energy in MeV).
        n_side: crystals per side (5: a 5 x 5 array).
        face_mm: side of a crystal's front face (mm).
        length_mm: crystal length along the beam (mm).
        depth_slices: slices the longitudinal profile is integrated in (the readout sums them).
        photoelectrons_per_mev: mean photoelectrons per MeV deposited (Poisson photo-statistics).
        noise_gev: Gaussian electronic noise per crystal (GeV, standard deviation).
        threshold_gev: crystals below this energy after noise read zero (GeV).
        longitudinal_fluctuation_scale: scales GFlash's shower-to-shower fluctuations of the longitudinal profile
            (see :data:`CSI_5X5`).
        nonuniformity: relative standard deviation of each crystal's light collection per shower (the shower
            depth varies, the light collection along the crystal is not flat): the resolution's constant term.
    """

    name: str
    material: Material
    n_side: int
    face_mm: float
    length_mm: float
    depth_slices: int
    photoelectrons_per_mev: float
    noise_gev: float
    threshold_gev: float
    longitudinal_fluctuation_scale: float
    nonuniformity: float

    @property
    def half_width_mm(self) -> float:
        """Half the width of the whole array (mm)."""
        return 0.5 * self.n_side * self.face_mm

    @property
    def length_x0(self) -> float:
        """Crystal length in radiation lengths."""
        return self.length_mm / self.material.radiation_length_mm

    def cell_index(self, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
        """Flat crystal index ``row * n_side + column`` of points (x along columns), -1 outside the array."""
        column = np.floor((x_mm + self.half_width_mm) / self.face_mm).astype(np.int64)
        row = np.floor((y_mm + self.half_width_mm) / self.face_mm).astype(np.int64)
        inside = (column >= 0) & (column < self.n_side) & (row >= 0) & (row < self.n_side)
        return np.where(inside, row * self.n_side + column, -1)


#: The ``crystal-5x5`` array. Crystals 6 x 6 x 30 cm (16.1 X0, 1.68 Moliere radii wide). 5000 photoelectrons per MeV:
#: CsI(Tl) read out by silicon photodiodes (Belle ECL, NIM A 479 (2002) 117, reports about 5000 p.e./MeV); 0.5 MeV
#: noise and a 1.5 MeV (3 sigma) threshold per crystal, design choices of the order of the 0.2-0.5 MeV
#: noise of the BaBar and Belle crystals; a 1% light-collection non-uniformity, the size of the constant terms of
#: those calorimeters (BaBar: 2.32%/E^1/4 + 1.85%, NIM A 479 (2002) 1; Belle: 1.34%).
CSI_5X5 = CrystalArray(
    name="crystal-5x5",
    material=CSI_TL,
    n_side=5,
    face_mm=60.0,
    length_mm=300.0,
    depth_slices=30,
    photoelectrons_per_mev=5000.0,
    noise_gev=0.5e-3,
    threshold_gev=1.5e-3,
    longitudinal_fluctuation_scale=0.5,
    nonuniformity=0.01,
)

CRYSTAL_ARRAYS = {CSI_5X5.name: CSI_5X5}


def spot_count(energy_gev: np.ndarray, atomic_number: float) -> np.ndarray:
    """GFlash's number of energy spots in a homogeneous medium, N = 93 ln(Z) E^0.876 (E in GeV), shape (B,)."""
    return np.maximum(np.rint(93.0 * np.log(atomic_number) * np.power(energy_gev, 0.876)), 1).astype(np.int64)


def sample_impact_points(rng: np.random.Generator, n: int, array: CrystalArray = CSI_5X5) -> np.ndarray:
    """Impact points uniform over the central crystal's face, shape (n, 2): x, y in mm from the array's centre."""
    return (rng.random((n, 2)) - 0.5) * array.face_mm


def deposit_showers(
    rng: np.random.Generator,
    energy_gev: np.ndarray,
    impact_mm: np.ndarray,
    start_x0: np.ndarray,
    array: CrystalArray = CSI_5X5,
) -> np.ndarray:
    """Deposited energy per crystal before the readout, shape (B, n_side, n_side), GeV.

    ``energy_gev`` (B,) shower energies, ``impact_mm`` (B, 2) entry points, ``start_x0`` (B,) depth where the shower
    starts (0 for electrons, the conversion depth for photons), radiation lengths.
    """
    n_showers = energy_gev.size
    material = array.material
    z = material.atomic_number
    profiles = gflash.sample_longitudinal(
        rng,
        energy_gev,
        atomic_number=z,
        critical_energy_gev=material.critical_energy_mev * 1e-3,
        fs=HOMOGENEOUS_FS,
        e_hat=1.0,
        fluctuation_scale=array.longitudinal_fluctuation_scale,
    )
    slice_bounds = np.linspace(0.0, array.length_x0, array.depth_slices + 1)
    bounds = slice_bounds[None, :] - start_x0[:, None]
    deposited = energy_gev[:, None] * gflash.layer_fractions(bounds, profiles.alpha, profiles.beta)
    # Spots follow the (shorter, narrower) spot profile of GFlash in homogeneous media.
    t_spot = profiles.depth_max * (0.698 + 0.00212 * z)
    a_spot = np.maximum(profiles.alpha * (0.639 + 0.00334 * z), gflash.ALPHA_MIN)
    spot_share = gflash.layer_fractions(bounds, a_spot, (a_spot - 1.0) / t_spot)
    counts = np.where(deposited > 0, np.maximum(np.ceil(spot_count(energy_gev, z)[:, None] * spot_share), 1), 0).astype(
        np.int64
    )
    shower, layer = repeat_by_counts(counts)
    group = shower * array.depth_slices + layer
    energy = deposited.ravel()[group] * group_normalized_weights(rng, group, n_showers * array.depth_slices, 1.0)
    low, high = bounds[shower, layer], bounds[shower, layer + 1]
    depth = np.maximum(low + rng.random(shower.size) * (high - low), 0.0)
    tau = gflash.reduced_depth(depth, profiles, shower)
    radius = gflash.sample_lateral_radius(
        rng, tau, energy_gev[shower], atomic_number=z, fs=HOMOGENEOUS_FS, e_hat=1.0
    ) * np.float64(material.moliere_radius_mm)
    azimuth = rng.random(shower.size) * (2.0 * np.pi)
    cell = array.cell_index(
        impact_mm[shower, 0] + radius * np.cos(azimuth), impact_mm[shower, 1] + radius * np.sin(azimuth)
    )
    n_cells = array.n_side * array.n_side
    inside = cell >= 0
    flat = np.bincount(shower[inside] * n_cells + cell[inside], weights=energy[inside], minlength=n_showers * n_cells)
    return flat.reshape(n_showers, array.n_side, array.n_side)


def read_out(rng: np.random.Generator, deposited_gev: np.ndarray, array: CrystalArray = CSI_5X5) -> np.ndarray:
    """The measured crystal energies (GeV, float32, same shape as ``deposited_gev``): non-uniformity,
    photo-statistics, noise, then zero below the threshold."""
    collected = deposited_gev * np.maximum(1.0 + array.nonuniformity * rng.standard_normal(deposited_gev.shape), 0.0)
    photoelectrons_per_gev = array.photoelectrons_per_mev * 1e3
    light = rng.poisson(collected * photoelectrons_per_gev) / photoelectrons_per_gev
    measured = light + array.noise_gev * rng.standard_normal(deposited_gev.shape)
    return np.where(measured >= array.threshold_gev, measured, 0.0).astype(np.float32)


def shower_start_x0(rng: np.random.Generator, particle: str, n: int) -> np.ndarray:
    """Where showers start (radiation lengths): at the face for electrons; photons convert after an exponential
    depth of mean 9/7 X0 (no material in front of the array)."""
    if particle == "electron":
        return np.zeros(n)
    if particle == "photon":
        return rng.exponential(PHOTON_CONVERSION_X0, n)
    raise ValueError(f"the crystal array simulates electrons and photons, not {particle!r}")


def simulate_crystal_batch(
    rng: np.random.Generator, array_name: str, particle: str, primaries: Primaries
) -> dict[str, np.ndarray]:
    """Simulate one batch into the crystal layout's keys: ``showers`` (B, 5, 5) GeV float32, ``energy`` (B,) GeV,
    ``impact`` (B, 2) mm, ``pdgID`` (B,)."""
    array = CRYSTAL_ARRAYS[array_name]
    n = primaries.energy_gev.size
    impact = sample_impact_points(rng, n, array)
    start = shower_start_x0(rng, particle, n)
    deposited = deposit_showers(rng, primaries.energy_gev, impact, start, array)
    return {
        "showers": read_out(rng, deposited, array),
        "energy": primaries.energy_gev.astype(np.float32),
        "impact": impact.astype(np.float32),
        "pdgID": np.full(n, PDG_ID[particle], np.int32),
    }
