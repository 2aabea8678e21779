"""Observables of cylindrical (CaloChallenge) showers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caloml.errors import DataError
from caloml.geometry import CALOCHALLENGE_2, SILICON, TUNGSTEN, CylindricalCalorimeter, LayerStack
from caloml.observables import cylinder

#: 3 layers, 4 angular bins centred on 45, 135, 225, 315 degrees, radial bins centred on 1 and 3 mm.
TOY = CylindricalCalorimeter(
    name="toy",
    stack=LayerStack(absorber=TUNGSTEN, sensor=SILICON, absorber_mm=(2.8,) * 3, sensor_mm=0.6),
    n_alpha=4,
    radial_edges_mm=(0.0, 2.0, 4.0),
    threshold_gev=0.01,
)
C45 = math.cos(math.pi / 4)


def _showers() -> np.ndarray:
    """Event 0: layer 0 one voxel (alpha 45 deg, r 3 mm); layer 1 two opposite voxels; layer 2 empty.
    Event 1: layer 0 two radial bins at the same angle; event 2 empty."""
    showers = np.zeros((3, *TOY.shape))
    showers[0, 0, 0, 1] = 2.0
    showers[0, 1, 0, 1] = 1.0
    showers[0, 1, 2, 1] = 1.0
    showers[1, 0, 1, 0] = 1.0
    showers[1, 0, 1, 1] = 1.0
    return showers


def test_energy_per_layer() -> None:
    np.testing.assert_array_equal(cylinder.energy_per_layer(_showers(), TOY), [[2, 2, 0], [2, 0, 0], [0, 0, 0]])


def test_centres_and_widths_of_hand_made_layers() -> None:
    showers = _showers()
    x, y = cylinder.centres_of_energy(showers, TOY)
    width_x, width_y = cylinder.widths(showers, TOY)
    # event 0, layer 0: a single voxel at (3 cos 45, 3 sin 45), no width
    np.testing.assert_allclose([x[0, 0], y[0, 0], width_x[0, 0], width_y[0, 0]], [3 * C45, 3 * C45, 0, 0], atol=1e-12)
    # event 0, layer 1: two opposite voxels, centred on the axis, half-spread 3 cos 45 in both directions
    np.testing.assert_allclose([x[0, 1], y[0, 1], width_x[0, 1], width_y[0, 1]], [0, 0, 3 * C45, 3 * C45], atol=1e-12)
    # event 1, layer 0: alpha 135 degrees at r = 1 and 3 -> x = -2 cos 45, width cos 45
    np.testing.assert_allclose([x[1, 0], y[1, 0], width_x[1, 0], width_y[1, 0]], [-2 * C45, 2 * C45, C45, C45])
    np.testing.assert_allclose(cylinder.radial_centre(showers, TOY)[:, 0], [3.0, 2.0, 0.0])
    np.testing.assert_allclose(cylinder.radial_width(showers, TOY)[:, 0], [0.0, 1.0, 0.0], atol=1e-7)


def test_empty_layers_give_zero_centres_and_widths() -> None:
    showers = _showers()
    for coordinate in ("x", "y", "r"):
        centre, width = cylinder.layer_centre_and_width(showers, TOY, coordinate)
        assert centre.shape == width.shape == (3, 3)
        assert np.all(np.isfinite(centre))
        np.testing.assert_array_equal(centre[0, 2], 0.0)
        np.testing.assert_array_equal(width[2], 0.0)


def test_sparsity_and_threshold_keep_voxels_at_the_threshold() -> None:
    showers = np.zeros((1, *TOY.shape))
    showers[0, 0, :, 0] = [0.005, 0.01, 0.02, 0.0]  # below, at, above, empty
    showers[0, 2, 3, 1] = 0.5
    np.testing.assert_allclose(cylinder.sparsity_per_layer(showers, TOY), [[2 / 8, 0, 1 / 8]])
    np.testing.assert_allclose(cylinder.sparsity_per_layer(showers, TOY, threshold_gev=0.0), [[3 / 8, 0, 1 / 8]])
    thresholded = cylinder.apply_threshold(showers, TOY.threshold_gev)
    np.testing.assert_array_equal(thresholded[0, 0, :, 0], [0.0, 0.01, 0.02, 0.0])
    assert showers[0, 0, 0, 0] == 0.005  # the input is left alone
    assert thresholded.dtype == showers.dtype


def test_etot_over_einc() -> None:
    showers = _showers()
    np.testing.assert_allclose(cylinder.etot_over_einc(showers, np.array([[8.0], [4.0], [0.0]])), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(cylinder.etot_over_einc(showers, np.array([8.0, 4.0, 1.0])), [0.5, 0.5, 0.0])


def test_voxel_spectrum_matches_numpy_histogram() -> None:
    rng = np.random.default_rng(0)
    showers = rng.exponential(1e-3, size=(2, *CALOCHALLENGE_2.shape)).astype(np.float32)
    edges = np.geomspace(1e-6, 1e-2, 11)
    spectrum = cylinder.voxel_spectrum(showers, edges)
    for event in range(2):
        np.testing.assert_array_equal(spectrum[event], np.histogram(showers[event], bins=edges)[0])


def test_calochallenge_geometry_and_shape_checks() -> None:
    rng = np.random.default_rng(1)
    showers = rng.exponential(1e-3, size=(2, *CALOCHALLENGE_2.shape)).astype(np.float32)
    x, _ = cylinder.centres_of_energy(showers, CALOCHALLENGE_2)
    assert x.shape == (2, 45)
    radius = cylinder.radial_centre(showers, CALOCHALLENGE_2)
    assert np.all((radius > 2.325) & (radius < 39.525))
    with pytest.raises(DataError, match="calochallenge-2"):
        cylinder.energy_per_layer(np.zeros((1, 45, 16, 8)), CALOCHALLENGE_2)
    with pytest.raises(DataError, match="shape"):
        cylinder.energy_per_layer(np.zeros((45, 16, 9)))
