"""Reference constants pinned as literals: loss weights, tungsten, the CLIC and CaloChallenge readouts, and the
lateral containment of simulated showers measured from their cell images.

Sources of the numbers (written here, never read from the code):
* 3DGAN loss weights 3, 0.1, 25, 0.1: "Fast simulation of a high granularity calorimeter by generative adversarial
  networks" (arXiv:2109.07388);
* Triforce energy-loss weight 200: "Calorimetry with deep learning: particle simulation and reconstruction for
  collider physics" (arXiv:1912.06794), section 5;
* tungsten X0 = 3.50 mm and Moliere radius 9.3 mm, silicon X0 = 93.7 mm: Particle Data Group, "Atomic and nuclear
  properties of materials";
* CLIC ECAL: 5.1 mm cells, 17 layers of 2.4 mm W then 8 of 4.8 mm W, each with 0.5 mm Si (arXiv:1912.06794);
* CaloChallenge dataset 2: 9 radial bins of 4.65 mm, 16 angular bins, 45 layers (Fast Calorimeter Simulation
  Challenge 2022, Zenodo record 6366271);
* lateral containment: on average 90% of an electromagnetic shower's energy lies inside one Moliere radius
  (Particle Data Group, "Passage of particles through matter", electromagnetic cascades).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from caloml.geometry import CALOCHALLENGE_2, CLIC_ECAL, TUNGSTEN
from caloml.models.gan3d import DEFAULT_LOSS_WEIGHTS
from caloml.models.triforce_nets import TriforceCNN, TriforceDNN, TriforceGoogLeNet
from caloml.sim.layouts import LAYOUTS
from caloml.sim.run import SimulationRequest, simulate_events

TUNGSTEN_X0_MM = 3.50
TUNGSTEN_MOLIERE_MM = 9.3
SILICON_X0_MM = 93.7
CLIC_CELL_MM = 5.1
CLIC_THIN_W_MM, CLIC_THICK_W_MM, CLIC_SI_MM = 2.4, 4.8, 0.5
DATASET2_RADIAL_EDGES_MM = (0.0, 4.65, 9.3, 13.95, 18.6, 23.25, 27.9, 32.55, 37.2, 41.85)


def test_3dgan_loss_weights() -> None:
    assert DEFAULT_LOSS_WEIGHTS == {"real": 3.0, "energy": 0.1, "angle": 25.0, "sum": 0.1}


def test_triforce_energy_loss_weight() -> None:
    for network in (TriforceDNN, TriforceCNN, TriforceGoogLeNet):
        assert inspect.signature(network).parameters["energy_loss_weight"].default == 200.0, network.__name__


def test_tungsten_as_the_simulator_uses_it() -> None:
    assert TUNGSTEN.radiation_length_mm == pytest.approx(TUNGSTEN_X0_MM)
    assert TUNGSTEN.moliere_radius_mm == pytest.approx(TUNGSTEN_MOLIERE_MM)
    detector = LAYOUTS["lcd-gen"].build_detector()
    # depth of the CLIC ECAL in radiation lengths, layer by layer (absorber + sensor)
    thin = CLIC_THIN_W_MM / TUNGSTEN_X0_MM + CLIC_SI_MM / SILICON_X0_MM
    thick = CLIC_THICK_W_MM / TUNGSTEN_X0_MM + CLIC_SI_MM / SILICON_X0_MM
    expected_x0 = np.concatenate([[0.0], np.cumsum([thin] * 17 + [thick] * 8)])
    np.testing.assert_allclose(detector.x0_bounds[:26], expected_x0, rtol=1e-9)
    # the lateral scale of each layer: the tungsten Moliere radius over the absorber share of the layer pitch
    thin_rm = TUNGSTEN_MOLIERE_MM * (CLIC_THIN_W_MM + CLIC_SI_MM) / CLIC_THIN_W_MM
    thick_rm = TUNGSTEN_MOLIERE_MM * (CLIC_THICK_W_MM + CLIC_SI_MM) / CLIC_THICK_W_MM
    np.testing.assert_allclose(detector.moliere_mm[:25], [thin_rm] * 17 + [thick_rm] * 8, rtol=1e-9)


def test_clic_cell_pitch() -> None:
    assert CLIC_ECAL.cell_mm == pytest.approx(CLIC_CELL_MM)
    assert CLIC_ECAL.shape == (51, 51, 25)
    ecal = LAYOUTS["lcd-gen"].build_detector().sections[0]
    assert ecal.cell_mm == pytest.approx(CLIC_CELL_MM)
    np.testing.assert_allclose(ecal.stack.absorber_mm, [CLIC_THIN_W_MM] * 17 + [CLIC_THICK_W_MM] * 8)
    assert ecal.stack.sensor_mm == pytest.approx(CLIC_SI_MM)


def test_calochallenge_dataset2_radial_edges() -> None:
    np.testing.assert_allclose(CALOCHALLENGE_2.radial_edges_mm, DATASET2_RADIAL_EDGES_MM, rtol=0, atol=1e-9)
    assert CALOCHALLENGE_2.shape == (45, 16, 9)
    simulated = LAYOUTS["calochallenge-2"].build_detector().sections[0]
    np.testing.assert_allclose(simulated.radial_edges_mm, DATASET2_RADIAL_EDGES_MM, rtol=0, atol=1e-9)


def _containment_radius_mm(image_gev: np.ndarray, fraction: float) -> float:
    """Radius (mm) around the energy barycentre of a (51, 51) cell image holding ``fraction`` of its energy, each
    cell's energy at its centre, interpolated between cell-centre radii."""
    centres = (np.arange(51) - 25) * CLIC_CELL_MM
    total = image_gev.sum()
    x0 = float((image_gev.sum(axis=1) * centres).sum() / total)
    y0 = float((image_gev.sum(axis=0) * centres).sum() / total)
    radius = np.hypot(centres[:, None] - x0, centres[None, :] - y0).ravel()
    order = np.argsort(radius)
    cumulative = np.cumsum(image_gev.ravel()[order]) / total
    return float(np.interp(fraction, cumulative, radius[order]))


def test_lateral_containment_from_the_cell_images() -> None:
    # 100 GeV electrons at normal incidence in the LCD geometry, read out in 5.1 mm cells.
    events = simulate_events(
        SimulationRequest(
            "lcd-gen",
            "electron",
            n_events=24,
            seed=31,
            energy_range_gev=(100.0, 100.0),
            theta_range_rad=(np.pi / 2, np.pi / 2),
        ).resolve()
    )
    images = events["ECAL"].sum(axis=3)  # (N, 51, 51) GeV, summed over the depth
    r90 = np.array([_containment_radius_mm(image, 0.9) for image in images])
    # Expectation: one Moliere radius of the W/Si mixture of the thin-layer section, where these showers peak,
    # by the mixture rule 1 / R_M = sum_j w_j / R_M,j over mass fractions w_j (in g/cm2): about 10.8 mm.
    density_w, density_si = 19.3, 2.329  # g/cm3
    mass_w, mass_si = CLIC_THIN_W_MM * density_w, CLIC_SI_MM * density_si
    share_w, share_si = mass_w / (mass_w + mass_si), mass_si / (mass_w + mass_si)
    moliere_g_cm2 = 1.0 / (share_w / (TUNGSTEN_MOLIERE_MM * density_w) + share_si / (49.44 * density_si))
    expected_mm = moliere_g_cm2 / ((mass_w + mass_si) / (CLIC_THIN_W_MM + CLIC_SI_MM))
    assert 10.5 < expected_mm < 11.0
    # Tolerance 15%: the 90%-in-one-R_M rule is an average (PDG), and the 5.1 mm cells (about half a Moliere
    # radius) set the energy of a whole cell at its centre.
    assert np.mean(r90) == pytest.approx(expected_mm, rel=0.15), (
        f"90% radius {np.mean(r90):.2f} mm, expected {expected_mm:.2f} mm"
    )
    assert np.std(r90) < 0.15 * expected_mm  # a property of every shower, not of the mean alone
