"""The interface of a bijective flow layer and the standard normal base density of the flows.

A flow layer maps base noise u to data x (``forward``, the generative direction) and back (``inverse``, the
density-evaluation direction), each with its log-determinant. See ``docs/pointflow.md``.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

__all__ = ["FlowLayer", "standard_normal_log_prob"]

_LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(u: tf.Tensor) -> tf.Tensor:
    """log N(u; 0, 1) summed over the last axis: (..., D) -> (...)."""
    dim = tf.cast(tf.shape(u)[-1], u.dtype)
    return -0.5 * tf.reduce_sum(tf.square(u), axis=-1) - 0.5 * dim * tf.constant(_LOG_2PI, u.dtype)


class FlowLayer(keras.layers.Layer):
    """Base of the bijective layers: ``forward(u, c) -> (x, log|det dx/du|)``, ``inverse(x, c) -> (u, log|du/dx|)``."""

    event_dim: int

    def forward(self, u: tf.Tensor, context: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        raise NotImplementedError

    def inverse(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        raise NotImplementedError

    def build(self, input_shape: Any = None) -> None:
        """Build the layer's networks (their shapes are fixed by the constructor), so that its weights exist before
        the first call: a saved model loads into them."""
        for network in self._flatten_layers(include_self=False, recursive=False):
            network.build(None)
        self.built = True

    def call(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        """The inverse map x -> u (the density-evaluation direction)."""
        return self.inverse(x, context)[0]
