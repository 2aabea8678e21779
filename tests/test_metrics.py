"""Comparison metrics: separation power, common-edge histograms, binned relative errors, KS."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from caloml.errors import DataError
from caloml.observables import metrics


def test_separation_power_limits_and_a_hand_value() -> None:
    h = np.array([1.0, 4.0, 0.0, 5.0])
    assert metrics.separation_power(h, h) == 0.0
    assert metrics.separation_power(h, 7 * h) == pytest.approx(0.0, abs=1e-15)  # shapes, not counts
    assert metrics.separation_power([1, 2, 0, 0], [0, 0, 3, 1]) == pytest.approx(1.0)
    # p = (1, 0), q = (1/2, 1/2): 1/2 ((1/2)^2 / (3/2) + (1/2)^2 / (1/2)) = 1/3
    assert metrics.separation_power([2, 0], [1, 1]) == pytest.approx(1 / 3)
    assert metrics.separation_power([0, 0], [0, 0]) == 0.0
    with pytest.raises(DataError, match="shapes"):
        metrics.separation_power([1, 2], [1, 2, 3])


def test_separation_power_grows_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=20000)
    powers = []
    for shift in (0.1, 0.5, 2.0):
        h1, h2, _ = metrics.histogram_pair(reference, rng.normal(shift, size=20000), bins=40)
        powers.append(metrics.separation_power(h1, h2))
    assert powers[0] < powers[1] < powers[2] < 1.0


def test_histogram_pair_uses_common_edges() -> None:
    a = np.array([0.0, 1.0, 2.0, np.nan])
    b = np.array([3.0, 4.0, np.inf])
    counts_a, counts_b, edges = metrics.histogram_pair(a, b, bins=4)
    np.testing.assert_allclose(edges, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(counts_a, [1, 1, 1, 0])
    np.testing.assert_array_equal(counts_b, [0, 0, 0, 2])


def test_histogram_pair_log_and_explicit_edges() -> None:
    counts_a, counts_b, edges = metrics.histogram_pair([0.0, 1e-3, 1e-2], [1e-1, 1.0], bins=3, log=True)
    np.testing.assert_allclose(edges, [1e-3, 1e-2, 1e-1, 1.0])
    assert counts_a.sum() == 2  # the 0 is outside logarithmic bins
    assert counts_b.sum() == 2
    _, _, given = metrics.histogram_pair([1.0], [2.0], bins=np.array([0.0, 5.0, 10.0]))
    np.testing.assert_array_equal(given, [0.0, 5.0, 10.0])
    _, _, degenerate = metrics.histogram_pair([2.0, 2.0], [2.0], bins=2)
    np.testing.assert_allclose(degenerate, [1.5, 2.0, 2.5])


def test_relative_mean_error_per_bin() -> None:
    edges = np.array([0.0, 10.0, 20.0, 30.0])
    gen, gen_energy = np.array([1.0, 3.0, 5.0]), np.array([5.0, 5.0, 15.0])  # bin means 2, 5, empty
    ref, ref_energy = np.array([4.0, 4.0, 9.0]), np.array([1.0, 2.0, 25.0])  # bin means 4, empty, 9
    errors = metrics.relative_mean_error_per_bin(gen, ref, gen_energy, ref_energy, edges)
    np.testing.assert_allclose(errors, [-0.5, np.nan, np.nan])
    means, counts = metrics.binned_mean(gen, gen_energy, edges)
    np.testing.assert_allclose(means, [2.0, 5.0, np.nan])
    np.testing.assert_array_equal(counts, [2, 1, 0])


def test_ks_statistic() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=500), rng.normal(0.3, size=400)
    assert metrics.ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert metrics.ks_statistic(a, a) == 0.0
    assert metrics.ks_statistic([0.0, 1.0], [5.0, 6.0]) == 1.0
    assert np.isnan(metrics.ks_statistic([], [1.0]))


def test_histogram_per_event() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(size=(5, 3, 7))
    edges = np.linspace(-1.0, 1.0, 6)
    values[0, 0, 0] = 1.0  # on the last edge: counted in the last bin
    counts = metrics.histogram_per_event(values, edges, chunk_size=40)  # several blocks
    expected = np.stack([np.histogram(v, bins=edges)[0] for v in values])
    np.testing.assert_array_equal(counts, expected)
    with pytest.raises(DataError, match="increasing"):
        metrics.histogram_per_event(values, np.array([1.0, 0.0]))
