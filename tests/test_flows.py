"""Conditional normalizing flows (caloml.models.flows): invertibility, log-determinants, domain edges, sampling, saving.

The bijection checks run in float64 on flows whose weights are set to random values (a new flow is the identity),
so that the transforms are far from trivial; Jacobians come from ``tf.GradientTape.batch_jacobian``.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from caloml.models.flows import (
    AutoregressiveLayer,
    ConditionalFlow,
    SplineCoupling,
    autoregressive_orders,
    coupling_splits,
    standard_normal_log_prob,
)

BOUND = 5.0
EVENT_DIM = 3
CONTEXT_DIM = 2


def _randomize(layer: keras.layers.Layer, scale: float = 0.2, seed: int = 0) -> None:
    """Replace every weight by N(0, scale^2) values (moves the flow away from its identity initialization)."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(0.0, scale, size=weight.shape))


def _inputs(shape: tuple[int, ...], seed: int = 1, spread: float = 2.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, spread, size=shape)


def _float64_layers() -> list[keras.layers.Layer]:
    spline = SplineCoupling(
        EVENT_DIM, CONTEXT_DIM, [0, 2], n_bins=6, hidden_units=16, n_blocks=1, seed=3, dtype="float64"
    )
    maf = AutoregressiveLayer(
        EVENT_DIM, CONTEXT_DIM, order=[2, 0, 1], hidden_units=16, n_hidden=2, seed=4, dtype="float64"
    )
    for layer in (spline, maf):
        layer.build(None)
        _randomize(layer)
    return [spline, maf]


def _flow(kind: str, dtype: str = "float64", randomize: bool = True, **kwargs: object) -> ConditionalFlow:
    options: dict = {"n_layers": 3, "n_bins": 6, "hidden_units": 16, "n_blocks": 1, "seed": 7}
    options.update(kwargs)
    flow = ConditionalFlow(EVENT_DIM, CONTEXT_DIM, flow=kind, dtype=dtype, **options)
    if randomize:
        _randomize(flow)
    return flow


def _jacobian(function, x: np.ndarray) -> np.ndarray:
    """Per-example Jacobians (B, D, D) of ``function`` (B, D) -> (B, D) by autodiff, one eager backward pass per row.

    (Same as ``tape.batch_jacobian`` for functions acting on each example separately, without its costly tracing.)
    """
    x_var = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x_var)
        out = function(x_var)
        columns = [out[:, i] for i in range(x.shape[-1])]
    rows = [tape.gradient(column, x_var).numpy() for column in columns]
    return np.stack(rows, axis=1)


def _log_abs_det(jacobian: np.ndarray) -> np.ndarray:
    return np.linalg.slogdet(jacobian)[1]


@pytest.mark.parametrize("index", [0, 1], ids=["spline-coupling", "autoregressive"])
def test_flow_layer_is_invertible_with_autodiff_log_det(index: int) -> None:
    layer = _float64_layers()[index]
    u = _inputs((32, EVENT_DIM))
    context = _inputs((32, CONTEXT_DIM), seed=2, spread=1.0)
    x, log_det = layer.forward(tf.constant(u), tf.constant(context))
    assert np.abs(x.numpy() - u).max() > 0.05  # a real transform, not the identity
    u_back, log_det_inverse = layer.inverse(x, tf.constant(context))
    np.testing.assert_allclose(u_back.numpy(), u, rtol=0, atol=1e-10)
    np.testing.assert_allclose(log_det.numpy(), -log_det_inverse.numpy(), rtol=0, atol=1e-10)

    jacobian = _jacobian(lambda values: layer.inverse(values, tf.constant(context))[0], x.numpy())
    np.testing.assert_allclose(_log_abs_det(jacobian), log_det_inverse.numpy(), rtol=0, atol=1e-8)
    if index == 0:  # coupling: the untouched dimension passes through
        np.testing.assert_array_equal(x.numpy()[:, 1], u[:, 1])
    else:  # autoregressive in the order (2, 0, 1): du_i/dx_j = 0 for j after i in the order
        rank = {dim: k for k, dim in enumerate([2, 0, 1])}
        later = np.array([[rank[j] > rank[i] for j in range(EVENT_DIM)] for i in range(EVENT_DIM)])
        assert np.abs(jacobian[:, later]).max() == 0.0
        assert np.abs(jacobian[:, ~later]).min() > 0.0


@pytest.mark.parametrize("kind", ["rqs", "maf"])
def test_flow_is_invertible_with_autodiff_log_det(kind: str) -> None:
    flow = _flow(kind)
    x = _inputs((40, EVENT_DIM))
    context = _inputs((40, CONTEXT_DIM), seed=2, spread=1.0)
    u, log_det_inverse = flow.inverse(x, context)
    assert np.abs(u.numpy() - x).max() > 0.05
    x_back, log_det = flow.forward_and_log_det(u, context)
    np.testing.assert_allclose(x_back.numpy(), x, rtol=0, atol=1e-9)
    np.testing.assert_allclose(log_det.numpy(), -log_det_inverse.numpy(), rtol=0, atol=1e-9)

    jacobian = _jacobian(lambda values: flow.inverse(values, context)[0], x)
    np.testing.assert_allclose(_log_abs_det(jacobian), log_det_inverse.numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(
        flow.log_prob(x, context).numpy(),
        standard_normal_log_prob(u).numpy() + log_det_inverse.numpy(),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize("kind", ["rqs", "maf"])
def test_context_broadcast_over_points(kind: str) -> None:
    """A per-shower context (B, 1, C) conditions every point of (B, P, D) like a tiled (B, P, C) context."""
    flow = _flow(kind)
    x = _inputs((4, 6, EVENT_DIM))
    context = _inputs((4, 1, CONTEXT_DIM), seed=2, spread=1.0)
    tiled = np.repeat(context, 6, axis=1)
    broadcast = flow.log_prob(x, context).numpy()
    assert broadcast.shape == (4, 6)
    np.testing.assert_allclose(broadcast, flow.log_prob(x, tiled).numpy(), rtol=0, atol=1e-10)
    flat = flow.log_prob(x.reshape(-1, EVENT_DIM), tiled.reshape(-1, CONTEXT_DIM)).numpy()
    np.testing.assert_allclose(broadcast.reshape(-1), flat, rtol=0, atol=1e-10)
    u, _ = flow.inverse(x, context)
    np.testing.assert_allclose(flow.forward(u, context).numpy(), x, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind", ["rqs", "maf"])
def test_new_flow_is_the_identity(kind: str) -> None:
    flow = _flow(kind, dtype="float32", randomize=False, seed=11)
    u = _inputs((16, EVENT_DIM)).astype(np.float32)
    x, log_det = flow.forward_and_log_det(u, _inputs((16, CONTEXT_DIM)).astype(np.float32))
    np.testing.assert_allclose(x.numpy(), u, rtol=0, atol=1e-5)
    np.testing.assert_allclose(log_det.numpy(), 0.0, atol=1e-5)


def test_spline_domain_edges_and_identity_tails() -> None:
    flow = _flow("rqs")
    values = [-(BOUND + 10), -BOUND, -BOUND + 1e-9, 0.0, BOUND - 1e-9, BOUND, BOUND + 10]
    grid = np.array(np.meshgrid(values, values, values)).reshape(EVENT_DIM, -1).T  # every combination
    context = np.tile([[0.3, -0.7]], (len(grid), 1))
    for direction in ("forward", "inverse"):
        if direction == "forward":
            out, log_det = flow.forward_and_log_det(grid, context)
        else:
            out, log_det = flow.inverse(grid, context)
        assert np.isfinite(out.numpy()).all()
        assert np.isfinite(log_det.numpy()).all()
        outside = np.abs(grid).min(axis=1) >= BOUND  # every coordinate on or beyond an edge: identity
        np.testing.assert_allclose(out.numpy()[outside], grid[outside], rtol=0, atol=1e-9)
        np.testing.assert_allclose(log_det.numpy()[outside], 0.0, atol=1e-9)
    # a coupling layer maps its domain onto itself: inside stays inside, outside is untouched
    layer = flow.flow_layers[0]
    x, log_det = layer.forward(tf.constant(grid), tf.constant(context))
    transformed = layer.transformed
    before, after = grid[:, transformed], x.numpy()[:, transformed]
    inside = np.abs(before) <= BOUND
    assert (np.abs(after[inside]) <= BOUND + 1e-12).all()
    np.testing.assert_array_equal(after[~inside], before[~inside])
    edge = np.abs(before) == BOUND
    np.testing.assert_allclose(after[edge], before[edge], rtol=0, atol=1e-12)  # knots at the edges stay fixed


def test_autoregressive_flow_is_finite_at_extremes() -> None:
    flow = _flow("maf")
    x = np.array([[-(BOUND + 10)] * 3, [BOUND + 10] * 3, [-BOUND, 0.0, BOUND], [1e3, -1e3, 0.0]])
    context = np.zeros((len(x), CONTEXT_DIM))
    u, log_det = flow.inverse(x, context)
    assert np.isfinite(u.numpy()).all()
    assert np.isfinite(log_det.numpy()).all()
    np.testing.assert_allclose(flow.forward(u, context).numpy(), x, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("kind", ["rqs", "maf"])
def test_sample_log_prob_and_seed(kind: str) -> None:
    flow = _flow(kind, dtype="float32")
    context = tf.constant(_inputs((3, 1, CONTEXT_DIM), spread=1.0), tf.float32)
    seed = tf.constant([5, 6], tf.int32)
    x, log_prob = flow.sample(context, seed, sample_shape=[3, 50])
    assert x.shape == (3, 50, EVENT_DIM)
    assert log_prob.shape == (3, 50)
    assert x.dtype == tf.float32
    assert np.isfinite(log_prob.numpy()).all()
    np.testing.assert_allclose(flow.log_prob(x, context).numpy(), log_prob.numpy(), rtol=1e-4, atol=1e-4)
    again, _ = flow.sample(context, seed, sample_shape=[3, 50])
    np.testing.assert_array_equal(again.numpy(), x.numpy())
    other, _ = flow.sample(context, tf.constant([5, 7]), sample_shape=[3, 50])
    assert not np.array_equal(other.numpy(), x.numpy())
    per_event, _ = flow.sample(context[:, 0, :], seed)  # default sample shape: the context's batch shape
    assert per_event.shape == (3, EVENT_DIM)


@pytest.mark.parametrize("kind", ["rqs", "maf"])
def test_serialization_and_graph_mode(kind: str) -> None:
    flow = _flow(kind, dtype="float32", n_layers=2)
    x = _inputs((8, EVENT_DIM)).astype(np.float32)
    context = _inputs((8, CONTEXT_DIM), seed=3).astype(np.float32)
    expected = flow.log_prob(x, context).numpy()

    config = keras.saving.serialize_keras_object(flow)
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, ConditionalFlow)
    assert clone.get_config() == flow.get_config()
    clone.set_weights(flow.get_weights())
    np.testing.assert_array_equal(clone.log_prob(x, context).numpy(), expected)

    graph = tf.function(lambda x, c: flow.log_prob(x, c))
    np.testing.assert_allclose(graph(tf.constant(x), tf.constant(context)).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="flow must be one of"):
        ConditionalFlow(3, 1, flow="glow")
    with pytest.raises(ValueError, match="event_dim"):
        ConditionalFlow(1, 1, flow="rqs")
    with pytest.raises(ValueError, match="proper subset"):
        SplineCoupling(3, 1, [0, 1, 2])
    flow = ConditionalFlow(2, 1, n_layers=1, hidden_units=4, n_blocks=0, seed=0)
    with pytest.raises(ValueError, match="context of dimension 1 is required"):
        flow.log_prob(np.zeros((1, 2), np.float32))


@pytest.mark.parametrize("dim", [2, 4, 5, 34])
def test_layer_splits_and_orders(dim: int) -> None:
    """Consecutive coupling layers transform complementary halves; MAF orders are permutations (odd: reversed)."""
    splits = coupling_splits(dim, 6, seed=3)
    assert splits == coupling_splits(dim, 6, seed=3)
    for first, second in zip(splits[::2], splits[1::2], strict=True):
        assert sorted(first + second) == list(range(dim))
        assert len(first) == dim - dim // 2
    orders = autoregressive_orders(dim, 5, seed=3)
    assert all(sorted(order) == list(range(dim)) for order in orders)
    assert orders[0] == list(range(dim))
    assert orders[1] == orders[0][::-1]
    assert orders[3] == orders[2][::-1]


def test_consecutive_coupling_layers_never_transform_the_same_half() -> None:
    """Every pair of consecutive layers (odd -> even included) transforms different dimensions, for any seed; the
    legacy rule (kept for saved models) does not guarantee it."""
    legacy_repeats = 0
    for seed in range(200):
        splits = coupling_splits(4, 8, seed)
        assert all(a != b for a, b in itertools.pairwise(splits))
        legacy = coupling_splits(4, 8, seed, rule="legacy")
        legacy_repeats += any(a == b for a, b in itertools.pairwise(legacy))
        assert legacy[:2] == splits[:2]  # the rules differ only where the legacy one repeats a half
    assert legacy_repeats > 0


def test_a_flow_saved_without_a_coupling_rule_loads_with_the_legacy_splits() -> None:
    seed = next(s for s in range(100) if coupling_splits(4, 4, s) != coupling_splits(4, 4, s, rule="legacy"))
    flow = ConditionalFlow(4, 0, n_layers=4, hidden_units=4, n_blocks=0, seed=seed)
    assert [layer.transformed for layer in flow.flow_layers] == coupling_splits(4, 4, seed)
    config = flow.get_config()
    assert config["coupling_rule"] == "alternating"
    del config["coupling_rule"]
    old = ConditionalFlow.from_config(config)
    assert old.coupling_rule == "legacy"
    assert [layer.transformed for layer in old.flow_layers] == coupling_splits(4, 4, seed, rule="legacy")
