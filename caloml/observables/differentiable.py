"""Differentiable TensorFlow versions of shower observables, for the losses of generative models.

Inputs are batch-first showers (N, nx, ny, nz) or (N, nx, ny, nz, 1) in GeV; computations run in float32 and
work inside ``tf.function`` with an unknown batch size. They agree with the NumPy observables
(:func:`caloml.observables.grid.total_energy`, :func:`caloml.observables.angle.measured_angle`) to float32
precision, and their gradients are finite everywhere, empty events and empty layers included: every division
and square root takes a denominator replaced by 1 through ``tf.where`` where it would be 0, so that neither the
value nor the gradient of the branch not taken holds a NaN. See ``docs/evaluation.md``.
"""

from __future__ import annotations

import math

import tensorflow as tf

from caloml.errors import DataError
from caloml.observables.angle import DEGENERATE_DISTANCE, MEASURED_ANGLE_EMPTY

__all__ = ["measured_angle_tf", "total_energy_tf"]


def total_energy_tf(cells: tf.Tensor) -> tf.Tensor:
    """Sum of the cells of each event, shape (N,), GeV, float32."""
    cells = _as_cells_tf(cells)
    return tf.reduce_sum(cells, axis=(1, 2, 3))


def measured_angle_tf(cells: tf.Tensor) -> tf.Tensor:
    """Measured incidence angle (the 3DGAN "O_theta"), shape (N,), radians, float32.

    Same definition as :func:`caloml.observables.angle.measured_angle` (cell centres at index + 0.5, layer
    slopes about the global barycentre, sign flipped in front of it, layer angles pi/2 - atan(m) averaged with
    weights z); ``MEASURED_ANGLE_EMPTY`` (100.0, zero gradient) for an event without a usable layer.
    """
    cells = _as_cells_tf(cells)
    shape = tf.shape(cells)
    x_coord = tf.cast(tf.range(shape[1]), tf.float32) + 0.5
    y_coord = tf.cast(tf.range(shape[2]), tf.float32) + 0.5
    z_coord = tf.cast(tf.range(shape[3]), tf.float32) + 0.5

    along_x = tf.reduce_sum(cells, axis=2)  # (N, nx, nz)
    along_y = tf.reduce_sum(cells, axis=1)  # (N, ny, nz)
    layer_energy = tf.reduce_sum(along_x, axis=1)  # (N, nz)
    layer_x = tf.einsum("nxz,x->nz", along_x, x_coord)
    layer_y = tf.einsum("nyz,y->nz", along_y, y_coord)

    total = tf.reduce_sum(layer_energy, axis=1)  # (N,)
    has_total = total > 0
    x_ref = _safe_divide(tf.reduce_sum(layer_x, axis=1), total, has_total)[:, None]
    y_ref = _safe_divide(tf.reduce_sum(layer_y, axis=1), total, has_total)[:, None]
    z_ref = _safe_divide(tf.reduce_sum(layer_energy * z_coord, axis=1), total, has_total)[:, None]

    has_layer = layer_energy > 0
    x_mid = _safe_divide(layer_x, layer_energy, has_layer)
    y_mid = _safe_divide(layer_y, layer_energy, has_layer)

    dz = z_coord[None, :] - z_ref
    squared = tf.square(x_mid - x_ref) + tf.square(dz)
    usable = has_layer & (squared > DEGENERATE_DISTANCE**2)
    distance = tf.sqrt(tf.where(usable, squared, tf.ones_like(squared)))  # sqrt'(0) is infinite
    slope = _safe_divide(y_mid - y_ref, distance, usable)
    slope = tf.where(dz < 0, -slope, slope)
    layer_angle = math.pi / 2 - tf.atan(slope)

    weights = tf.where(usable, tf.broadcast_to(z_coord[None, :], tf.shape(usable)), tf.zeros_like(slope))
    weight_sum = tf.reduce_sum(weights, axis=1)
    n_layers = tf.reduce_sum(tf.cast(has_layer, tf.int32), axis=1)
    valid = has_total & (n_layers >= 2) & (weight_sum > 0)
    angle = _safe_divide(tf.reduce_sum(weights * layer_angle, axis=1), weight_sum, valid)
    return tf.where(valid, angle, tf.fill(tf.shape(angle), tf.constant(MEASURED_ANGLE_EMPTY, tf.float32)))


def _as_cells_tf(cells: tf.Tensor) -> tf.Tensor:
    cells = tf.convert_to_tensor(cells)
    if cells.dtype != tf.float32:
        cells = tf.cast(cells, tf.float32)
    rank = cells.shape.rank
    if rank == 5:
        if cells.shape[-1] not in (1, None):
            raise DataError(f"expected showers of shape (N, nx, ny, nz) or (N, nx, ny, nz, 1), got {cells.shape}")
        cells = tf.squeeze(cells, axis=-1)
    elif rank != 4:
        raise DataError(f"expected showers of shape (N, nx, ny, nz) or (N, nx, ny, nz, 1), got {cells.shape}")
    return cells


def _safe_divide(numerator: tf.Tensor, denominator: tf.Tensor, where: tf.Tensor) -> tf.Tensor:
    """numerator / denominator where ``where``, else 0, with finite gradients on both branches."""
    ratio = numerator / tf.where(where, denominator, tf.ones_like(denominator))
    return tf.where(where, ratio, tf.zeros_like(ratio))
