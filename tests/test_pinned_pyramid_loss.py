"""The Calorimeter Pyramid's training loss against a hand computation of its stages' inputs (NumPy, literals).

"The Calorimeter Pyramid: rethinking the design of generative calorimeter shower models" (Schnake, Krücker, Käch,
Scham, Borras): a cell is hit when it reaches the readout threshold; stage 1 models which layers (cells clustered
over alpha and r) are hit, stage 2 which radial cells of each hit layer, stage 3 which angular cells of each hit
(layer, radius) cell. Each stage's flow sees, per (cluster) cell, its subcells dequantized by the Gumbel top-k trick

    x_i ~ Gumbel(0, 1) for a hit subcell,  x_i ~ Gumbel(-7, 1) for a non-hit one

(normalized here as (x + 3.5) / 3.5) and the number k of hit subcells, CDF-dequantized:
v = F(k - 1) + u (F(k) - F(k - 1)), u ~ U(0, 1), mapped to Phi^-1(v). The energy stage (this package's completion)
sees log(E_dep / E_inc) and, per hit cell, log((E_i - t + 1e-3 t) / (E_dep - n t)), each standardized by the
training statistics. The loss per shower is the sum over the stages of the negative log-likelihoods (the flows'
densities of these inputs, a stage summing over its cluster cells); the reported loss is its batch mean.

The flows' densities and the conditioning networks (position embeddings, set summaries) are the model's; the hit
patterns, every dequantized input, the per-shower sums and the loss composition are computed here, with the
uniform draws the model makes (the stateless seed of its draw counter, split into the stages' seeds, drawn again).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from replica_equivalence import TINY_PYRAMID

from caloml.models.pyramid import STAGES, CalorimeterPyramid, PyramidStatistics

THRESHOLD_GEV = 1e-3
NON_HIT_GUMBEL_LOCATION = -7.0  # the paper's
GUMBEL_CENTER, GUMBEL_SCALE = -3.5, 3.5  # the normalization of the Gumbel values
EXCESS_OFFSET = 1e-3  # the energy stage's offset, in units of the threshold
UNIFORM_EPS = 1e-6
GRID = (6, 4, 3)  # layers, angular cells, radial cells
SEED = 5
BATCH = 4


def _showers(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    energy = np.exp(rng.uniform(0.0, np.log(100.0), n)).astype(np.float32)
    hits = rng.random((n, *GRID)) < 0.25
    hits[:, 1, 0, 0] = True  # no shower is empty
    cells = np.where(hits, np.exp(rng.normal(-4.0, 1.5, hits.shape)) + THRESHOLD_GEV, 0.0)
    below = rng.random(hits.shape) < 0.1  # some deposits below the threshold: not hit
    cells = np.where(~hits & below, 0.5 * THRESHOLD_GEV, cells)
    return cells.astype(np.float32), energy


@pytest.fixture(scope="module")
def step() -> dict:
    statistics = PyramidStatistics.from_showers(*_showers(64, 1), THRESHOLD_GEV, (1.0, 100.0))
    model = CalorimeterPyramid(
        statistics,
        **TINY_PYRAMID,
        seed=SEED,
    )
    model.compile(keras.optimizers.SGD(learning_rate=0.0))
    cells, energy = _showers(BATCH, 2)
    expected = _hand_loss(model, statistics, cells.astype(np.float64), energy.astype(np.float64))
    batch = {"showers": tf.constant(cells), "incident_energy": tf.constant(energy)}
    logs = {key: float(value) for key, value in model.train_step(batch).items()}
    return {"logs": logs, "expected": expected}


def _hand_loss(model: CalorimeterPyramid, stats: PyramidStatistics, cells: np.ndarray, energy: np.ndarray) -> dict:
    # the step's seed: (seed + 40000, draw counter after its increment) folded with replica 0, split in 7
    step_seed = tf.random.experimental.stateless_fold_in(tf.constant([SEED + 40_000, 1], tf.int64), 0)
    seeds = tf.unstack(tf.random.experimental.stateless_split(tf.cast(step_seed, tf.int64), 7))
    low, high = stats.incident_energy_range_gev
    e = 2.0 * (np.log(energy) - np.log(low)) / np.log(high / low) - 1.0
    hits = cells >= THRESHOLD_GEV
    hit_lr = hits.any(axis=2)  # (B, L, R)
    hit_l = hit_lr.any(axis=2)  # (B, L)

    def gumbel(target: np.ndarray, seed: tf.Tensor) -> np.ndarray:
        u = tf.random.stateless_uniform(target.shape, seed, minval=UNIFORM_EPS, maxval=1.0 - UNIFORM_EPS)
        g = -np.log(-np.log(u.numpy().astype(np.float64)))
        return (g + np.where(target, 0.0, NON_HIT_GUMBEL_LOCATION) - GUMBEL_CENTER) / GUMBEL_SCALE

    def count(target: np.ndarray, cdf: object, seed: tf.Tensor) -> np.ndarray:
        k = target.sum(axis=-1)
        p = np.asarray(cdf.probabilities, np.float64)  # type: ignore[attr-defined]
        edges = np.concatenate([[0.0], np.cumsum(p)])
        j = k - cdf.k_min  # type: ignore[attr-defined]
        u = tf.random.stateless_uniform(k.shape, seed, dtype=tf.float64).numpy()
        v = np.clip(edges[j] + u * (edges[j + 1] - edges[j]), UNIFORM_EPS, 1.0 - UNIFORM_EPS)
        return tf.math.ndtri(tf.constant(v, tf.float64)).numpy()

    def log_prob(flow: keras.Layer, x: np.ndarray, context: tf.Tensor) -> np.ndarray:
        return flow.log_prob(tf.constant(x, tf.float32), tf.cast(context, tf.float32)).numpy().astype(np.float64)

    def per_shower(values: np.ndarray, shower: np.ndarray) -> np.ndarray:
        return np.bincount(shower, weights=values, minlength=BATCH)

    e_tf = tf.constant(e, tf.float32)
    nll = {}
    x = np.concatenate([gumbel(hit_l, seeds[0]), count(hit_l, stats.layer_counts, seeds[1])[:, None]], axis=-1)
    nll["layers"] = -log_prob(model.layer_flow, x, e_tf[:, None])

    index = np.argwhere(hit_l)
    target = hit_lr[index[:, 0], index[:, 1]]
    x = np.concatenate([gumbel(target, seeds[2]), count(target, stats.radius_counts, seeds[3])[:, None]], axis=-1)
    context = model._radius_context(e_tf, tf.constant(hit_l), tf.constant(index, tf.int64))
    nll["radii"] = -per_shower(log_prob(model.radius_flow, x, context), index[:, 0])

    index = np.argwhere(hit_lr)
    target = hits.transpose(0, 1, 3, 2)[index[:, 0], index[:, 1], index[:, 2]]  # the A angular cells
    x = np.concatenate([gumbel(target, seeds[4]), count(target, stats.angle_counts, seeds[5])[:, None]], axis=-1)
    context = model._angle_context(e_tf, tf.constant(hit_lr), tf.constant(index, tf.int64))
    nll["angles"] = -per_shower(log_prob(model.angle_flow, x, context), index[:, 0])

    flat = np.where(hits, cells, 0.0).reshape(BATCH, -1)
    n_hits = hits.reshape(BATCH, -1).sum(axis=1)
    deposit = flat.sum(axis=1)
    response = (np.log(deposit / energy) - stats.log_response_mean) / stats.log_response_std
    hits_condition = (np.log(n_hits) - stats.log_hits_mean) / stats.log_hits_std
    condition = tf.constant(np.stack([e, hits_condition], axis=-1), tf.float32)
    log_p = model.deposit_flow.log_prob(tf.constant(response, tf.float32), condition).numpy().astype(np.float64)
    index = np.argwhere(hits)
    shower = index[:, 0]
    excess = cells[tuple(index.T)] - THRESHOLD_GEV * (1.0 - EXCESS_OFFSET)
    budget = (deposit - n_hits * THRESHOLD_GEV)[shower]
    weight = (np.log(excess) - np.log(budget) - stats.log_weight_mean) / stats.log_weight_std
    context = model._cell_context(
        e_tf,
        tf.constant(hits),
        tf.constant(index, tf.int64),
        tf.constant(hits_condition, tf.float32),
        tf.constant(response, tf.float32),
    )
    cell_log_p = model.cell_flow.log_prob(tf.constant(weight, tf.float32), context).numpy().astype(np.float64)
    nll["energy"] = -(log_p + per_shower(cell_log_p, shower))
    nll["loss"] = sum(nll[stage] for stage in STAGES)
    return {key: float(np.mean(value)) for key, value in nll.items()}


def test_every_stage_and_the_loss_match_the_hand_computation(step: dict) -> None:
    logs, expected = step["logs"], step["expected"]
    assert set(logs) == {"loss", *STAGES}
    for key, value in expected.items():
        np.testing.assert_allclose(logs[key], value, rtol=2e-4, atol=1e-3, err_msg=key)


def test_every_stage_weighs_in_the_loss(step: dict) -> None:
    # a stage left out of the sum, or counted twice, would move the loss by more than the tolerance
    expected = step["expected"]
    for stage in STAGES:
        assert abs(expected[stage]) > 0.01 * abs(expected["loss"]) + 1e-2, (stage, expected)
