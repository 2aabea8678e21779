"""Rational-quadratic-spline coupling layers ("Neural Spline Flows", Durkan et al., arXiv:1906.04032).

:class:`SplineCoupling` transforms a subset of the event dimensions with monotonic splines
(``tfp.bijectors.RationalQuadraticSpline``) whose parameters a
:class:`~caloml.models.flows.conditioners.ResidualConditioner` computes from the other dimensions and the
context; :func:`coupling_splits` chooses the transformed dimensions of each layer of a flow. See ``docs/pointflow.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from caloml.models.base import attribute_config
from caloml.models.flows.conditioners import ResidualConditioner
from caloml.models.flows.flow_layer import FlowLayer

__all__ = ["COUPLING_RULES", "SplineCoupling", "coupling_splits"]

tfb = tfp.bijectors


#: Rules of :func:`coupling_splits`: ``"alternating"`` (the default of new flows) and ``"legacy"`` (models saved
#: before the rule existed; their configs have no ``coupling_rule`` key and keep loading with it).
COUPLING_RULES = ("alternating", "legacy")


def coupling_splits(event_dim: int, n_layers: int, seed: int, rule: str = "alternating") -> list[list[int]]:
    """The transformed dimensions of each coupling layer (sorted index lists), seeded by ``seed``.

    Layer 0 transforms the upper half; every odd layer the complement of the layer before it; every later even
    layer a seeded random half. ``"alternating"`` redraws an even layer's half while it equals the previous
    (odd) layer's, so that two consecutive layers never transform the same dimensions and every dimension is
    transformed by every pair of layers. ``"legacy"`` (the rule of models saved before it) does not redraw: for
    D = 4 and 8 layers, 43% of the seeds give consecutive layers transforming the same half.
    """
    if rule not in COUPLING_RULES:
        raise ValueError(f"coupling rule must be one of {COUPLING_RULES}, got {rule!r}")
    rng = np.random.default_rng(seed)
    splits: list[list[int]] = []
    for i in range(n_layers):
        if i % 2 == 0:
            perm = rng.permutation(event_dim) if i else np.arange(event_dim)
            half = sorted(int(d) for d in perm[event_dim // 2 :])
            while rule == "alternating" and i and half == splits[-1]:
                half = sorted(int(d) for d in rng.permutation(event_dim)[event_dim // 2 :])
            splits.append(half)
        else:
            splits.append([d for d in range(event_dim) if d not in splits[-1]])
    return splits


@keras.saving.register_keras_serializable(package="caloml")
class SplineCoupling(FlowLayer):
    """Rational-quadratic-spline coupling layer on (..., event_dim) events given a context (..., context_dim).

    The dimensions in ``transformed`` go through element-wise monotonic splines on [-bound, bound] with ``n_bins``
    bins (identity with log-determinant 0 outside); the other dimensions pass unchanged and, with the context,
    drive a :class:`ResidualConditioner` that outputs the spline parameters. Bin widths and heights are a softmax
    scaled to the 2 * bound interval with a minimum of ``min_bin_size``; interior knot slopes are
    ``min_slope + softplus(a + log(e^(1 - min_slope) - 1))``, so a zero conditioner output gives uniform bins and
    unit slopes: the identity.
    """

    def __init__(
        self,
        event_dim: int,
        context_dim: int,
        transformed: Sequence[int],
        n_bins: int = 8,
        spline_bound: float = 5.0,
        hidden_units: int = 64,
        n_blocks: int = 2,
        min_bin_size: float = 1e-3,
        min_slope: float = 1e-3,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        transformed = sorted(int(i) for i in transformed)
        if not transformed or len(set(transformed)) != len(transformed) or not 0 <= transformed[0] < event_dim:
            raise ValueError(f"SplineCoupling: bad transformed dims {transformed} for event_dim {event_dim}")
        if transformed[-1] >= event_dim or len(transformed) == event_dim:
            raise ValueError(f"SplineCoupling: transformed {transformed} must be a proper subset of range({event_dim})")
        if n_bins < 2 or not spline_bound > 0 or not 0 < min_bin_size * n_bins < 2 * spline_bound:
            raise ValueError(f"SplineCoupling: bad n_bins {n_bins}, spline_bound {spline_bound} or min_bin_size")
        self.event_dim = int(event_dim)
        self.context_dim = int(context_dim)
        self.transformed = transformed
        self.identity = [i for i in range(self.event_dim) if i not in transformed]
        self.n_bins = int(n_bins)
        self.spline_bound = float(spline_bound)
        self.hidden_units = int(hidden_units)
        self.n_blocks = int(n_blocks)
        self.min_bin_size = float(min_bin_size)
        self.min_slope = float(min_slope)
        self.seed = seed
        order = self.identity + self.transformed
        self._inverse_order = [order.index(i) for i in range(self.event_dim)]
        self._slope_offset = math.log(math.expm1(1.0 - self.min_slope))
        self.conditioner = ResidualConditioner(
            len(self.identity),
            self.context_dim,
            len(self.transformed) * (3 * self.n_bins - 1),
            hidden_units=self.hidden_units,
            n_blocks=self.n_blocks,
            seed=seed,
            dtype=self.dtype_policy,
            name="conditioner",
        )

    def _spline(self, x_identity: tf.Tensor, context: tf.Tensor | None) -> Any:
        params = self.conditioner(x_identity, context)
        shape = tf.concat([tf.shape(params)[:-1], [len(self.transformed), 3 * self.n_bins - 1]], axis=0)
        params = tf.reshape(params, shape)
        k = self.n_bins
        width = 2.0 * self.spline_bound
        free = width - k * self.min_bin_size
        bin_widths = self.min_bin_size + free * tf.nn.softmax(params[..., :k], axis=-1)
        bin_heights = self.min_bin_size + free * tf.nn.softmax(params[..., k : 2 * k], axis=-1)
        knot_slopes = self.min_slope + tf.nn.softplus(params[..., 2 * k :] + self._slope_offset)
        return tfb.RationalQuadraticSpline(
            bin_widths=bin_widths,
            bin_heights=bin_heights,
            knot_slopes=knot_slopes,
            range_min=tf.constant(-self.spline_bound, params.dtype),
        )

    def _split(self, values: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.gather(values, self.identity, axis=-1), tf.gather(values, self.transformed, axis=-1)

    def _merge(self, identity: tf.Tensor, transformed: tf.Tensor) -> tf.Tensor:
        return tf.gather(tf.concat([identity, transformed], axis=-1), self._inverse_order, axis=-1)

    def _couple(self, values: tf.Tensor, context: tf.Tensor | None, inverse: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """x from u (or u from x when ``inverse``) and log|det| of that direction: splines on the transformed
        coordinates, conditioned on the identity ones."""
        identity, transformed = self._split(values)
        spline = self._spline(identity, context)
        if inverse:
            output, log_det = spline.inverse(transformed), spline.inverse_log_det_jacobian(transformed, event_ndims=0)
        else:
            output, log_det = spline.forward(transformed), spline.forward_log_det_jacobian(transformed, event_ndims=0)
        return self._merge(identity, output), tf.reduce_sum(log_det, axis=-1)

    def forward(self, u: tf.Tensor, context: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        return self._couple(u, context, inverse=False)

    def inverse(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        return self._couple(x, context, inverse=True)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            **attribute_config(
                self,
                "event_dim context_dim transformed n_bins spline_bound hidden_units n_blocks min_bin_size",
                "min_slope seed",
            ),
        }
