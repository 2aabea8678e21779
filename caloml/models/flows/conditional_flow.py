"""The conditional normalizing flow: a stack of spline coupling or masked autoregressive layers on a normal base.

:class:`ConditionalFlow` gives x = f(u; c) with u ~ N(0, 1_D), log p(x | c), and seeded samples. See
``docs/pointflow.md``.
"""

from __future__ import annotations

import random
from typing import Any

import keras
import tensorflow as tf

from caloml.models.base import attribute_config
from caloml.models.flows.autoregressive import AutoregressiveLayer, autoregressive_orders
from caloml.models.flows.flow_layer import FlowLayer, standard_normal_log_prob
from caloml.models.flows.spline_coupling import COUPLING_RULES, SplineCoupling, coupling_splits

__all__ = ["FLOW_KINDS", "ConditionalFlow"]

#: The flow layer kinds of :class:`ConditionalFlow`.
FLOW_KINDS = ("rqs", "maf")


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
        self.flow_layers: list[FlowLayer] = []
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
        return {
            **super().get_config(),
            **attribute_config(
                self, "event_dim context_dim flow n_layers n_bins spline_bound hidden_units n_blocks seed coupling_rule"
            ),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ConditionalFlow:
        """A config saved before ``coupling_rule`` existed rebuilds the ``"legacy"`` splits it was trained with."""
        return cls(**{"coupling_rule": "legacy", **config})
