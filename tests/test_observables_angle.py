"""The measured incidence angle (3DGAN "O_theta"), NumPy and differentiable TensorFlow versions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from caloml.observables.angle import MEASURED_ANGLE_EMPTY, measured_angle
from caloml.observables.differentiable import measured_angle_tf, total_energy_tf
from caloml.observables.grid import total_energy


def _reference_angle(event: np.ndarray) -> float:
    """physics.md section 7 written out with loops, for one event (nx, ny, nz)."""
    nx, ny, nz = event.shape
    total = event.sum()
    if total <= 0:
        return MEASURED_ANGLE_EMPTY
    x = np.arange(nx) + 0.5
    y = np.arange(ny) + 0.5
    x_ref = np.sum(event.sum(axis=(1, 2)) * x) / total
    y_ref = np.sum(event.sum(axis=(0, 2)) * y) / total
    z_ref = np.sum(event.sum(axis=(0, 1)) * (np.arange(nz) + 0.5)) / total
    numerator = weights = 0.0
    for k in range(nz):
        layer = event[:, :, k]
        energy = layer.sum()
        if energy <= 0:
            continue
        z = k + 0.5
        x_mid = np.sum(layer.sum(axis=1) * x) / energy
        y_mid = np.sum(layer.sum(axis=0) * y) / energy
        distance = math.sqrt((x_mid - x_ref) ** 2 + (z - z_ref) ** 2)
        if distance < 1e-9:
            continue
        slope = (y_mid - y_ref) / distance
        if z < z_ref:
            slope = -slope
        numerator += z * (math.pi / 2 - math.atan(slope))
        weights += z
    return numerator / weights if weights > 0 else MEASURED_ANGLE_EMPTY


def _track(nz: int, dy_per_layer: int, nx: int = 5, ny: int = 20, y0: int = 2) -> np.ndarray:
    """One 1-GeV hit per layer at x = 2, y = y0 + dy_per_layer * k."""
    cells = np.zeros((1, nx, ny, nz))
    for k in range(nz):
        cells[0, 2, y0 + dy_per_layer * k, k] = 1.0
    return cells


def _inclined_showers(rng: np.random.Generator, n: int, drift: float, shape=(12, 14, 10)) -> np.ndarray:
    """Gaussian blobs whose centre moves by ``drift`` cells in y per layer, with some noise hits."""
    nx, ny, nz = shape
    ix, iy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    cells = np.zeros((n, nx, ny, nz))
    for k in range(nz):
        y_centre = ny / 2 + drift * (k - nz / 2)
        amplitude = np.exp(-0.5 * ((k - 4.0) / 2.5) ** 2)
        cells[:, :, :, k] = amplitude * np.exp(-0.5 * (((ix - nx / 2) / 1.5) ** 2 + ((iy - y_centre) / 1.5) ** 2))
    cells *= rng.uniform(0.5, 1.5, size=cells.shape)
    return cells


def _sparse_random(rng: np.random.Generator, n: int, shape=(9, 8, 7), occupancy: float = 0.15) -> np.ndarray:
    cells = rng.exponential(1.0, size=(n, *shape))
    cells[rng.random(cells.shape) > occupancy] = 0.0
    return cells


def test_straight_shower_is_perpendicular() -> None:
    rng = np.random.default_rng(0)
    pattern = rng.random((6, 7))
    cells = pattern[None, :, :, None] * np.array([1.0, 3.0, 5.0, 2.0, 1.0])[None, None, None, :]
    np.testing.assert_allclose(measured_angle(cells), [math.pi / 2], atol=1e-12)


@pytest.mark.parametrize("nz", [6, 5])  # with 5 layers the middle one sits on the barycentre and is skipped
def test_diagonal_track_with_known_slope(nz: int) -> None:
    np.testing.assert_allclose(measured_angle(_track(nz, 1)), [math.pi / 4], atol=1e-12)
    np.testing.assert_allclose(measured_angle(_track(nz, 2)), [math.pi / 2 - math.atan(2.0)], atol=1e-12)
    mirrored = _track(nz, 1)[:, :, ::-1, :]  # barycentres move towards -y with depth
    np.testing.assert_allclose(measured_angle(mirrored), [3 * math.pi / 4], atol=1e-12)


def test_layer_angles_are_weighted_by_layer_coordinate() -> None:
    """Layers 0, 1, 2 with y = 0.5, 0.5, 3.5: slopes +1 (flipped), skipped (on the barycentre), 2."""
    cells = np.zeros((1, 1, 4, 3))
    cells[0, 0, 0, 0] = cells[0, 0, 0, 1] = cells[0, 0, 3, 2] = 1.0
    expected = (0.5 * math.pi / 4 + 2.5 * (math.pi / 2 - math.atan(2.0))) / 3.0
    np.testing.assert_allclose(measured_angle(cells), [expected], atol=1e-12)


def test_sign_convention_of_inclined_showers() -> None:
    """Barycentres moving towards +y with depth: below pi/2 (theta < 90 degrees); mirrored: symmetric above."""
    rng = np.random.default_rng(1)
    towards_plus_y = _inclined_showers(rng, 4, drift=0.6)
    angles = measured_angle(towards_plus_y)
    assert np.all(angles < math.pi / 2 - 0.2)
    mirrored = measured_angle(towards_plus_y[:, :, ::-1, :])
    np.testing.assert_allclose(mirrored, math.pi - angles, atol=1e-12)
    steeper = measured_angle(_inclined_showers(np.random.default_rng(1), 4, drift=1.2))
    assert np.all(steeper < angles)


def test_events_without_a_usable_layer_get_the_sentinel() -> None:
    cells = np.zeros((4, 5, 5, 6))
    cells[1, 2, 3, 4] = 1.0  # a single hit
    cells[2, :, :, 2] = np.arange(25.0).reshape(5, 5)  # energy in a single layer
    cells[3, 0, 0, 0] = cells[3, 4, 4, 5] = 1.0  # two layers: a real measurement
    angles = measured_angle(cells)
    np.testing.assert_array_equal(angles[:3], [MEASURED_ANGLE_EMPTY] * 3)
    assert 0 < angles[3] < math.pi
    assert MEASURED_ANGLE_EMPTY == 100.0


def test_matches_the_definition_on_random_sparse_showers() -> None:
    rng = np.random.default_rng(2)
    cells = _sparse_random(rng, 20)
    expected = [_reference_angle(event) for event in cells]
    np.testing.assert_allclose(measured_angle(cells), expected, rtol=1e-12)
    np.testing.assert_allclose(measured_angle(cells[..., None]), expected, rtol=1e-12)


# ---- differentiable TensorFlow versions ----


def _test_batch() -> np.ndarray:
    rng = np.random.default_rng(3)
    cells = np.concatenate([_sparse_random(rng, 30), _inclined_showers(rng, 3, 0.7, shape=(9, 8, 7))])
    cells[0] = 0.0  # empty event
    cells[1, :, :, 1:] = 0.0  # a single layer
    cells[2, :, :, ::2] = 0.0  # every other layer empty
    return cells.astype(np.float32)


def test_tf_versions_match_numpy() -> None:
    cells = _test_batch()
    angle_tf = measured_angle_tf(tf.constant(cells)).numpy()
    angle_np = measured_angle(cells)
    assert angle_tf.dtype == np.float32
    assert angle_tf[0] == MEASURED_ANGLE_EMPTY
    assert angle_tf[1] == MEASURED_ANGLE_EMPTY
    np.testing.assert_allclose(angle_tf, angle_np, rtol=1e-4)
    np.testing.assert_allclose(total_energy_tf(cells).numpy(), total_energy(cells), rtol=1e-5)
    np.testing.assert_allclose(measured_angle_tf(cells[..., None]).numpy(), angle_np, rtol=1e-4)


def test_tf_version_under_tf_function_with_unknown_batch() -> None:
    cells = _test_batch()
    spec = tf.TensorSpec(shape=(None, *cells.shape[1:], 1), dtype=tf.float32)
    traced = tf.function(measured_angle_tf, input_signature=[spec])
    np.testing.assert_allclose(traced(cells[..., None]).numpy(), measured_angle(cells), rtol=1e-4)


def test_tf_gradients_are_finite_and_flow() -> None:
    cells = tf.Variable(_test_batch())
    with tf.GradientTape(persistent=True) as tape:
        angle = measured_angle_tf(cells)
        energy = total_energy_tf(cells)
        loss = tf.reduce_sum(tf.square(angle - 1.2))
    gradient = tape.gradient(loss, cells).numpy()
    assert np.all(np.isfinite(gradient))
    np.testing.assert_array_equal(gradient[:2], 0.0)  # sentinel events do not pull on the cells
    assert np.abs(gradient[2:]).sum(axis=(1, 2, 3)).min() > 0
    np.testing.assert_array_equal(tape.gradient(energy, cells).numpy(), 1.0)


def test_tf_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(4)
    event = _inclined_showers(rng, 1, 0.5, shape=(6, 7, 5))
    event[:, :, :, 3] = 0.0  # an empty layer in the middle
    with tf.GradientTape() as tape:
        variable = tf.Variable(event.astype(np.float32))
        angle = measured_angle_tf(variable)
    gradient = tape.gradient(angle, variable).numpy()[0]
    step = 1e-6
    for index in [(3, 3, 0), (2, 5, 4), (0, 0, 2), (5, 1, 1)]:
        shifted_up, shifted_down = event.copy(), event.copy()
        shifted_up[(0, *index)] += step
        shifted_down[(0, *index)] -= step
        numeric = (measured_angle(shifted_up)[0] - measured_angle(shifted_down)[0]) / (2 * step)
        np.testing.assert_allclose(gradient[index], numeric, rtol=2e-3, atol=1e-6)
