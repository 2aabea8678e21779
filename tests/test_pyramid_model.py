"""The Calorimeter Pyramid's pieces: count CDFs, Gumbel top-k, statistics, exact hit placement, energies, training.

The model tests use small random-weight models on synthetic dataset-2-like showers: what they check (no double hit,
energies summing to the deposit, every hit at the threshold, refused energies, the loss falling) holds for any
weights.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from caloml.errors import CalomlError
from caloml.models.pyramid import STAGES, CalorimeterPyramid, PyramidStatistics
from caloml.models.pyramid_quantization import CountCDF, gumbel_dequantize, top_k_mask

THRESHOLD_GEV = 15.15e-6


def synthetic_showers(n: int, seed: int, occupancy: float = 0.03, empty_layers: tuple[int, ...] = ()):
    """(cells (n, 45, 16, 9) GeV, incident energies (n,) GeV): random hits, deeper layers hit more at high energy."""
    rng = np.random.default_rng(seed)
    energy = np.exp(rng.uniform(0.0, np.log(1000.0), n)).astype(np.float32)
    depth = np.exp(-0.5 * ((np.arange(45) - 10 - 2 * np.log(energy)[:, None]) / 8.0) ** 2)  # (n, 45)
    radius = np.exp(-np.arange(9) / 3.0)
    probability = occupancy * 4 * depth[:, :, None, None] * radius[None, None, None, :]
    hits = rng.random((n, 45, 16, 9)) < probability
    hits[:, 12, 0, 0] = True  # every shower has a hit
    hits[:, list(empty_layers)] = False
    cells = np.where(hits, np.exp(rng.normal(-7.0, 2.0, hits.shape)) + THRESHOLD_GEV, 0.0).astype(np.float32)
    return cells, energy


def tiny_model(statistics: PyramidStatistics, **kwargs) -> CalorimeterPyramid:
    options = dict(n_flow_layers=1, hidden_units=16, conditioner_blocks=1, embedding_units=4, summary_units=4)
    options.update(n_energy_layers=1, seed=5)
    model = CalorimeterPyramid(statistics, **{**options, **kwargs})
    model.compile()
    return model


@pytest.fixture(scope="module")
def showers():
    return synthetic_showers(128, seed=1)


@pytest.fixture(scope="module")
def statistics(showers):
    return PyramidStatistics.from_showers(*showers, THRESHOLD_GEV, (1.0, 1000.0))


def test_count_cdf_round_trip_and_unseen_counts():
    cdf = CountCDF.from_counts([3, 3, 4, 9], 1, 9)
    assert len(cdf.probabilities) == 9
    assert min(cdf.probabilities) > 0
    assert cdf.probabilities[2] > cdf.probabilities[0]
    k = np.tile(np.arange(1, 10), 200)
    z = cdf.dequantize(k, tf.constant([1, 2]))
    assert np.all(np.isfinite(z.numpy()))
    np.testing.assert_array_equal(cdf.quantize(z).numpy(), k)
    extremes = cdf.quantize(tf.constant([-np.inf, np.inf, np.nan, -40.0, 40.0])).numpy()
    np.testing.assert_array_equal(extremes, [1, 9, 9, 1, 9])
    assert CountCDF.from_dict(cdf.to_dict()) == cdf
    with pytest.raises(ValueError, match="outside"):
        CountCDF.from_counts([0], 1, 9)


def test_top_k_picks_exactly_k_distinct_entries_even_with_ties():
    values = tf.constant([[0.0, 0.0, 0.0, 0.0], [3.0, 1.0, 2.0, 0.0], [1.0, 1.0, 5.0, 5.0]])
    mask = top_k_mask(values, tf.constant([2, 3, 4])).numpy()
    np.testing.assert_array_equal(mask.sum(axis=1), [2, 3, 4])
    np.testing.assert_array_equal(mask[1], [True, True, True, False])
    np.testing.assert_array_equal(mask[0], [True, True, False, False])  # ties: the first positions


def test_gumbel_dequantization_is_undone_by_top_k():
    rng = np.random.default_rng(0)
    hits = rng.random((2000, 16)) < 0.3
    hits[:, 0] = True
    values = gumbel_dequantize(hits, tf.constant([3, 4]))
    recovered = top_k_mask(values, hits.sum(axis=1)).numpy()
    # a non-hit subcell outranks a hit one with a probability of about 1e-3 per pair
    assert np.mean(np.all(recovered == hits, axis=1)) > 0.97
    assert np.mean(values.numpy()[hits]) > 0.9 > -0.5 > np.mean(values.numpy()[~hits])


def test_statistics_with_a_layer_never_hit_give_finite_likelihoods(statistics):
    cells, energy = synthetic_showers(64, seed=2, empty_layers=(0, 1, 40))
    stats = PyramidStatistics.from_showers(cells, energy, THRESHOLD_GEV, (1.0, 1000.0))
    assert stats.grid_shape == (45, 16, 9)
    assert PyramidStatistics.from_dict(stats.to_dict()) == stats
    model = tiny_model(stats)
    terms = model.negative_log_likelihood({"showers": cells, "incident_energy": energy}, tf.constant([1, 1]))
    for name in (*STAGES, "loss"):
        assert np.all(np.isfinite(terms[name].numpy())), name
    with pytest.raises(CalomlError, match="no shower"):
        PyramidStatistics.from_showers(np.zeros((4, 45, 16, 9)), np.ones(4), THRESHOLD_GEV, (1.0, 10.0))


def test_thousands_of_showers_without_a_double_hit(statistics):
    model = tiny_model(statistics)
    sample = tf.function(model.sample)
    energies = np.exp(np.random.default_rng(3).uniform(0.0, np.log(1000.0), 2000)).astype(np.float32)
    requested, placed, total = [], [], 0
    for k, start in enumerate(range(0, len(energies), 500)):
        chunk = energies[start : start + 500]
        out = sample(tf.constant(chunk), tf.constant([7, k], tf.int64))
        showers = out["showers"].numpy()
        assert showers.shape == (len(chunk), 45, 16, 9)
        flat = showers.reshape(len(chunk), -1)
        requested.append(out["requested_hits"].numpy())
        placed.append(np.count_nonzero(flat, axis=1))
        hit = flat[flat > 0]
        assert hit.min() >= THRESHOLD_GEV * (1 - 1e-6)  # every hit reaches the threshold
        np.testing.assert_array_equal(placed[-1], out["n_hits"].numpy())
        total += len(chunk)
    requested, placed = np.concatenate(requested), np.concatenate(placed)
    assert total == 2000
    assert placed.min() >= 1
    np.testing.assert_array_equal(requested, placed)  # k asked for, k distinct cells filled: no double hit


def test_energies_sum_to_the_sampled_deposit_and_hits_are_kept(statistics, showers):
    model = tiny_model(statistics)
    cells, energy = showers
    hits = cells[:20] >= THRESHOLD_GEV
    out = model.sample_energies(energy[:20], hits, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(out > 0, hits)  # the hit pattern is kept exactly
    deposit = out.reshape(20, -1).astype(np.float64).sum(axis=1)
    # the deposit the energy stage drew with the same seed: the cells are rescaled to sum to it exactly
    deposit_seed, _ = tf.unstack(tf.random.experimental.stateless_split(tf.constant([1, 2], tf.int64), 2))
    n_hits = hits.reshape(20, -1).sum(axis=1)
    condition = tf.stack([model._energy_condition(energy[:20]), model._hits_condition(n_hits)], axis=-1)
    response = model.deposit_flow.sample(condition, deposit_seed).numpy()
    expected = energy[:20] * np.exp(response * statistics.log_response_std + statistics.log_response_mean)
    np.testing.assert_allclose(deposit, np.maximum(expected, n_hits * THRESHOLD_GEV), rtol=1e-4)


def test_energies_outside_the_trained_range_are_refused(statistics):
    model = tiny_model(statistics)
    for bad in ([0.5], [1200.0], [np.nan], [np.inf]):
        with pytest.raises(CalomlError, match="outside the range"):
            model.sample(np.array(bad, np.float32), tf.constant([1, 1]))
    traced = tf.function(model.sample)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside the trained range"):
        traced(tf.constant([2000.0]), tf.constant([1, 1], tf.int64))


def test_training_lowers_the_loss_of_the_trained_stages_only(statistics, showers, tmp_path):
    cells, energy = showers
    model = tiny_model(statistics, train_stages=("layers", "radii"))
    batch = {"showers": tf.constant(cells[:64]), "incident_energy": tf.constant(energy[:64])}
    seed = tf.constant([11, 12])
    before = model.negative_log_likelihood(batch, seed)
    frozen = [w.numpy().copy() for w in model.angle_flow.weights + model.cell_flow.weights]
    data = tf.data.Dataset.from_tensor_slices({"showers": cells, "incident_energy": energy}).batch(32).repeat()
    model.fit(data, steps_per_epoch=30, epochs=1, verbose=0, shuffle=False)
    after = model.negative_log_likelihood(batch, seed)
    assert float(tf.reduce_mean(after["loss"])) < float(tf.reduce_mean(before["loss"]))
    assert float(tf.reduce_mean(after["layers"])) < float(tf.reduce_mean(before["layers"]))
    assert float(tf.reduce_mean(after["angles"])) == 0.0  # not a trained stage: not evaluated
    for old, new in zip(frozen, model.angle_flow.weights + model.cell_flow.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    path = tmp_path / "pyramid.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert loaded.get_config() == model.get_config()
    a = model.sample(energy[:8], tf.constant([4, 4]))["showers"].numpy()
    b = loaded.sample(energy[:8], tf.constant([4, 4]))["showers"].numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_bench_times_every_stage_and_finds_no_double_hit(statistics):
    from caloml.bench.pyramid import benchmark_pyramid

    figures = benchmark_pyramid(model=tiny_model(statistics), batches=(1, 4), repeats=1)
    for batch in (1, 4):
        assert figures[f"pyramid_showers_per_s_b{batch}"] > 0
        for stage in STAGES:
            assert figures[f"pyramid_{stage}_showers_per_s_b{batch}"] > 0
        assert figures[f"pyramid_double_hits_b{batch}"] == 0
        assert figures[f"pyramid_mean_hits_b{batch}"] >= 1
