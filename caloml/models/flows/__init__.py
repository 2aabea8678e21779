"""Conditional normalizing flows from TensorFlow Probability bijectors with Keras 3 conditioner networks.

Two kinds of flow layers, selected by :class:`ConditionalFlow`'s ``flow`` argument:

* ``"rqs"`` - :class:`SplineCoupling`: a rational-quadratic-spline coupling layer ("Neural Spline
  Flows", Durkan et al., arXiv:1906.04032; ``tfp.bijectors.RationalQuadraticSpline``). The event dimensions are
  split in two halves: the untouched half and the context go through a residual MLP (:class:`ResidualConditioner`)
  that outputs the bin widths, bin heights and interior knot slopes of one monotonic spline per transformed
  dimension. The spline lives on [-B, B]
  (``spline_bound``); outside it the transform is the identity (log-determinant 0), which is what the TFP bijector
  does with ``range_min=-B``. Consecutive layers transform complementary halves; every second layer draws a new
  (seeded) split, so every pair of layers transforms every dimension once.
* ``"maf"`` - :class:`AutoregressiveLayer`: an affine masked autoregressive flow layer ("Masked
  Autoregressive Flow for Density Estimation", Papamakarios et al., arXiv:1705.07057;
  ``tfp.bijectors.MaskedAutoregressiveFlow``) whose shift and log-scale come from :class:`MADE`, a masked MLP
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

Modules: :mod:`.conditioners`, :mod:`.flow_layer`, :mod:`.spline_coupling`, :mod:`.autoregressive`,
:mod:`.conditional_flow`. See ``docs/pointflow.md``.
"""

from __future__ import annotations

from caloml.models.flows.autoregressive import AutoregressiveLayer, autoregressive_orders
from caloml.models.flows.conditional_flow import FLOW_KINDS, ConditionalFlow
from caloml.models.flows.conditioners import MADE, MaskedDense, ResidualConditioner
from caloml.models.flows.flow_layer import FlowLayer, standard_normal_log_prob
from caloml.models.flows.spline_coupling import COUPLING_RULES, SplineCoupling, coupling_splits

__all__ = [
    "COUPLING_RULES",
    "FLOW_KINDS",
    "MADE",
    "AutoregressiveLayer",
    "ConditionalFlow",
    "FlowLayer",
    "MaskedDense",
    "ResidualConditioner",
    "SplineCoupling",
    "autoregressive_orders",
    "coupling_splits",
    "standard_normal_log_prob",
]
