"""Conditional normalizing flows from TensorFlow Probability bijectors with Keras 3 conditioner networks.

Two kinds of flow layers, selected by :class:`ConditionalFlow`'s ``flow`` argument:

* ``"rqs"`` - :class:`SplineCoupling`: a rational-quadratic-spline coupling layer (Durkan et al. 2019,
  ``tfp.bijectors.RationalQuadraticSpline``). The event dimensions are split in two halves: the untouched half and
  the context go through a residual MLP (:class:`ResidualConditioner`) that outputs the bin widths, bin heights and
  interior knot slopes of one monotonic spline per transformed dimension. The spline lives on [-B, B]
  (``spline_bound``); outside it the transform is the identity (log-determinant 0), which is what the TFP bijector
  does with ``range_min=-B``. Consecutive layers transform complementary halves; every second layer draws a new
  (seeded) split, so every pair of layers transforms every dimension once.
* ``"maf"`` - :class:`AutoregressiveLayer`: an affine masked autoregressive flow layer
  (``tfp.bijectors.MaskedAutoregressiveFlow``) whose shift and log-scale come from :class:`MADE`, a masked MLP
  written as Keras 3 layers (:class:`MaskedDense`), with the context feeding every first-layer unit. Layer ``i``
  uses the autoregressive order: identity for layer 0, reversed for odd layers, a seeded random permutation for the
  other even layers. The log-scale is soft-clamped to (-3, 3) per layer.

Conventions. ``forward`` maps base noise u to data x (the generative direction); ``inverse`` maps x to u and
returns the log-determinant of the inverse Jacobian, log|det du/dx|. Densities use a standard normal base:
``log p(x | c) = log N(u; 0, 1) + log|det du/dx|``. Events have shape (..., D) and the context (..., C): either
one context per event, (B, D) with (B, C), or a context broadcast over points, x (B, P, D) with context (B, P, C)
or (B, 1, C) - the flow then acts on every point independently given its context. The last conditioner layer of
every flow layer is initialized to zero, so that a new flow is exactly the identity (uniform bins, unit slopes;
zero shift and log-scale).

All layers build their weights from the dimensions given to their constructor (no shape inference), work in
graph mode and under ``tf.distribute``, serialize with Keras 3 (``get_config``; registered in the ``caloml``
package) and run in float32 or float64 (``dtype="float64"``, used by the tests for exact invertibility checks).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

__all__ = [
    "COUPLING_RULES",
    "FLOW_KINDS",
    "MADE",
    "AutoregressiveLayer",
    "ConditionalFlow",
    "MaskedDense",
    "ResidualConditioner",
    "SplineCoupling",
    "autoregressive_orders",
    "coupling_splits",
    "standard_normal_log_prob",
]

tfb = tfp.bijectors

#: The flow layer kinds of :class:`ConditionalFlow`.
FLOW_KINDS = ("rqs", "maf")

_LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(u: tf.Tensor) -> tf.Tensor:
    """log N(u; 0, 1) summed over the last axis: (..., D) -> (...)."""
    dim = tf.cast(tf.shape(u)[-1], u.dtype)
    return -0.5 * tf.reduce_sum(tf.square(u), axis=-1) - 0.5 * dim * tf.constant(_LOG_2PI, u.dtype)


def _seed(seed: int | None, offset: int) -> int | None:
    return None if seed is None else int(seed) + offset


def _dense(units: int, seed: int | None, *, zero: bool = False, use_bias: bool = True, **kwargs: Any) -> Any:
    initializer: Any = "zeros" if zero else keras.initializers.GlorotUniform(seed=seed)
    return keras.layers.Dense(units, kernel_initializer=initializer, use_bias=use_bias, **kwargs)


# ---------------------------------------------------------------------------------------------- conditioners


@keras.saving.register_keras_serializable(package="caloml")
class ResidualConditioner(keras.layers.Layer):
    """Residual MLP (ResNet conditioner): (x (..., input_dim), context (..., C)) -> (..., output_dim).

    ``h = W_x x + W_c c + b``, then ``n_blocks`` residual blocks ``h = h + W2 act(W1 act(h))`` of width
    ``hidden_units``, then ``act(h)`` through an output layer initialized to zero (so the flow layer it drives
    starts as the identity). ``W_c c`` is computed on the context's own shape and broadcast, so a per-shower
    context (B, 1, C) conditions every point of (B, P, input_dim) without being tiled. ``context_dim`` 0: no
    context.
    """

    def __init__(
        self,
        input_dim: int,
        context_dim: int,
        output_dim: int,
        hidden_units: int = 64,
        n_blocks: int = 2,
        activation: str = "silu",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if input_dim < 1 or output_dim < 1 or hidden_units < 1 or context_dim < 0 or n_blocks < 0:
            raise ValueError(
                f"ResidualConditioner needs input_dim, output_dim, hidden_units >= 1 and context_dim, n_blocks >= 0;"
                f" got {input_dim}, {output_dim}, {hidden_units}, {context_dim}, {n_blocks}"
            )
        self.input_dim = int(input_dim)
        self.context_dim = int(context_dim)
        self.output_dim = int(output_dim)
        self.hidden_units = int(hidden_units)
        self.n_blocks = int(n_blocks)
        self.activation = keras.activations.get(activation)
        self.activation_name = str(activation)
        self.seed = seed
        policy = self.dtype_policy
        self.input_layer = _dense(self.hidden_units, _seed(seed, 0), dtype=policy, name="input")
        self.context_layer = (
            _dense(self.hidden_units, _seed(seed, 1), use_bias=False, dtype=policy, name="context")
            if self.context_dim
            else None
        )
        self.block_first = [
            _dense(self.hidden_units, _seed(seed, 10 + 2 * i), dtype=policy, name=f"block{i}_a")
            for i in range(self.n_blocks)
        ]
        self.block_second = [
            _dense(self.hidden_units, _seed(seed, 11 + 2 * i), dtype=policy, name=f"block{i}_b")
            for i in range(self.n_blocks)
        ]
        self.output_layer = _dense(self.output_dim, None, zero=True, dtype=policy, name="output")

    def build(self, input_shape: Any = None) -> None:
        self.input_layer.build((None, self.input_dim))
        if self.context_layer is not None:
            self.context_layer.build((None, self.context_dim))
        for first, second in zip(self.block_first, self.block_second, strict=True):
            first.build((None, self.hidden_units))
            second.build((None, self.hidden_units))
        self.output_layer.build((None, self.hidden_units))
        self.built = True

    def call(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        h = self.input_layer(x)
        if self.context_layer is not None:
            if context is None:
                raise ValueError(f"{self.name}: a context of dimension {self.context_dim} is required")
            h = h + self.context_layer(context)
        for first, second in zip(self.block_first, self.block_second, strict=True):
            h = h + second(self.activation(first(self.activation(h))))
        return self.output_layer(self.activation(h))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            input_dim=self.input_dim,
            context_dim=self.context_dim,
            output_dim=self.output_dim,
            hidden_units=self.hidden_units,
            n_blocks=self.n_blocks,
            activation=self.activation_name,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="caloml")
class MaskedDense(keras.layers.Layer):
    """Dense layer whose kernel is multiplied by a fixed connectivity mask (the MADE building block).

    Input unit i has degree ``input_degrees[i]``, output unit j degree ``output_degrees[j]``; the connection i -> j
    exists when ``output_degrees[j] >= input_degrees[i]`` (hidden layers) or ``>`` when ``strict`` (output layer).
    ``zero_init``: kernel and bias start at zero.
    """

    def __init__(
        self,
        input_degrees: Sequence[int],
        output_degrees: Sequence[int],
        strict: bool = False,
        zero_init: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_degrees = [int(d) for d in input_degrees]
        self.output_degrees = [int(d) for d in output_degrees]
        self.strict = bool(strict)
        self.zero_init = bool(zero_init)
        self.seed = seed
        inputs = np.asarray(self.input_degrees)[:, None]
        outputs = np.asarray(self.output_degrees)[None, :]
        self._mask = (outputs > inputs) if self.strict else (outputs >= inputs)

    @property
    def mask_array(self) -> np.ndarray:
        """The (n_in, n_out) connectivity mask (bool)."""
        return self._mask.copy()

    def build(self, input_shape: Any = None) -> None:
        initializer: Any = "zeros" if self.zero_init else keras.initializers.GlorotUniform(seed=self.seed)
        self.kernel = self.add_weight(
            shape=self._mask.shape, initializer=initializer, name="kernel", dtype=self.variable_dtype
        )
        self.bias = self.add_weight(
            shape=(len(self.output_degrees),), initializer="zeros", name="bias", dtype=self.variable_dtype
        )
        self.built = True

    def call(self, x: tf.Tensor) -> tf.Tensor:
        kernel = tf.convert_to_tensor(self.kernel) * tf.constant(self._mask, dtype=self.compute_dtype)
        return tf.tensordot(x, kernel, axes=[[-1], [0]]) + self.bias

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            input_degrees=list(self.input_degrees),
            output_degrees=list(self.output_degrees),
            strict=self.strict,
            zero_init=self.zero_init,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="caloml")
class MADE(keras.layers.Layer):
    """Masked autoencoder for distribution estimation with a context: (x (..., D), c (..., C)) -> (..., D, n_params).

    ``order``: permutation of range(D); dimension ``order[k]`` is the k-th in the autoregressive order, so the
    parameters of that dimension depend only on the dimensions before it in the order (and on the context).
    ``n_hidden`` masked hidden layers of ``hidden_units``; hidden degrees cycle over 0 .. D - 1 (degree-0 units see
    only the context, so the first dimension is conditioned too); the context enters every first-layer unit
    unmasked. The output layer starts at zero.
    """

    def __init__(
        self,
        event_dim: int,
        context_dim: int,
        n_params: int = 2,
        hidden_units: int = 64,
        n_hidden: int = 2,
        order: Sequence[int] | None = None,
        activation: str = "silu",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if event_dim < 1 or n_params < 1 or hidden_units < 1 or n_hidden < 1 or context_dim < 0:
            raise ValueError(f"MADE: invalid sizes event_dim={event_dim} n_params={n_params} hidden={hidden_units}")
        order = list(range(event_dim)) if order is None else [int(i) for i in order]
        if sorted(order) != list(range(event_dim)):
            raise ValueError(f"MADE: order {order} is not a permutation of range({event_dim})")
        self.event_dim = int(event_dim)
        self.context_dim = int(context_dim)
        self.n_params = int(n_params)
        self.hidden_units = int(hidden_units)
        self.n_hidden = int(n_hidden)
        self.order = order
        self.activation = keras.activations.get(activation)
        self.activation_name = str(activation)
        self.seed = seed
        input_degrees = np.empty(event_dim, dtype=int)
        input_degrees[np.asarray(order)] = np.arange(1, event_dim + 1)  # degree of dimension d: its rank + 1
        hidden_degrees = [int(d) for d in np.arange(hidden_units) % event_dim]
        output_degrees = [int(input_degrees[d]) for d in range(event_dim) for _ in range(n_params)]
        policy = self.dtype_policy
        degrees_in = [int(d) for d in input_degrees]
        self.hidden_layers = []
        for i in range(self.n_hidden):
            self.hidden_layers.append(
                MaskedDense(degrees_in, hidden_degrees, seed=_seed(seed, i), dtype=policy, name=f"hidden{i}")
            )
            degrees_in = hidden_degrees
        self.context_layer = (
            _dense(hidden_units, _seed(seed, 100), use_bias=False, dtype=policy, name="context")
            if self.context_dim
            else None
        )
        self.output_layer = MaskedDense(
            hidden_degrees, output_degrees, strict=True, zero_init=True, dtype=policy, name="output"
        )

    def build(self, input_shape: Any = None) -> None:
        for layer in self.hidden_layers:
            layer.build(None)
        if self.context_layer is not None:
            self.context_layer.build((None, self.context_dim))
        self.output_layer.build(None)
        self.built = True

    def call(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        h = self.hidden_layers[0](x)
        if self.context_layer is not None:
            if context is None:
                raise ValueError(f"{self.name}: a context of dimension {self.context_dim} is required")
            h = h + self.context_layer(context)
        h = self.activation(h)
        for layer in self.hidden_layers[1:]:
            h = self.activation(layer(h))
        out = self.output_layer(h)
        shape = tf.concat([tf.shape(out)[:-1], [self.event_dim, self.n_params]], axis=0)
        return tf.reshape(out, shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            event_dim=self.event_dim,
            context_dim=self.context_dim,
            n_params=self.n_params,
            hidden_units=self.hidden_units,
            n_hidden=self.n_hidden,
            order=list(self.order),
            activation=self.activation_name,
            seed=self.seed,
        )
        return config


# ---------------------------------------------------------------------------------------------- flow layers


class _FlowLayer(keras.layers.Layer):
    """Base of the bijective layers: ``forward(u, c) -> (x, log|det dx/du|)``, ``inverse(x, c) -> (u, log|du/dx|)``."""

    event_dim: int

    def forward(self, u: tf.Tensor, context: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        raise NotImplementedError

    def inverse(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        raise NotImplementedError

    def call(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        """The inverse map x -> u (the density-evaluation direction)."""
        return self.inverse(x, context)[0]


@keras.saving.register_keras_serializable(package="caloml")
class SplineCoupling(_FlowLayer):
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

    def build(self, input_shape: Any = None) -> None:
        self.conditioner.build(None)
        self.built = True

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

    def forward(self, u: tf.Tensor, context: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        u_identity, u_transformed = self._split(u)
        spline = self._spline(u_identity, context)
        x_transformed = spline.forward(u_transformed)
        log_det = tf.reduce_sum(spline.forward_log_det_jacobian(u_transformed, event_ndims=0), axis=-1)
        return self._merge(u_identity, x_transformed), log_det

    def inverse(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        x_identity, x_transformed = self._split(x)
        spline = self._spline(x_identity, context)
        u_transformed = spline.inverse(x_transformed)
        log_det = tf.reduce_sum(spline.inverse_log_det_jacobian(x_transformed, event_ndims=0), axis=-1)
        return self._merge(x_identity, u_transformed), log_det

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            event_dim=self.event_dim,
            context_dim=self.context_dim,
            transformed=list(self.transformed),
            n_bins=self.n_bins,
            spline_bound=self.spline_bound,
            hidden_units=self.hidden_units,
            n_blocks=self.n_blocks,
            min_bin_size=self.min_bin_size,
            min_slope=self.min_slope,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="caloml")
class AutoregressiveLayer(_FlowLayer):
    """Affine masked autoregressive flow layer (``tfp.bijectors.MaskedAutoregressiveFlow``) with a :class:`MADE`.

    ``x_d = u_d * exp(s_d) + m_d`` where (m_d, s_d) depend on the x dimensions before d in ``order`` and on the
    context; ``s = clamp * tanh(raw / clamp)`` (``log_scale_clamp``, 3). The inverse (density evaluation) is one
    network pass; the forward (sampling) takes ``event_dim`` passes.
    """

    def __init__(
        self,
        event_dim: int,
        context_dim: int,
        order: Sequence[int] | None = None,
        hidden_units: int = 64,
        n_hidden: int = 2,
        log_scale_clamp: float = 3.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not log_scale_clamp > 0:
            raise ValueError(f"log_scale_clamp must be positive, got {log_scale_clamp}")
        self.event_dim = int(event_dim)
        self.context_dim = int(context_dim)
        self.order = list(range(event_dim)) if order is None else [int(i) for i in order]
        self.hidden_units = int(hidden_units)
        self.n_hidden = int(n_hidden)
        self.log_scale_clamp = float(log_scale_clamp)
        self.seed = seed
        self.made = MADE(
            self.event_dim,
            self.context_dim,
            n_params=2,
            hidden_units=self.hidden_units,
            n_hidden=self.n_hidden,
            order=self.order,
            seed=seed,
            dtype=self.dtype_policy,
            name="made",
        )

    def build(self, input_shape: Any = None) -> None:
        self.made.build(None)
        self.built = True

    def _bijector(self, context: tf.Tensor | None) -> Any:
        clamp = self.log_scale_clamp

        def shift_and_log_scale(y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            params = self.made(y, context)
            return params[..., 0], clamp * tf.tanh(params[..., 1] / clamp)

        return tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=shift_and_log_scale, unroll_loop=True)

    def forward(self, u: tf.Tensor, context: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        bijector = self._bijector(context)
        x = bijector.forward(u)
        # log|dx/du| = -log|du/dx| at x: one more network pass instead of differentiating the loop
        log_det = -bijector.inverse_log_det_jacobian(x, event_ndims=1)
        return x, log_det

    def inverse(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        bijector = self._bijector(context)
        return bijector.inverse(x), bijector.inverse_log_det_jacobian(x, event_ndims=1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            event_dim=self.event_dim,
            context_dim=self.context_dim,
            order=list(self.order),
            hidden_units=self.hidden_units,
            n_hidden=self.n_hidden,
            log_scale_clamp=self.log_scale_clamp,
            seed=self.seed,
        )
        return config


# ---------------------------------------------------------------------------------------------- the flow


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


def autoregressive_orders(event_dim: int, n_layers: int, seed: int) -> list[list[int]]:
    """The autoregressive order of each MAF layer: identity, reversed (odd layers), seeded permutations (even)."""
    rng = np.random.default_rng(seed)
    orders: list[list[int]] = []
    for i in range(n_layers):
        if i == 0:
            orders.append(list(range(event_dim)))
        elif i % 2 == 1:
            orders.append(orders[-1][::-1])
        else:
            orders.append([int(d) for d in rng.permutation(event_dim)])
    return orders


@keras.saving.register_keras_serializable(package="caloml")
class ConditionalFlow(keras.layers.Layer):
    """A conditional normalizing flow x = f(u; c) with a standard normal base u ~ N(0, 1_D).

    Parameters
    ----------
    event_dim:
        D, the dimension of the modelled variable.
    context_dim:
        C, the dimension of the condition (0: unconditional; pass ``context=None``).
    flow:
        ``"rqs"`` (spline coupling layers, needs D >= 2) or ``"maf"`` (affine autoregressive layers).
    n_layers:
        Number of flow layers.
    n_bins, spline_bound:
        Spline bins and the half-width B of the spline domain [-B, B] (``"rqs"``).
    hidden_units:
        Width of the conditioner networks.
    n_blocks:
        Residual blocks per conditioner (``"rqs"``) or masked hidden layers per MADE (``"maf"``).
    seed:
        Seed of the weight initializers and of the splits / orders; None: random (recorded in the config).
    coupling_rule:
        :data:`COUPLING_RULES` rule of the coupling splits (``"rqs"``); a saved config without it loads as
        ``"legacy"``. The splits and orders are functions of (seed, rule): weights only fit a flow with both equal.

    Shapes: x and u (..., D); context (..., C) broadcastable against them (per event, or (B, 1, C) for (B, P, D)
    point sets); log-determinants and log-densities (...).
    """

    def __init__(
        self,
        event_dim: int,
        context_dim: int = 0,
        flow: str = "rqs",
        n_layers: int = 4,
        n_bins: int = 8,
        spline_bound: float = 5.0,
        hidden_units: int = 64,
        n_blocks: int = 2,
        seed: int | None = None,
        coupling_rule: str = "alternating",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if coupling_rule not in COUPLING_RULES:
            raise ValueError(f"coupling_rule must be one of {COUPLING_RULES}, got {coupling_rule!r}")
        if flow not in FLOW_KINDS:
            raise ValueError(f"flow must be one of {FLOW_KINDS}, got {flow!r}")
        if event_dim < (2 if flow == "rqs" else 1) or n_layers < 1 or context_dim < 0:
            raise ValueError(f"ConditionalFlow: bad event_dim {event_dim} / n_layers {n_layers} for flow {flow!r}")
        self.event_dim = int(event_dim)
        self.context_dim = int(context_dim)
        self.flow = flow
        self.n_layers = int(n_layers)
        self.n_bins = int(n_bins)
        self.spline_bound = float(spline_bound)
        self.hidden_units = int(hidden_units)
        self.n_blocks = int(n_blocks)
        self.coupling_rule = coupling_rule
        self.seed: int = int(seed) if seed is not None else random.SystemRandom().randrange(2**31 - 2**20)
        policy = self.dtype_policy
        self.flow_layers: list[_FlowLayer] = []
        if flow == "rqs":
            for i, transformed in enumerate(
                coupling_splits(self.event_dim, self.n_layers, self.seed, self.coupling_rule)
            ):
                self.flow_layers.append(
                    SplineCoupling(
                        self.event_dim,
                        self.context_dim,
                        transformed,
                        n_bins=self.n_bins,
                        spline_bound=self.spline_bound,
                        hidden_units=self.hidden_units,
                        n_blocks=self.n_blocks,
                        seed=self.seed + 1000 * (i + 1),
                        dtype=policy,
                        name=f"coupling{i}",
                    )
                )
        else:
            for i, order in enumerate(autoregressive_orders(self.event_dim, self.n_layers, self.seed)):
                self.flow_layers.append(
                    AutoregressiveLayer(
                        self.event_dim,
                        self.context_dim,
                        order=order,
                        hidden_units=self.hidden_units,
                        n_hidden=max(1, self.n_blocks),
                        seed=self.seed + 1000 * (i + 1),
                        dtype=policy,
                        name=f"autoregressive{i}",
                    )
                )
        self.build(None)

    def build(self, input_shape: Any = None) -> None:
        for layer in self.flow_layers:
            layer.build(None)
        self.built = True

    def _cast(self, values: Any) -> tf.Tensor:
        return tf.cast(values, self.compute_dtype)

    def _context(self, context: Any) -> tf.Tensor | None:
        if self.context_dim == 0:
            return None
        if context is None:
            raise ValueError(f"{self.name}: a context of dimension {self.context_dim} is required")
        return self._cast(context)

    def forward_and_log_det(self, u: Any, context: Any = None) -> tuple[tf.Tensor, tf.Tensor]:
        """x = f(u; c) and log|det dx/du|: (..., D), (...)."""
        x = self._cast(u)
        c = self._context(context)
        total = tf.zeros(tf.shape(x)[:-1], x.dtype)
        for layer in self.flow_layers:
            x, log_det = layer.forward(x, c)
            total += log_det
        return x, total

    def forward(self, u: Any, context: Any = None) -> tf.Tensor:
        """x = f(u; c): base noise (..., D) -> data (..., D)."""
        return self.forward_and_log_det(u, context)[0]

    def inverse(self, x: Any, context: Any = None) -> tuple[tf.Tensor, tf.Tensor]:
        """u = f^-1(x; c) and log|det du/dx|: (..., D), (...)."""
        u = self._cast(x)
        c = self._context(context)
        total = tf.zeros(tf.shape(u)[:-1], u.dtype)
        for layer in reversed(self.flow_layers):
            u, log_det = layer.inverse(u, c)
            total += log_det
        return u, total

    def log_prob(self, x: Any, context: Any = None) -> tf.Tensor:
        """log p(x | c) = log N(u; 0, 1) + log|det du/dx|: (..., D) -> (...)."""
        u, log_det = self.inverse(x, context)
        return standard_normal_log_prob(u) + log_det

    def sample(self, context: Any, seed: Any, sample_shape: Any = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Samples x (*sample_shape, D) and their log p(x | c) (*sample_shape).

        ``seed``: (2,) int32/int64 stateless seed. ``sample_shape``: the batch shape of the samples; by default the
        context's batch shape ``context.shape[:-1]`` (required when ``context_dim`` is 0).
        """
        if sample_shape is None:
            if context is None:
                raise ValueError("sample needs sample_shape when there is no context")
            sample_shape = tf.shape(context)[:-1]
        shape = tf.concat([tf.cast(sample_shape, tf.int32), [self.event_dim]], axis=0)
        u = tf.random.stateless_normal(shape, seed=seed, dtype=self.compute_dtype)
        x, log_det = self.forward_and_log_det(u, context)
        return x, standard_normal_log_prob(u) - log_det

    def call(self, x: Any, context: Any = None) -> tf.Tensor:
        """log p(x | c) (see :meth:`log_prob`)."""
        return self.log_prob(x, context)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            event_dim=self.event_dim,
            context_dim=self.context_dim,
            flow=self.flow,
            n_layers=self.n_layers,
            n_bins=self.n_bins,
            spline_bound=self.spline_bound,
            hidden_units=self.hidden_units,
            n_blocks=self.n_blocks,
            seed=self.seed,
            coupling_rule=self.coupling_rule,
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ConditionalFlow:
        """A config saved before ``coupling_rule`` existed rebuilds the ``"legacy"`` splits it was trained with."""
        return cls(**{"coupling_rule": "legacy", **config})
