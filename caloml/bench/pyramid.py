"""Calorimeter Pyramid sampling benchmark: showers per second per stage at batch 1, 100 and 1000.

The four stages of :class:`caloml.models.pyramid.CalorimeterPyramid` (``layers``, ``radii``, ``angles``,
``energy``) are traced as separate ``tf.function``\\ s and timed one after the other on the same batch (incident
energies log-uniform in the model's trained range). For each batch size: showers per second of the whole chain,
wall-clock and process CPU milliseconds per shower, showers per second of each stage alone, and the double hits
found (requested hits minus non-empty cells: 0 by construction). Each figure is the best of ``repeats`` timed calls
after one untimed warm-up call (tracing); a batch size predicted to take too long is skipped with a note. Without a
trained model it measures a model of the task's default sizes with random weights and :func:`synthetic_statistics`
(the cost depends on the number of hits, about 1000 per shower there as in dataset 2). See ``docs/pyramid.md``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from caloml.bench.reported_figures import ReportedFigures, sweep_batches
from caloml.generate.trained_model import load_trained_model
from caloml.models.pyramid import STAGES, CalorimeterPyramid, PyramidStatistics

__all__ = ["benchmark_pyramid", "synthetic_statistics"]


def synthetic_statistics(seed: int = 1) -> PyramidStatistics:
    """Statistics of 64 random dataset-2-like showers (about 1000 hits each, 1-1000 GeV): for speed
    measurements of an untrained model only."""
    rng = np.random.default_rng(seed)
    n = 64
    energy = np.exp(rng.uniform(0.0, np.log(1000.0), n))
    cells = np.where(rng.random((n, 45, 16, 9)) < 0.15, rng.exponential(0.01, (n, 45, 16, 9)), 0.0)
    cells *= (energy / cells.reshape(n, -1).sum(axis=1))[:, None, None, None]
    return PyramidStatistics.from_showers(cells.astype(np.float32), energy, 15.15e-6, (1.0, 1000.0))


def _load(model_path: str | Path | None, seed: int) -> tuple[Any, str]:
    if model_path is None:
        model = CalorimeterPyramid(synthetic_statistics(seed), seed=seed)
        return model, "CalorimeterPyramid, default sizes, random weights, synthetic statistics"
    return load_trained_model(model_path, CalorimeterPyramid).model, str(model_path)


def benchmark_pyramid(
    model_path: str | Path | None = None,
    batches: Sequence[int] = (1, 100, 1000),
    repeats: int = 2,
    seed: int = 1,
    report: Callable[[str, float | str], None] | None = None,
    model: Any = None,
    max_call_seconds: float = 300.0,
) -> dict[str, float | str]:
    """Measure shower sampling stage by stage; figures ``name`` -> value (unit in the name's suffix) or a note.

    ``model_path``: a run directory or ``.keras`` file of a CalorimeterPyramid; ``model``: a model object instead.
    ``report(name, value)`` is called for each figure as soon as it is measured. A batch size whose one call is
    predicted (from the smaller one) to take more than ``max_call_seconds`` is skipped with a note
    (:func:`caloml.bench.reported_figures.sweep_batches`).
    """
    import tensorflow as tf

    figures = ReportedFigures(report)
    if model is None:
        model, description = _load(model_path, seed)
    else:
        description = type(model).__name__
    figures["pyramid_model"] = description
    figures["pyramid_parameters"] = float(model.count_params())
    figures["pyramid_load_average_1min_at_start"] = os.getloadavg()[0]
    stage_functions = {
        "layers": tf.function(lambda energy, _, seed: model.sample_layers(energy, seed)),
        "radii": tf.function(model.sample_radii),
        "angles": tf.function(model.sample_angles_and_counts),
        "energy": tf.function(model.sample_energies),
    }

    def chain(energy: tf.Tensor, call_seed: int, timings: dict[str, float]) -> tuple[int, np.ndarray]:
        """Run the stages one by one; returns (hits the angle stage asked for, showers (B, L, A, R) GeV)."""
        value: Any = None
        requested = 0
        for index, stage in enumerate(STAGES):
            start = time.perf_counter()
            value = stage_functions[stage](energy, value, tf.constant([call_seed, index], tf.int64))
            if stage == "angles":
                value, counts = value
                requested = int(counts.numpy().sum())
            _ = value.numpy()  # synchronise
            timings[stage] = time.perf_counter() - start
        return requested, value.numpy()

    low, high = (float(v) for v in model.statistics.incident_energy_range_gev)
    rng = np.random.default_rng(seed)

    def measure(batch: int, timed: int, warm_up: bool) -> float:
        energy = tf.constant(np.exp(rng.uniform(np.log(low), np.log(high), batch)).astype(np.float32))
        if warm_up:
            chain(energy, seed, {})  # tracing
        best: tuple[float, float, dict[str, float], int, np.ndarray] | None = None
        for repeat in range(max(1, timed)):
            timings: dict[str, float] = {}
            wall, cpu = time.perf_counter(), time.process_time()
            requested, showers = chain(energy, seed + repeat, timings)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if best is None or wall < best[0]:
                best = (wall, cpu, timings, requested, showers)
        assert best is not None
        wall, cpu, timings, requested, showers = best
        figures[f"pyramid_showers_per_s_b{batch}"] = batch / wall
        figures[f"pyramid_ms_per_shower_b{batch}"] = 1e3 * wall / batch
        figures[f"pyramid_cpu_ms_per_shower_b{batch}"] = 1e3 * cpu / batch
        for stage in STAGES:
            figures[f"pyramid_{stage}_showers_per_s_b{batch}"] = batch / max(timings[stage], 1e-12)
        figures[f"pyramid_mean_hits_b{batch}"] = float(np.count_nonzero(showers)) / batch
        figures[f"pyramid_double_hits_b{batch}"] = float(requested - np.count_nonzero(showers))
        return wall

    sweep_batches(
        figures,
        batches,
        measure,
        lambda batch: f"pyramid_showers_per_s_b{batch}",
        repeats=repeats,
        max_call_seconds=max_call_seconds,
    )
    figures["pyramid_load_average_1min_at_end"] = os.getloadavg()[0]
    return figures
