"""Conditioner networks of the flow layers, written as Keras 3 layers: a residual MLP and a masked MADE.

:class:`ResidualConditioner` drives the spline coupling layers, :class:`MADE` (built from :class:`MaskedDense`)
the masked autoregressive layers. Their last layer starts at zero, so the flow layer they drive starts as the
identity. See ``docs/pointflow.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.models.base import attribute_config

__all__ = ["MADE", "MaskedDense", "ResidualConditioner", "dense_layer", "offset_seed"]


def offset_seed(seed: int | None, offset: int) -> int | None:
    """The seed of one sub-layer: ``seed + offset`` (None stays None: Keras' global seed)."""
    return None if seed is None else int(seed) + offset


def dense_layer(units: int, seed: int | None, *, zero: bool = False, use_bias: bool = True, **kwargs: Any) -> Any:
    """A ``keras.layers.Dense`` with a seeded Glorot-uniform kernel, or a zero kernel when ``zero``."""
    initializer: Any = "zeros" if zero else keras.initializers.GlorotUniform(seed=seed)
    return keras.layers.Dense(units, kernel_initializer=initializer, use_bias=use_bias, **kwargs)


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
        self.input_layer = dense_layer(self.hidden_units, offset_seed(seed, 0), dtype=policy, name="input")
        self.context_layer = (
            dense_layer(self.hidden_units, offset_seed(seed, 1), use_bias=False, dtype=policy, name="context")
            if self.context_dim
            else None
        )
        self.block_first = [
            dense_layer(self.hidden_units, offset_seed(seed, 10 + 2 * i), dtype=policy, name=f"block{i}_a")
            for i in range(self.n_blocks)
        ]
        self.block_second = [
            dense_layer(self.hidden_units, offset_seed(seed, 11 + 2 * i), dtype=policy, name=f"block{i}_b")
            for i in range(self.n_blocks)
        ]
        self.output_layer = dense_layer(self.output_dim, None, zero=True, dtype=policy, name="output")

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
        return {
            **super().get_config(),
            **attribute_config(self, "input_dim context_dim output_dim hidden_units n_blocks"),
            "activation": self.activation_name,
            "seed": self.seed,
        }


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
        return {**super().get_config(), **attribute_config(self, "input_degrees output_degrees strict zero_init seed")}


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
                MaskedDense(degrees_in, hidden_degrees, seed=offset_seed(seed, i), dtype=policy, name=f"hidden{i}")
            )
            degrees_in = hidden_degrees
        self.context_layer = (
            dense_layer(hidden_units, offset_seed(seed, 100), use_bias=False, dtype=policy, name="context")
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
        return {
            **super().get_config(),
            **attribute_config(self, "event_dim context_dim n_params hidden_units n_hidden order"),
            "activation": self.activation_name,
            "seed": self.seed,
        }
