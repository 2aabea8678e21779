"""Observables of Cartesian showers: hand-computed showers and brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from caloml.errors import DataError
from caloml.observables import grid


def _random_showers(rng: np.random.Generator, shape: tuple[int, ...], occupancy: float = 0.3) -> np.ndarray:
    cells = rng.exponential(0.05, size=shape)
    cells[rng.random(shape) > occupancy] = 0.0
    return cells


@pytest.fixture
def single_hit() -> np.ndarray:
    """Event 0: 2 GeV in cell (1, 2, 3); event 1 empty."""
    cells = np.zeros((2, 5, 4, 6))
    cells[0, 1, 2, 3] = 2.0
    return cells


def test_single_hit_sums_and_profiles(single_hit: np.ndarray) -> None:
    np.testing.assert_array_equal(grid.total_energy(single_hit), [2.0, 0.0])
    np.testing.assert_allclose(grid.sampling_fraction(single_hit, np.array([100.0, 50.0])), [0.02, 0.0])
    np.testing.assert_allclose(grid.sampling_fraction(single_hit, np.array([[100.0], [0.0]])), [0.02, 0.0])
    np.testing.assert_array_equal(grid.longitudinal_profile(single_hit)[0], [0, 0, 0, 2, 0, 0])
    x, y = grid.transverse_profiles(single_hit)
    np.testing.assert_array_equal(x[0], [0, 2, 0, 0, 0])
    np.testing.assert_array_equal(y[0], [0, 0, 2, 0])
    assert x.shape == (2, 5)
    assert y.shape == (2, 4)
    np.testing.assert_array_equal(grid.max_deposit_position(single_hit), [[1, 2, 3], [0, 0, 0]])


def test_single_hit_moments(single_hit: np.ndarray) -> None:
    for axis, position in (("x", 1), ("y", 2), ("z", 3)):
        values = grid.moments(single_hit, axis)
        assert values.shape == (2, 6)
        np.testing.assert_array_equal(values[0], [position, 0, 0, 0, 0, 0])
        np.testing.assert_array_equal(values[1], np.zeros(6))  # empty event: 0, not NaN


def test_two_hit_moments() -> None:
    """1 GeV at x = 1 and 3 GeV at x = 5: M1 = 4, central moments (1 (-3)^k + 3 (1)^k) / 4."""
    cells = np.zeros((1, 7, 3, 2))
    cells[0, 1, 1, 0] = 1.0
    cells[0, 5, 2, 1] = 3.0
    expected = [4.0] + [((-3.0) ** k + 3.0) / 4.0 for k in range(2, 7)]  # 3, -6, 21, -60, 183
    np.testing.assert_allclose(grid.moments(cells, "x")[0], expected)
    np.testing.assert_allclose(grid.moments(cells, 0)[0], expected)
    np.testing.assert_allclose(grid.moments(cells, "x", max_order=2)[0], [4.0, 3.0])
    # along z: 1 GeV in layer 0, 3 in layer 1 -> M1 = 0.75, M2 = (0.75^2 + 3 * 0.25^2) / 4 = 0.1875
    np.testing.assert_allclose(grid.moments(cells, "z")[0, :2], [0.75, 0.1875])


def test_moments_match_definition_on_random_showers() -> None:
    rng = np.random.default_rng(1)
    cells = _random_showers(rng, (4, 6, 5, 7))
    for axis in range(3):
        others = tuple(a + 1 for a in range(3) if a != axis)
        for event in range(cells.shape[0]):
            profile = cells[event].sum(axis=tuple(a - 1 for a in others))
            index = np.arange(profile.size)
            mean = np.sum(profile * index) / profile.sum()
            expected = [mean] + [np.sum(profile * (index - mean) ** k) / profile.sum() for k in range(2, 7)]
            np.testing.assert_allclose(grid.moments(cells, axis)[event], expected, rtol=1e-10, atol=1e-12)


def test_moments_reject_a_bad_axis() -> None:
    with pytest.raises(DataError, match="axis"):
        grid.moments(np.zeros((1, 2, 2, 2)), 3)  # type: ignore[arg-type]


def test_hits_above_is_strict(single_hit: np.ndarray) -> None:
    np.testing.assert_array_equal(grid.hits_above(single_hit, 1.0), [1, 0])
    np.testing.assert_array_equal(grid.hits_above(single_hit, 2.0), [0, 0])
    np.testing.assert_array_equal(grid.hits_above(single_hit, -1.0), [120, 120])


def test_hits_above_matches_count_nonzero() -> None:
    rng = np.random.default_rng(2)
    cells = _random_showers(rng, (3, 7, 5, 3)).astype(np.float32)  # 105 cells: not a multiple of 8
    np.testing.assert_array_equal(
        grid.hits_above(cells, 0.02), np.count_nonzero(cells > np.float32(0.02), axis=(1, 2, 3))
    )


def test_depth_energy_ratios_use_thirds_8_8_9_on_25_layers() -> None:
    cells = np.zeros((2, 2, 2, 25))
    cells[0, 0, 0, 7] = 1.0  # last layer of the first third
    cells[0, 0, 0, 8] = 2.0  # first layer of the second third
    cells[0, 1, 1, 16] = 3.0  # first layer of the last third
    ratios = grid.depth_energy_ratios(cells)
    np.testing.assert_allclose(ratios, [[1 / 6, 2 / 6, 3 / 6], [0, 0, 0]])


def test_first_layer_ratios() -> None:
    cells = np.zeros((3, 2, 2, 4))
    cells[0, 0, 0, 0] = 1.0
    cells[0, 1, 0, 1] = 4.0
    cells[0, 1, 1, 3] = 5.0
    cells[1, 0, 0, 0] = 1.0  # nothing in the second layer: first / second = 0
    to_total, to_second = grid.first_layer_ratios(cells)
    np.testing.assert_allclose(to_total, [0.1, 1.0, 0.0])
    np.testing.assert_allclose(to_second, [0.25, 0.0, 0.0])


def test_r9_of_a_3x3_block_is_one() -> None:
    cells = np.zeros((3, 10, 9, 4))
    cells[0, 4:7, 2:5, 1] = 1.0
    cells[1, 4:7, 2:5, 1] = 1.0
    cells[1, 0, 8, 3] = 1.0  # one more GeV outside the block
    np.testing.assert_allclose(grid.r9(cells), [1.0, 0.9, 0.0])


def test_r9_matches_brute_force_windows() -> None:
    rng = np.random.default_rng(3)
    cells = _random_showers(rng, (5, 8, 6, 3))
    xy = cells.sum(axis=3)
    expected = [
        max(xy[n, i : i + 3, j : j + 3].sum() for i in range(6) for j in range(4)) / xy[n].sum() for n in range(5)
    ]
    np.testing.assert_allclose(grid.r9(cells), expected, rtol=1e-12)
    np.testing.assert_allclose(grid.r9_from_projection(xy.astype(np.float32)), expected, rtol=1e-5)


def test_r9_on_grids_narrower_than_the_window() -> None:
    cells = np.ones((1, 2, 5, 1))
    np.testing.assert_allclose(grid.r9(cells), [0.6])  # 2 x 3 of 2 x 5


def test_sparsity_curve_with_unsorted_thresholds() -> None:
    cells = np.zeros((2, 2, 2, 1))
    cells[0, :, :, 0] = [[0.0, 1e-3], [1e-2, 1.0]]
    thresholds = np.array([1e-2, 0.0, 1e-4, 2.0])
    np.testing.assert_allclose(grid.sparsity_curve(cells, thresholds), [[0.25, 0.75, 0.75, 0.0], [0, 0, 0, 0]])


def test_sparsity_curve_matches_brute_force() -> None:
    rng = np.random.default_rng(4)
    cells = _random_showers(rng, (4, 5, 5, 6)).astype(np.float32)
    thresholds = np.geomspace(1e-13, 1.0, 14)
    flat = cells.reshape(4, -1).astype(np.float64)
    expected = (flat[:, :, None] > thresholds[None, None, :]).mean(axis=1)
    np.testing.assert_allclose(grid.sparsity_curve(cells, thresholds), expected)


def test_cell_spectrum_matches_numpy_histogram() -> None:
    rng = np.random.default_rng(5)
    cells = _random_showers(rng, (3, 4, 4, 5))
    edges = np.geomspace(1e-3, 0.2, 9)
    cells[0, 0, 0, 0] = edges[-1]  # the last bin is closed, as in np.histogram
    spectrum = grid.cell_spectrum(cells, edges)
    assert spectrum.shape == (3, 8)
    for event in range(3):
        np.testing.assert_array_equal(spectrum[event], np.histogram(cells[event], bins=edges)[0])


def test_project_matches_direct_sums_across_blocks() -> None:
    """Float32 LCD-sized events: several blocks of the cache-friendly pass."""
    rng = np.random.default_rng(6)
    cells = _random_showers(rng, (9, 51, 51, 25), occupancy=0.05).astype(np.float32)
    projections = grid.project(cells, hit_threshold_gev=0.02)
    as64 = cells.astype(np.float64)
    np.testing.assert_allclose(projections.xy, as64.sum(axis=3), rtol=1e-5)
    np.testing.assert_allclose(projections.z, as64.sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(projections.x, as64.sum(axis=(2, 3)), rtol=1e-5)
    np.testing.assert_allclose(projections.y, as64.sum(axis=(1, 3)), rtol=1e-5)
    np.testing.assert_allclose(projections.total, as64.sum(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_array_equal(projections.hits, grid.hits_above(cells, 0.02))
    assert grid.project(cells).hits is None


def test_channel_axis_is_accepted_and_bad_shapes_rejected(single_hit: np.ndarray) -> None:
    np.testing.assert_array_equal(grid.total_energy(single_hit[..., None]), [2.0, 0.0])
    with pytest.raises(DataError, match="shape"):
        grid.total_energy(np.zeros((2, 3, 4)))


def test_empty_batch() -> None:
    cells = np.zeros((0, 3, 3, 4))
    assert grid.total_energy(cells).shape == (0,)
    assert grid.moments(cells, "z").shape == (0, 6)
    assert grid.r9(cells).shape == (0,)
    assert grid.project(cells, 0.1).hits.shape == (0,)
