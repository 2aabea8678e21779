"""The CaloPointFlow encoder q(z | X): a permutation-invariant network on a padded point cloud.

:class:`PointEncoder` (Deep Sets / Particle Flow Network) maps normalized points (B, P, 4) and their mask (B, P) to
the means and log-variances of the stochastic latent variables. See ``docs/pointflow.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from caloml.models.base import attribute_config
from caloml.models.flows.conditioners import dense_layer, offset_seed
from caloml.models.pointflow_normalization import POINT_DIM

__all__ = ["PointEncoder"]

#: Soft clamp of the encoder's log-variance: log_var = c * tanh(raw / c).
_LOG_VAR_CLAMP = 10.0


@keras.saving.register_keras_serializable(package="caloml")
class PointEncoder(keras.layers.Layer):
    """Permutation-invariant encoder (Deep Sets / Particle Flow Network): (points, mask) -> (mean, log_var).

    ``points`` (B, P, 4) normalized, ``mask`` (B, P) bool. Per-point MLP ``encoder_units`` (ReLU-like), pooled as
    the concatenation of the masked mean and the masked sum divided by ``sum_scale`` (a typical number of hits),
    then an MLP ``encoder_units`` and a linear layer to (B, latent_dim) means and (B, latent_dim) log-variances
    (soft-clamped to (-10, 10)). Padded points must already be zero (:class:`PointFlowVAE` does it); they are
    also excluded from the pooling.
    """

    def __init__(
        self,
        latent_dim: int,
        encoder_units: Sequence[int] = (128, 128),
        sum_scale: float = 1.0,
        activation: str = "silu",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if latent_dim < 1 or not encoder_units or min(encoder_units) < 1 or not sum_scale > 0:
            raise ValueError(f"PointEncoder: bad latent_dim {latent_dim}, encoder_units {encoder_units}, sum_scale")
        self.latent_dim = int(latent_dim)
        self.encoder_units = [int(u) for u in encoder_units]
        self.sum_scale = float(sum_scale)
        self.activation_name = str(activation)
        self.seed = seed

        self.point_layers = [
            dense_layer(u, offset_seed(seed, i), activation=activation) for i, u in enumerate(self.encoder_units)
        ]
        self.shower_layers = [
            dense_layer(u, offset_seed(seed, 100 + i), activation=activation) for i, u in enumerate(self.encoder_units)
        ]
        self.output_layer = dense_layer(2 * self.latent_dim, offset_seed(seed, 200))

    def build(self, input_shape: Any = None) -> None:
        width = POINT_DIM
        for layer in self.point_layers:
            layer.build((None, None, width))
            width = layer.units
        width *= 2
        for layer in self.shower_layers:
            layer.build((None, width))
            width = layer.units
        self.output_layer.build((None, width))
        self.built = True

    def call(self, points: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        weights = tf.cast(mask, points.dtype)[..., None]  # (B, P, 1)
        h = points
        for layer in self.point_layers:
            h = layer(h)
        h = h * weights
        total = tf.reduce_sum(h, axis=1)
        count = tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)
        pooled = tf.concat([total / count, total / self.sum_scale], axis=-1)
        for layer in self.shower_layers:
            pooled = layer(pooled)
        out = self.output_layer(pooled)
        mean, raw_log_var = out[:, : self.latent_dim], out[:, self.latent_dim :]
        return mean, _LOG_VAR_CLAMP * tf.tanh(raw_log_var / _LOG_VAR_CLAMP)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            **attribute_config(self, "latent_dim encoder_units sum_scale"),
            "activation": self.activation_name,
            "seed": self.seed,
        }
