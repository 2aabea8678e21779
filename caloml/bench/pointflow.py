"""CaloPointFlow sampling benchmark: showers per second on this machine and where the time goes.

For each batch size the benchmark times whole batches of :class:`caloml.models.pointflow_sampler.PointFlowShowerSampler`
(stages ``latent``, ``points``, ``cells``, each synchronised) and reports showers per second, wall-clock and CPU
milliseconds per shower and each stage's share of the time, next to the published CaloPointFlow figures
("CaloPointFlow: Generating Calorimeter Showers as Point Clouds", arXiv:2211.15380). Without a trained model it
measures a default-size :class:`caloml.models.pointflow.PointFlowVAE` with random weights and a synthetic
normalization (:func:`synthetic_normalization`). See ``docs/pointflow.md``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from caloml.bench.reported_figures import SKIP_WARM_UP_SECONDS, ReportedFigures, sweep_batches
from caloml.generate.trained_model import load_trained_model
from caloml.geometry import POINT_CLOUD_GRIDS
from caloml.models.pointflow import PointFlowVAE
from caloml.models.pointflow_sampler import STAGES, PointFlowShowerSampler, trained_incident_range

__all__ = ["PAPER_MS_PER_SHOWER", "SKIP_WARM_UP_SECONDS", "benchmark_pointflow", "synthetic_normalization"]

#: Published CaloPointFlow sampling times (arXiv:2211.15380): ms per shower on a CPU and on a GPU at batch 100.
PAPER_MS_PER_SHOWER = {"cpu": 160.0, "gpu_b100": 3.0}


def synthetic_normalization(geometry: str = "calochallenge-2") -> dict[str, Any]:
    """A plausible :class:`~caloml.models.pointflow.PointCloudNormalization` dict for ``geometry`` without data.

    Points roughly spread over the grid, cell energies around 1 MeV (log GeV mean -7, std 2), a few hundred hits,
    incident energies in the training task's default range (:data:`caloml.geometry.POINT_CLOUD_GRIDS`: 1 GeV - 1 TeV
    for calochallenge-2, 2 - 500 GeV for lcd-gen), total energy about half the incident energy. For speed
    measurements of an untrained model only.
    """
    if geometry not in POINT_CLOUD_GRIDS:
        raise ValueError(f"unknown geometry {geometry!r}; choose calochallenge-2 or lcd-gen")
    grid, energy_range = POINT_CLOUD_GRIDS[geometry].grid_shape, POINT_CLOUD_GRIDS[geometry].energy_range_gev
    hits = 600.0 if geometry == "calochallenge-2" else 1000.0
    log_low, log_high = math.log(energy_range[0]), math.log(energy_range[1])
    log_incident_mean, log_incident_std = (log_low + log_high) / 2, (log_high - log_low) / math.sqrt(12.0)
    return {
        "grid_shape": list(grid),
        "point_mean": [size / 2 for size in grid] + [-7.0],
        "point_std": [size / math.sqrt(12.0) for size in grid] + [2.0],
        "log_n_hits_mean": math.log(hits),
        "log_n_hits_std": 0.5,
        "log_total_energy_mean": log_incident_mean + math.log(0.5),
        "log_total_energy_std": log_incident_std,
        "incident_energy_range_gev": list(energy_range),
        "log_incident_mean": log_incident_mean,
        "log_incident_std": log_incident_std,
    }


def _trained_range(model: Any) -> tuple[float, float]:
    return trained_incident_range(model) or (1.0, 1000.0)


def _load(model_path: str | Path | None, seed: int) -> tuple[Any, str]:
    if model_path is None:
        model = PointFlowVAE(normalization=synthetic_normalization("calochallenge-2"), seed=seed)
        return model, "PointFlowVAE, default sizes, random weights, synthetic calochallenge-2 normalization"
    return load_trained_model(model_path, PointFlowVAE).model, str(model_path)


def benchmark_pointflow(
    model_path: str | Path | None = None,
    batches: Sequence[int] = (1, 100, 1000),
    n_points: int = 10_000,
    repeats: int = 2,
    seed: int = 1,
    max_call_seconds: float = 300.0,
    report: Callable[[str, float | str], None] | None = None,
    model: Any = None,
) -> dict[str, float | str]:
    """Measure shower sampling; figures keyed ``name`` -> value (unit in the name's suffix) or a note (str).

    ``model_path``: a run directory or ``.keras`` file of a PointFlowVAE; ``model``: a model object to use instead
    (anything with ``sample_latent``, ``sample_points`` and ``grid_shape``); neither: see the module docstring.
    ``batches`` are measured in increasing order with ``n_points`` points per shower, ``repeats`` timed calls
    each (fewer when they would take more than ``max_call_seconds`` together, at least one); a batch predicted to
    take more than ``max_call_seconds`` is skipped with a note. ``report(name, value)`` is called for each figure
    as soon as it is measured.
    """
    figures = ReportedFigures(report)
    if model is None:
        model, description = _load(model_path, seed)
    else:
        description = type(model).__name__
    sampler = PointFlowShowerSampler(model, n_points)
    figures["pointflow_model"] = description
    figures["pointflow_grid"] = "x".join(str(size) for size in sampler.grid_shape)
    figures["pointflow_n_points"] = float(n_points)
    with contextlib.suppress(AttributeError, ValueError):  # a model without (built) Keras weights
        figures["pointflow_parameters"] = float(model.count_params())
    figures["pointflow_load_average_1min_at_start"] = os.getloadavg()[0]
    figures["pointflow_paper_ms_per_shower_cpu"] = PAPER_MS_PER_SHOWER["cpu"]
    figures["pointflow_paper_ms_per_shower_gpu_b100"] = PAPER_MS_PER_SHOWER["gpu_b100"]
    low, high = _trained_range(model)
    rng = np.random.default_rng(seed)

    def measure(batch: int, timed: int, warm_up: bool) -> float:
        energies = rng.uniform(low, high, batch).astype(np.float32)
        if warm_up:
            sampler.generate(energies, batch_size=batch, seed=seed)
        else:  # a cheap call of another batch size traces the functions for any batch size
            sampler.generate(energies[:2], batch_size=2, seed=seed)
        best: tuple[float, float, dict[str, float], Any] | None = None
        for repeat in range(max(1, timed)):
            timings: dict[str, float] = {}
            wall, cpu = time.perf_counter(), time.process_time()
            result = sampler.generate(energies, batch_size=batch, seed=seed + repeat, timings=timings)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if best is None or wall < best[0]:
                best = (wall, cpu, timings, result)
        assert best is not None
        wall, cpu, timings, result = best
        figures[f"pointflow_showers_per_s_b{batch}"] = batch / wall
        figures[f"pointflow_ms_per_shower_b{batch}"] = 1e3 * wall / batch
        figures[f"pointflow_cpu_ms_per_shower_b{batch}"] = 1e3 * cpu / batch
        staged = sum(timings.values())
        for stage in STAGES:
            figures[f"pointflow_share_{stage}_b{batch}"] = timings.get(stage, 0.0) / staged if staged > 0 else 0.0
        figures[f"pointflow_mean_hits_b{batch}"] = float(np.mean(result.n_hits))
        figures[f"pointflow_hit_shortfall_fraction_b{batch}"] = float(np.mean(result.n_hits < result.n_hits_requested))
        return wall

    sweep_batches(
        figures,
        batches,
        measure,
        lambda batch: f"pointflow_showers_per_s_b{batch}",
        repeats=repeats,
        max_call_seconds=max_call_seconds,
    )
    figures["pointflow_load_average_1min_at_end"] = os.getloadavg()[0]
    return dict(figures)
