"""The incidence angle measured from a shower image, the 3DGAN "O_theta" (arXiv:2109.07388), in NumPy.

For showers ``cells`` (N, nx, ny, nz) in GeV (x, y transverse, z the depth):

1. cell coordinates are the index + 0.5 (cell units);
2. the global barycentre (x_ref, y_ref, z_ref) of the event;
3. for each layer z with energy, its barycentre (x_mid, y_mid);
4. the slope m = (y_mid - y_ref) / sqrt((x_mid - x_ref)^2 + (z - z_ref)^2), with its sign flipped for layers in
   front of the barycentre (z < z_ref), so that both halves of an inclined shower agree;
5. the layer angle pi/2 - atan(m), in (0, pi);
6. the event angle, the average of the layer angles weighted by z (the coordinate index + 0.5).

Layers without (positive) energy are skipped, and so are layers whose barycentre coincides with the global
one in the (x, z) plane (denominator 0; within :data:`DEGENERATE_DISTANCE` cell widths, so that rounding does
not turn 0/0 into an arbitrary slope). An event with no usable layer - an empty event, or one whose energy lies
in a single layer - gets :data:`MEASURED_ANGLE_EMPTY`.

Sign convention: a shower whose layer barycentres move towards +y with depth measures an angle below pi/2
(theta < 90 degrees in caloml's simulator); a straight shower measures pi/2. The differentiable TensorFlow
version, for GAN losses, is :func:`caloml.observables.differentiable.measured_angle_tf`. See ``docs/evaluation.md``.
"""

from __future__ import annotations

import numpy as np

from caloml.observables.grid import _BLOCK_BYTES, _as_cells

__all__ = ["DEGENERATE_DISTANCE", "MEASURED_ANGLE_EMPTY", "measured_angle"]

#: Measured angle returned for an event without a usable layer (the value of the original 3DGAN code).
MEASURED_ANGLE_EMPTY = 100.0

#: Distance (cell widths) in the (x, z) plane below which a layer barycentre counts as on the global one.
DEGENERATE_DISTANCE = 1e-3


def measured_angle(cells: np.ndarray) -> np.ndarray:
    """Measured incidence angle of each shower, shape (N,), radians (float64).

    ``cells`` (N, nx, ny, nz) or (N, nx, ny, nz, 1), GeV. See the module docstring for the definition;
    :data:`MEASURED_ANGLE_EMPTY` (100.0) for an event without a usable layer.
    """
    cells = _as_cells(cells)
    n, nx, ny, nz = cells.shape
    x_coord = np.arange(nx) + 0.5
    y_coord = np.arange(ny) + 0.5
    z_coord = np.arange(nz) + 0.5

    along_x, along_y = _layer_projections(cells)  # (N, nx, nz), (N, ny, nz)
    layer_energy = along_x.sum(axis=1)  # (N, nz)
    layer_x = np.einsum("nxz,x->nz", along_x, x_coord)  # energy-weighted sums, (N, nz)
    layer_y = np.einsum("nyz,y->nz", along_y, y_coord)

    total = layer_energy.sum(axis=1)
    has_total = total > 0
    x_ref = _divide(layer_x.sum(axis=1), total, has_total)[:, None]
    y_ref = _divide(layer_y.sum(axis=1), total, has_total)[:, None]
    z_ref = _divide(layer_energy @ z_coord, total, has_total)[:, None]

    has_layer = layer_energy > 0
    x_mid = _divide(layer_x, layer_energy, has_layer)
    y_mid = _divide(layer_y, layer_energy, has_layer)

    dz = z_coord[None, :] - z_ref
    distance = np.sqrt((x_mid - x_ref) ** 2 + dz**2)
    usable = has_layer & (distance > DEGENERATE_DISTANCE)
    slope = _divide(y_mid - y_ref, distance, usable)
    slope = np.where(dz < 0, -slope, slope)
    layer_angle = np.pi / 2 - np.arctan(slope)

    weights = np.where(usable, z_coord[None, :], 0.0)
    weight_sum = weights.sum(axis=1)
    # Energy in a single layer leaves no usable layer anyway; counting layers makes it exact despite rounding.
    valid = has_total & (has_layer.sum(axis=1) >= 2) & (weight_sum > 0)
    angle = np.full(n, MEASURED_ANGLE_EMPTY)
    np.divide((weights * layer_angle).sum(axis=1), weight_sum, out=angle, where=valid)
    return angle


def _layer_projections(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums over y (N, nx, nz) and over x (N, ny, nz), float64; in blocks of events that stay in the caches."""
    n, nx, ny, nz = cells.shape
    along_x = np.empty((n, nx, nz), dtype=cells.dtype)
    along_y = np.empty((n, ny, nz), dtype=cells.dtype)
    step = max(1, _BLOCK_BYTES // max(1, cells[0].nbytes if n else 1))
    for start in range(0, n, step):  # blocks of events, not single events
        block = cells[start : start + step]
        np.einsum("nxyz->nxz", block, out=along_x[start : start + step])
        np.einsum("nxyz->nyz", block, out=along_y[start : start + step])
    return along_x.astype(np.float64, copy=False), along_y.astype(np.float64, copy=False)


def _divide(numerator: np.ndarray, denominator: np.ndarray, where: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast_shapes(numerator.shape, denominator.shape))
    np.divide(numerator, denominator, out=out, where=where)
    return out
