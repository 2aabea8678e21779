"""Affine masked autoregressive flow layers ("Masked Autoregressive Flow for Density Estimation", Papamakarios et
al., arXiv:1705.07057).

:class:`AutoregressiveLayer` wraps ``tfp.bijectors.MaskedAutoregressiveFlow`` around a
:class:`~caloml.models.flows.conditioners.MADE`; :func:`autoregressive_orders` chooses the order of each layer of a
flow. See ``docs/pointflow.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from caloml.models.base import attribute_config
from caloml.models.flows.conditioners import MADE
from caloml.models.flows.flow_layer import FlowLayer

__all__ = ["AutoregressiveLayer", "autoregressive_orders"]

tfb = tfp.bijectors


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
class AutoregressiveLayer(FlowLayer):
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
        return {
            **super().get_config(),
            **attribute_config(self, "event_dim context_dim order hidden_units n_hidden log_scale_clamp seed"),
        }
