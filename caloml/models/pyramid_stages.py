"""Building blocks of the Calorimeter Pyramid's stages: a conditional 1-D spline flow, cell-position embeddings
and a permutation-invariant summary of a set of hit cells.

* :class:`ConditionalSpline1D`: a flow on one real value given a context vector: ``n_layers`` monotonic
  rational-quadratic splines on [-B, B] (``tfp.bijectors.RationalQuadraticSpline``; identity outside), each with
  its bin widths, heights and knot slopes computed from the context alone by a
  :class:`~caloml.models.flows.ResidualConditioner` whose output layer starts at zero (a new flow is the identity).
  The energy stage uses it for the total deposit and for every hit cell's energy.
* :class:`PositionEmbedding`: learned embeddings of the layer, angular and radial index of a cell, concatenated.
* :class:`SetSummary`: the DeepSets embedding of a set of hit positions given as a mask over all positions:
  ``[n / n_positions, mean over the set of phi(embedding)]`` with a two-layer MLP ``phi``; as a masked matrix
  product it costs one (B, P) x (P, d) product however many cells are hit, and it does not depend on the order
  of the set's elements.

Shapes: contexts (N, C); values (N,); masks (B, P) bool or float. See ``docs/pyramid.md``.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from caloml.models.base import attribute_config
from caloml.models.flows import ResidualConditioner, standard_normal_log_prob

__all__ = ["ConditionalSpline1D", "PositionEmbedding", "SetSummary"]

tfb = tfp.bijectors


@keras.saving.register_keras_serializable(package="caloml")
class ConditionalSpline1D(keras.layers.Layer):
    """A conditional flow x = f(u; c) on scalars, with a standard normal base.

    ``log_prob(x (N,), c (N, C)) -> (N,)``; ``sample(c (N, C), seed (2,)) -> x (N,)``.
    """

    def __init__(
        self,
        context_dim: int,
        n_layers: int = 3,
        n_bins: int = 12,
        spline_bound: float = 5.0,
        hidden_units: int = 64,
        n_blocks: int = 1,
        min_bin_size: float = 1e-3,
        min_slope: float = 1e-3,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if context_dim < 1 or n_layers < 1 or n_bins < 2 or not spline_bound > 0:
            raise ValueError(f"ConditionalSpline1D: bad sizes {context_dim}, {n_layers}, {n_bins}, {spline_bound}")
        self.context_dim = int(context_dim)
        self.n_layers = int(n_layers)
        self.n_bins = int(n_bins)
        self.spline_bound = float(spline_bound)
        self.hidden_units = int(hidden_units)
        self.n_blocks = int(n_blocks)
        self.min_bin_size = float(min_bin_size)
        self.min_slope = float(min_slope)
        self.seed = int(seed)
        self._slope_offset = math.log(math.expm1(1.0 - self.min_slope))
        self.conditioners = [
            ResidualConditioner(
                self.context_dim,
                0,
                3 * self.n_bins - 1,
                hidden_units=self.hidden_units,
                n_blocks=self.n_blocks,
                seed=self.seed + 100 * i,
                name=f"spline{i}",
            )
            for i in range(self.n_layers)
        ]
        self.build(None)

    def build(self, input_shape: Any = None) -> None:
        for conditioner in self.conditioners:
            conditioner.build(None)
        self.built = True

    def _splines(self, context: tf.Tensor) -> list[Any]:
        k = self.n_bins
        free = 2.0 * self.spline_bound - k * self.min_bin_size
        splines = []
        for conditioner in self.conditioners:
            params = conditioner(context)
            splines.append(
                tfb.RationalQuadraticSpline(
                    bin_widths=self.min_bin_size + free * tf.nn.softmax(params[..., :k], axis=-1),
                    bin_heights=self.min_bin_size + free * tf.nn.softmax(params[..., k : 2 * k], axis=-1),
                    knot_slopes=self.min_slope + tf.nn.softplus(params[..., 2 * k :] + self._slope_offset),
                    range_min=tf.constant(-self.spline_bound, params.dtype),
                )
            )
        return splines

    def log_prob(self, x: Any, context: Any) -> tf.Tensor:
        """log p(x | c): x (N,), context (N, C) -> (N,)."""
        u = tf.cast(x, tf.float32)
        total = tf.zeros_like(u)
        for spline in reversed(self._splines(tf.cast(context, tf.float32))):
            total += spline.inverse_log_det_jacobian(u, event_ndims=0)
            u = spline.inverse(u)
        return standard_normal_log_prob(u[..., None]) + total

    def sample(self, context: Any, seed: Any) -> tf.Tensor:
        """Draws x (N,) for contexts (N, C) with a stateless seed (2,)."""
        context = tf.cast(context, tf.float32)
        x = tf.random.stateless_normal(tf.shape(context)[:-1], seed, dtype=tf.float32)
        for spline in self._splines(context):
            x = spline.forward(x)
        return x

    def get_config(self) -> dict[str, Any]:
        names = "context_dim n_layers n_bins spline_bound hidden_units n_blocks min_bin_size min_slope seed"
        return {**super().get_config(), **attribute_config(self, names)}


@keras.saving.register_keras_serializable(package="caloml")
class PositionEmbedding(keras.layers.Layer):
    """Learned embeddings of cell indices along the grid axes, concatenated: ``axis_sizes`` (e.g. (45, 9) for
    (layer, radius)) -> ``table()`` of shape (prod(axis_sizes), len(axis_sizes) * units) in row-major order of the
    axes, and ``lookup(indices (N, n_axes))`` -> (N, len(axis_sizes) * units)."""

    def __init__(self, axis_sizes: list[int], units: int = 8, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis_sizes = [int(n) for n in axis_sizes]
        self.units = int(units)
        self.seed = int(seed)
        self.tables = [
            self.add_weight(
                shape=(n, self.units),
                initializer=keras.initializers.RandomNormal(stddev=0.5, seed=self.seed + i),
                name=f"axis{i}",
            )
            for i, n in enumerate(self.axis_sizes)
        ]
        self.built = True

    @property
    def output_dim(self) -> int:
        """Width of an embedding."""
        return len(self.axis_sizes) * self.units

    def lookup(self, indices: Any) -> tf.Tensor:
        """Embeddings (N, output_dim) of integer indices (N, n_axes)."""
        indices = tf.cast(indices, tf.int32)
        parts = [tf.gather(table, indices[:, i]) for i, table in enumerate(self.tables)]
        return tf.concat(parts, axis=-1)

    def table(self) -> tf.Tensor:
        """Embeddings of every position (prod(axis_sizes), output_dim), the last axis varying fastest."""
        grids = tf.meshgrid(*[tf.range(n) for n in self.axis_sizes], indexing="ij")
        indices = tf.stack([tf.reshape(g, [-1]) for g in grids], axis=-1)
        return self.lookup(indices)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **attribute_config(self, "axis_sizes units seed")}


@keras.saving.register_keras_serializable(package="caloml")
class SetSummary(keras.layers.Layer):
    """``(mask (B, P), position features (P, F)) -> (B, units + 1)``: the set's size over P and the mean over the
    set of a two-layer MLP of its elements' features (0 for an empty set)."""

    def __init__(self, feature_dim: int, units: int = 16, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feature_dim = int(feature_dim)
        self.units = int(units)
        self.seed = int(seed)
        init = keras.initializers.GlorotUniform
        self.first = keras.layers.Dense(self.units, "silu", kernel_initializer=init(seed=self.seed), name="phi0")
        self.second = keras.layers.Dense(self.units, "silu", kernel_initializer=init(seed=self.seed + 1), name="phi1")
        self.first.build((None, self.feature_dim))
        self.second.build((None, self.units))
        self.built = True

    @property
    def output_dim(self) -> int:
        """Width of a summary."""
        return self.units + 1

    def call(self, mask: Any, features: Any) -> tf.Tensor:
        mask = tf.cast(mask, tf.float32)
        phi = self.second(self.first(features))
        count = tf.reduce_sum(mask, axis=-1, keepdims=True)
        mean = tf.matmul(mask, phi) / tf.maximum(count, 1.0)
        size = count / tf.cast(tf.shape(mask)[-1], tf.float32)
        return tf.concat([size, mean], axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **attribute_config(self, "feature_dim units seed")}
