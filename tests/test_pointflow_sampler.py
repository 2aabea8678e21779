"""The CaloPointFlow Monte-Carlo cell sampler: distinct cells, hit counts, energy conservation, the seed's selection
probabilities (mean density per cell, without replacement) and energy choice, seeds; shower generation from a model
and the sampling benchmark."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from caloml.bench.__main__ import _unit, main, print_figures
from caloml.bench.pointflow import benchmark_pointflow
from caloml.errors import CalomlError
from caloml.models.pointflow_sampler import (
    PointFlowShowerSampler,
    batch_seeds,
    generate_showers,
    sample_cells,
    sample_cells_detailed,
)

GRID = (5, 4, 3)


def reference_cells(points: np.ndarray, log_density: np.ndarray, grid_shape: tuple[int, ...]) -> list[dict]:
    """NumPy reference of steps 1-2 for each shower: {cell index tuple: (mean density, sampled energies GeV)} of
    the cells that received a valid point (inside the grid, finite density and energy)."""
    showers = []
    for event_points, event_density in zip(points, log_density, strict=True):
        cells: dict[tuple[int, ...], list[tuple[float, float]]] = {}
        for point, density in zip(event_points, event_density, strict=True):
            index = tuple(int(c) for c in np.floor(point[:3])) if np.all(np.isfinite(point[:3])) else None
            if index is None or not np.isfinite(density) or not np.isfinite(point[3]):
                continue
            if all(0 <= c < size for c, size in zip(index, grid_shape, strict=True)):
                cells.setdefault(index, []).append((math.exp(float(density)), math.exp(float(point[3]))))
        showers.append(
            {cell: (float(np.mean([d for d, _ in hits])), [e for _, e in hits]) for cell, hits in cells.items()}
        )
    return showers


def random_points(batch: int, n_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points over the first 4 x-layers of GRID plus some invalid ones: outside the grid, NaN density, NaN energy,
    and x-layer 4 reached only by a NaN-density point (it must never be hit)."""
    rng = np.random.default_rng(seed)
    points = np.concatenate(
        [rng.uniform(0, 1, (batch, n_points, 3)) * [4, 4, 3], rng.normal(-2, 1, (batch, n_points, 1))], axis=-1
    ).astype(np.float32)
    log_density = rng.normal(0, 1, (batch, n_points)).astype(np.float32)
    points[:, 0, :3] = [-0.5, 1.0, 1.0]  # outside
    points[:, 1, :3] = [1.0, 4.2, 1.0]  # outside
    points[:, 2, :3] = [4.5, 1.5, 1.5]  # x-layer 4 ...
    log_density[:, 2] = np.nan  # ... only through an invalid point
    points[:, 3, 3] = np.nan  # NaN energy
    return points, log_density


def test_exact_distinct_hits_energy_conserved_and_sampled_energies() -> None:
    points, log_density = random_points(batch=6, n_points=120, seed=3)
    n_hits = np.array([1, 4, 10, 25, 40, 60], np.int32)
    total = np.array([1.0, 10.0, 3.5, 100.0, 0.2, 50.0], np.float32)
    sample = sample_cells_detailed(points, log_density, n_hits, total, GRID, seed=[1, 2])
    showers, unscaled = sample.showers.numpy(), sample.unscaled.numpy()
    assert showers.shape == (6, *GRID)
    assert showers.dtype == np.float32
    reference = reference_cells(points, log_density, GRID)
    for event in range(6):
        occupied = reference[event]
        hit = {tuple(int(i) for i in cell) for cell in np.argwhere(showers[event] > 0)}
        assert len(hit) == min(n_hits[event], len(occupied))
        assert hit <= set(occupied)  # only cells a valid point fell into
        assert int(sample.n_hits[event]) == len(hit)
        assert int(sample.n_occupied[event]) == len(occupied)
        assert np.all(showers[event] >= 0)
        assert showers[event].sum(dtype=np.float64) == pytest.approx(total[event], rel=1e-5)
        for cell in hit:  # before the rescaling a cell holds one of the energies sampled in it
            assert any(unscaled[event][cell] == pytest.approx(e, rel=1e-6) for e in occupied[cell][1])
        assert np.all(unscaled[event][showers[event] == 0] == 0)
    assert np.all(showers[:, 4] == 0)  # the x-layer reached only by a NaN-density point


def test_fewer_occupied_cells_than_hits_takes_them_all() -> None:
    points = np.array([[[0.5, 0.5, 0.5, 0.0], [0.7, 0.1, 0.9, 1.0], [2.5, 1.5, 0.5, -1.0], [4.1, 3.9, 2.2, 0.5]]])
    log_density = np.zeros((1, 4), np.float32)
    sample = sample_cells_detailed(points, log_density, [100], [7.0], GRID, seed=[5, 6])
    showers = sample.showers.numpy()[0]
    assert {tuple(int(i) for i in c) for c in np.argwhere(showers > 0)} == {(0, 0, 0), (2, 1, 0), (4, 3, 2)}
    assert int(sample.n_hits[0]) == 3
    assert int(sample.n_occupied[0]) == 3
    assert showers.sum() == pytest.approx(7.0, rel=1e-6)
    # cell (0,0,0) received the energies e^0 and e^1: it keeps one of them, the others their only one
    assert np.isclose(sample.unscaled.numpy()[0][0, 0, 0], [1.0, math.e]).any()
    # a shower without any valid point is empty
    empty = sample_cells_detailed(np.full((1, 3, 4), -1.0), np.zeros((1, 3)), [5], [1.0], GRID, seed=[0, 0])
    assert int(empty.n_hits[0]) == 0
    assert np.all(empty.showers.numpy() == 0)


def three_cells(batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Identical showers of three occupied cells with mean densities 1, 2 and 5 (count x mean 3, 2 and 10; counts
    3, 1 and 2; geometric means 1, 2 and 3): cell (2,0,0) has two points, energies 2 and 3 GeV, densities 1 and 9."""
    coordinates = [(0.2, 0.5, 0.5), (0.5, 0.5, 0.5), (0.8, 0.5, 0.5), (1.5, 0.5, 0.5), (2.3, 0.5, 0.5), (2.7, 0.5, 0.5)]
    energies = [1.0, 1.0, 1.0, 1.0, 2.0, 3.0]
    densities = [1.0, 1.0, 1.0, 2.0, 1.0, 9.0]
    points = np.array([[*c, math.log(e)] for c, e in zip(coordinates, energies, strict=True)], np.float32)
    log_density = np.log(np.array(densities, np.float32))
    return np.tile(points, (batch, 1, 1)), np.tile(log_density, (batch, 1))


def test_selection_follows_the_mean_density_without_replacement() -> None:
    batch = 20_000
    points, log_density = three_cells(batch)
    weights = np.array([1.0, 2.0, 5.0])
    # one hit: the cell frequencies follow the mean densities
    sample = sample_cells_detailed(points, log_density, np.ones(batch), np.ones(batch), GRID, seed=[11, 12])
    chosen = np.argmax(sample.showers.numpy()[:, :3, 0, 0], axis=1)
    counts = np.bincount(chosen, minlength=3)
    assert stats.chisquare(counts, batch * weights / weights.sum()).pvalue > 1e-3
    # two hits: the cell left out follows successive draws without replacement (Plackett-Luce)
    sample = sample_cells_detailed(points, log_density, np.full(batch, 2), np.ones(batch), GRID, seed=[13, 14])
    hit = sample.showers.numpy()[:, :3, 0, 0] > 0
    assert np.all(hit.sum(axis=1) == 2)
    total = weights.sum()
    expected = []
    for left_out in range(3):
        i, j = (k for k in range(3) if k != left_out)
        expected.append(weights[i] / total * weights[j] / (total - weights[i]))
        expected[-1] += weights[j] / total * weights[i] / (total - weights[j])
    counts = np.bincount(np.argmin(hit, axis=1), minlength=3)
    assert stats.chisquare(counts, batch * np.array(expected)).pvalue > 1e-3
    # the energy of cell (2,0,0) is 3 GeV (density 9) nine times in ten, 2 GeV (density 1) otherwise
    energies = sample.unscaled.numpy()[:, 2, 0, 0]
    energies = energies[energies > 0]
    assert set(np.round(energies, 5)) == {2.0, 3.0}
    assert np.mean(np.isclose(energies, 3.0)) == pytest.approx(0.9, abs=0.01)


def test_seeds_are_reproducible_and_graph_tracing_works() -> None:
    points, log_density = random_points(batch=3, n_points=80, seed=7)
    args = (points, log_density, [5, 9, 30], [1.0, 2.0, 3.0], GRID)
    first = sample_cells(*args, seed=[3, 4]).numpy()
    assert np.array_equal(first, sample_cells(*args, seed=[3, 4]).numpy())
    assert not np.array_equal(first, sample_cells(*args, seed=[3, 5]).numpy())
    signature = [
        tf.TensorSpec((None, None, 4), tf.float32),
        tf.TensorSpec((None, None), tf.float32),
        tf.TensorSpec((None,), tf.int32),
        tf.TensorSpec((None,), tf.float32),
        tf.TensorSpec((2,), tf.int32),
    ]
    traced = tf.function(lambda p, d, n, e, s: sample_cells(p, d, n, e, GRID, s), input_signature=signature)
    concrete = traced.get_concrete_function()
    assert concrete.structured_outputs.shape.as_list() == [None, *GRID]
    graph = traced(points, log_density, np.array([5, 9, 30], np.int32), np.array([1, 2, 3], np.float32), [3, 4])
    assert np.array_equal(graph.numpy(), first)


def test_huge_log_energies_are_rescaled_without_overflow() -> None:
    points, log_density = random_points(batch=2, n_points=50, seed=9)
    points[..., 3] = np.where(np.isnan(points[..., 3]), np.nan, 200.0 + points[..., 3])  # exp(200) overflows
    showers = sample_cells(points, log_density, [10, 20], [5.0, 6.0], GRID, seed=[1, 1]).numpy()
    assert np.all(np.isfinite(showers))
    assert showers.sum(axis=(1, 2, 3)) == pytest.approx([5.0, 6.0], rel=1e-5)
    assert [np.count_nonzero(s) for s in showers] == [10, 20]
    # a cell whose share of the total underflows float32 is still hit (with the smallest positive energy)
    points = np.array([[[0.5, 0.5, 0.5, 0.0], [1.5, 0.5, 0.5, -300.0]]], np.float32)
    showers = sample_cells(points, np.zeros((1, 2)), [2], [1.0], GRID, seed=[1, 1]).numpy()
    assert np.count_nonzero(showers) == 2
    assert showers.sum() == pytest.approx(1.0, rel=1e-6)


class FakePointModel:
    """A model with known distributions: n_hits = ``hits``, total energy = half the incident energy, points
    uniform over the grid with log E ~ N(-2, 1) and their exact log density."""

    grid_shape = GRID
    normalization: dict[str, Any] = {"incident_energy_range_gev": [1.0, 100.0]}  # noqa: RUF012

    def __init__(self, hits: int = 6) -> None:
        self.hits = hits

    def sample_latent(self, incident_energy_gev: Any, seed: Any) -> dict[str, Any]:
        energy = tf.convert_to_tensor(incident_energy_gev, tf.float32)
        noise = tf.random.stateless_normal(tf.shape(energy), seed)
        return {
            "z": tf.stack([tf.math.log(energy), noise], axis=1),
            "n_hits": tf.fill(tf.shape(energy), self.hits),
            "total_energy": 0.5 * energy,
        }

    def sample_points(self, z: Any, n_points: int, seed: Any) -> tuple[Any, Any]:
        batch = tf.shape(z)[0]
        position_seed, energy_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        position = tf.random.stateless_uniform([batch, n_points, 3], position_seed) * tf.constant(GRID, tf.float32)
        noise = tf.random.stateless_normal([batch, n_points], energy_seed)
        points = tf.concat([position, (noise - 2.0)[..., None]], axis=-1)
        log_density = -math.log(math.prod(GRID)) - 0.5 * noise**2 - 0.5 * math.log(2 * math.pi)
        return points, log_density


def test_generate_showers_from_a_model() -> None:
    model = FakePointModel(hits=6)
    energies = np.array([10.0, 20.0, 30.0, 40.0, 50.0], np.float32)
    timings: dict[str, float] = {}
    showers = generate_showers(model, energies, n_points=300, batch_size=2, seed=4, timings=timings)
    assert showers.shape == (5, *GRID)
    assert showers.dtype == np.float32
    assert [np.count_nonzero(s) for s in showers] == [6] * 5
    assert showers.sum(axis=(1, 2, 3)) == pytest.approx(0.5 * energies, rel=1e-5)
    assert set(timings) == {"latent", "points", "cells"}
    assert all(seconds > 0 for seconds in timings.values())
    sampler = PointFlowShowerSampler(model, n_points=300)
    again = sampler.generate(energies, batch_size=2, seed=4)
    assert np.array_equal(again.showers, showers)
    assert np.array_equal(again.n_hits, again.n_hits_requested)
    assert again.total_energy_gev == pytest.approx(0.5 * energies)
    assert not np.array_equal(sampler.generate(energies, batch_size=2, seed=5).showers, showers)
    # too few points for the hits asked: all occupied cells, and the shortfall is reported
    few = PointFlowShowerSampler(FakePointModel(hits=50), n_points=20).generate(energies[:2], seed=1)
    assert np.all(few.n_hits <= 20)
    assert np.all(few.n_hits < few.n_hits_requested)
    assert [np.count_nonzero(s) for s in few.showers] == list(few.n_hits)
    assert batch_seeds(4, 0).shape == (3, 2)
    assert not np.array_equal(batch_seeds(4, 0), batch_seeds(4, 1))


def test_generate_showers_refuses_bad_incident_energies() -> None:
    model = FakePointModel()
    with pytest.raises(CalomlError, match=r"500 GeV at index 1 is outside the range .* trained on, \[1, 100\] GeV"):
        generate_showers(model, np.array([10.0, 500.0]), n_points=10, seed=1)
    with pytest.raises(CalomlError, match="finite and positive"):
        generate_showers(model, np.array([10.0, np.nan]), n_points=10, seed=1)
    with pytest.raises(CalomlError, match="non-empty 1-d"):
        generate_showers(model, np.array([]), n_points=10, seed=1)


def test_benchmark_figures_and_skips(capsys: pytest.CaptureFixture[str]) -> None:
    figures = benchmark_pointflow(
        model=FakePointModel(), batches=(3, 10_000_000), n_points=100, repeats=1, max_call_seconds=5.0
    )
    assert 0 < figures["pointflow_showers_per_s_b3"] < math.inf
    assert 0 < figures["pointflow_cpu_ms_per_shower_b3"] < math.inf
    assert figures["pointflow_ms_per_shower_b3"] == pytest.approx(1e3 / figures["pointflow_showers_per_s_b3"])
    shares = [figures[f"pointflow_share_{stage}_b3"] for stage in ("latent", "points", "cells")]
    assert all(0 < share < 1 for share in shares)
    assert sum(shares) == pytest.approx(1.0)
    assert figures["pointflow_mean_hits_b3"] == 6
    assert figures["pointflow_hit_shortfall_fraction_b3"] == 0
    assert "skipped (one call predicted" in str(figures["pointflow_showers_per_s_b10000000"])
    assert figures["pointflow_paper_ms_per_shower_cpu"] == 160
    print_figures(figures)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("pointflow_showers_per_s_b3: ") and line.endswith(" showers/s") for line in lines)
    assert _unit("pointflow_cpu_ms_per_shower_b1") == "ms"
    assert _unit("pointflow_share_cells_b1") == ""
    with pytest.raises(CalomlError, match="no such model file"):
        main(["pointflow", "--model", "/nonexistent/model.keras", "--n-points", "10", "--batches", "1"])


def test_generate_showers_with_a_tiny_untrained_pointflow_vae() -> None:
    from caloml.bench.pointflow import synthetic_normalization
    from caloml.models.pointflow import PointFlowVAE

    normalization = synthetic_normalization("calochallenge-2")
    normalization.update(grid_shape=list(GRID), point_mean=[2.5, 2.0, 1.5, -3.0], log_n_hits_mean=math.log(8.0))
    model = PointFlowVAE(
        normalization,
        latent_dim=2,
        n_latent_layers=1,
        n_point_layers=1,
        hidden_units=8,
        conditioner_blocks=1,
        encoder_units=(8, 8),
        seed=3,
    )
    energies = np.array([2.0, 50.0, 900.0], np.float32)
    result = PointFlowShowerSampler(model, n_points=400).generate(energies, batch_size=2, seed=7)
    assert result.showers.shape == (3, *GRID)
    assert np.all(result.showers >= 0)
    assert [np.count_nonzero(s) for s in result.showers] == list(result.n_hits)
    assert np.all((result.n_hits >= 1) & (result.n_hits <= result.n_hits_requested))
    assert np.all(result.total_energy_gev > 0)
    assert result.showers.sum(axis=(1, 2, 3), dtype=np.float64) == pytest.approx(result.total_energy_gev, rel=1e-5)
    with pytest.raises(CalomlError, match="outside the range"):
        generate_showers(model, np.array([5000.0]), n_points=10, seed=1)
