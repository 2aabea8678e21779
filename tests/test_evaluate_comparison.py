"""The evaluation's comparison metrics: bins, separation-power noise floor, binned means, Holm flags, correlations."""

from __future__ import annotations

import numpy as np
import pytest

from caloml.errors import CalomlError
from caloml.evaluate.comparison import (
    angle_edges,
    binned_mean_comparison,
    clipped_histograms,
    energy_edges,
    histogram_edges,
    holm_flags,
    separation_power_noise_floor,
)
from caloml.observables.metrics import separation_power


def test_energy_edges_are_5_gev_wide_and_cover_both_samples() -> None:
    edges = energy_edges(np.array([2.3, 400.0]), np.array([7.0, 499.9]), width_gev=5.0)
    np.testing.assert_allclose(np.diff(edges), 5.0)
    assert edges[0] == 0.0
    assert edges[0] <= 2.3
    assert edges[-1] > 499.9
    assert np.all(np.abs(edges / 5.0 - np.round(edges / 5.0)) < 1e-9)  # aligned to multiples of the width


def test_log_energy_edges_and_bad_binnings() -> None:
    edges = energy_edges(np.array([1.0, 1000.0]), np.array([2.0]), log_bins=12)
    assert len(edges) == 13
    np.testing.assert_allclose(np.diff(np.log10(edges)), 0.25)
    with pytest.raises(CalomlError, match="positive"):
        energy_edges(np.array([1.0, 2.0]), np.array([1.5]), width_gev=-1.0)
    with pytest.raises(ValueError, match="exactly one"):
        energy_edges(np.array([1.0]), np.array([1.0]), width_gev=1.0, log_bins=3)


def test_angle_edges_are_0_1_rad_wide() -> None:
    edges = angle_edges(np.array([1.05, 2.09]), np.array([1.2]), 0.1)
    np.testing.assert_allclose(np.diff(edges), 0.1)
    assert edges[0] <= 1.05
    assert edges[-1] > 2.09


def test_histograms_keep_the_overflow_in_the_end_bins() -> None:
    rng = np.random.default_rng(0)
    gen, ref = rng.normal(size=1000), rng.normal(size=800)
    gen[:5] = 50.0  # far outliers
    gen[5] = np.nan
    edges = histogram_edges(gen, ref, 30)
    counts_gen, counts_ref = clipped_histograms(gen, ref, edges)
    assert counts_gen.sum() == 999  # every finite value is counted
    assert counts_ref.sum() == 800
    assert counts_gen[-1] >= 5
    log_edges = histogram_edges(np.abs(gen[6:]), np.abs(ref), 30, log=True)
    assert np.all(log_edges > 0)
    assert np.allclose(np.diff(np.log(log_edges)), np.log(log_edges[1] / log_edges[0]))


def test_noise_floor_predicts_the_separation_power_of_identical_distributions() -> None:
    rng = np.random.default_rng(1)
    powers, floors = [], []
    for _ in range(200):
        gen, ref = rng.normal(size=1000), rng.normal(size=1500)
        edges = histogram_edges(gen, ref, 30)
        counts_gen, counts_ref = clipped_histograms(gen, ref, edges)
        powers.append(separation_power(counts_gen, counts_ref))
        floors.append(separation_power_noise_floor(counts_gen, counts_ref))
    assert np.mean(powers) == pytest.approx(np.mean(floors), rel=0.1)
    shifted = rng.normal(0.5, 1.0, size=1000)
    edges = histogram_edges(shifted, ref, 30)
    counts_gen, counts_ref = clipped_histograms(shifted, ref, edges)
    assert separation_power(counts_gen, counts_ref) > 3 * separation_power_noise_floor(counts_gen, counts_ref)


def test_binned_means_measure_a_known_scale_and_pulls_are_standard_under_the_null() -> None:
    rng = np.random.default_rng(2)
    energy_gen, energy_ref = rng.uniform(10, 100, 20000), rng.uniform(10, 100, 20000)
    edges = np.arange(10.0, 101.0, 5.0)
    ref = 0.02 * energy_ref * rng.normal(1.0, 0.05, energy_ref.size)
    scaled = 1.05 * 0.02 * energy_gen * rng.normal(1.0, 0.05, energy_gen.size)
    result = binned_mean_comparison(scaled, ref, energy_gen, energy_ref, edges)
    np.testing.assert_allclose(result.relative_error, 0.05, atol=0.02)  # 1100 showers a bin: 0.005 statistical
    assert np.mean(result.relative_error) == pytest.approx(0.05, abs=0.003)
    assert np.all(result.pull > 5)
    same = 0.02 * energy_gen * rng.normal(1.0, 0.05, energy_gen.size)
    null = binned_mean_comparison(same, ref, energy_gen, energy_ref, edges)
    summary = null.summary()
    assert summary["defined_bins"] == len(edges) - 1
    assert 0.3 < summary["pull_chi2_per_bin"] < 2.0
    assert summary["max_abs_relative_error"] < 0.02  # 18 bins of 0.005 statistical error


def test_sparse_bins_are_undefined_not_zero() -> None:
    edges = np.array([0.0, 1.0, 2.0])
    result = binned_mean_comparison(
        np.ones(30), np.ones(30), np.r_[np.full(25, 0.5), np.full(5, 1.5)], np.full(30, 0.5), edges
    )
    assert result.relative_error[0] == 0.0
    assert np.isnan(result.relative_error[1])  # 5 and 0 showers: fewer than min_bin_events


def test_holm_flags() -> None:
    p = np.array([0.001, 0.004, 0.03, 0.5, np.nan])
    np.testing.assert_array_equal(holm_flags(p, 0.01), [True, False, False, False, False])
    np.testing.assert_array_equal(holm_flags(p, 0.05), [True, True, False, False, False])
    assert not holm_flags(np.array([]), 0.01).any()
