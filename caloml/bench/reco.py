"""Triforce reconstruction inference benchmark: events per second on this CPU, networks against the baselines.

For each network (:class:`~caloml.models.triforce_nets.TriforceDNN`, ``TriforceCNN``, ``TriforceGoogLeNet`` at the
paper's default sizes, random weights from a fixed seed: the speed does not depend on the weights) and each batch
size (1 and 1000 by default), the network runs as one compiled ``tf.function`` (``model(x, training=False)``,
outputs: class probabilities and energy) on random inputs of the published shapes (ECAL 25 x 25 x 25, HCAL
11 x 11 x 60, the four scalars). Each figure is the **median** of ``repeats`` timed calls after one untimed warm-up
call (tracing, oneDNN primitive creation); a call predicted (from the previous batch size's time per event) to take
longer than ``max_call_seconds`` is skipped with a note, and long calls are repeated fewer times.

The baselines predict on the expert features (:mod:`caloml.models.baselines`): the classification BDT (XGBoost on
every expert feature), the XGBoost energy regression (electron features) and the linear regression. Their
prediction cost depends on the number and depth of the trees, not on what they learned, so they are trained here
on features of random showers with fixed sizes: the BDT with ``bdt_rounds`` trees (800, the original code's
AdaBoost) of depth 3, the regression with ``xgb_rounds`` trees (1000, the paper's upper bound) of depth 3, no early
stopping. The baselines need the expert features, which the networks do not: computing them from the full
51 x 51 x 25 ECAL and the HCAL (:func:`caloml.data.lcd_features.expert_features`) is timed as ``expert_features``.

Figures: ``<model>_batch<B>_events_per_s`` (wall clock) and ``<model>_cpu_ms_per_event_batch<B>`` (process CPU
time, the steadier figure on a shared machine), plus each network's parameter count. See ``docs/benchmarks.md``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from caloml.bench.reported_figures import ReportedFigures, sweep_batches
from caloml.data.lcd_features import expert_features
from caloml.geometry import CLIC_ECAL, CLIC_HCAL
from caloml.models import triforce_nets
from caloml.models.baselines import (
    BDTClassifier,
    LinearEnergyRegression,
    XGBoostEnergyRegression,
    regression_feature_names,
)
from caloml.models.precision import bf16_support, model_in_precision
from caloml.models.triforce import INPUT_SHAPES

__all__ = ["NETWORKS", "benchmark_reco", "time_median"]

#: Benchmarked networks: figure prefix -> class name in :mod:`caloml.models.triforce_nets`.
NETWORKS: dict[str, str] = {"dnn": "TriforceDNN", "cnn": "TriforceCNN", "googlenet": "TriforceGoogLeNet"}


def time_median(function: Callable[[], Any], repeats: int, warm_up: bool = True) -> tuple[float, float]:
    """(median wall seconds, median process CPU seconds) of ``repeats`` calls of ``function`` after one untimed
    warm-up call when ``warm_up``; ``function`` must return something NumPy can convert (which waits for it)."""
    if warm_up:
        np.asarray(function())
    walls, cpus = [], []
    for _ in range(max(1, repeats)):
        wall, cpu = time.perf_counter(), time.process_time()
        np.asarray(function())
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _random_inputs(batch: int, seed: int, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Random network inputs of the published shapes: sparse exponential cells (GeV), sums, angles."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key in ("ECAL", "HCAL"):
        shape = (batch, *INPUT_SHAPES[key])
        out[key] = (rng.exponential(0.01, shape) * (rng.random(shape) < 0.1)).astype(np.float32)
    out["ECAL_E"] = out["ECAL"].reshape(batch, -1).sum(axis=1)
    out["HCAL_E"] = out["HCAL"].reshape(batch, -1).sum(axis=1)
    out["recoEta"] = rng.uniform(-0.5, 0.5, batch).astype(np.float32)
    out["recoPhi"] = rng.uniform(-np.pi, np.pi, batch).astype(np.float32)
    return {key: out[key] for key in keys}


def _compiled(model: Any) -> Callable[[dict[str, Any]], Any]:
    """``model(x, training=False)`` as one ``tf.function`` over any batch size, returning (probabilities, energy)."""
    signature = {key: tf.TensorSpec((None, *INPUT_SHAPES[key]), tf.float32) for key in model.input_keys}

    def infer(inputs: dict[str, Any]) -> Any:
        outputs = model(inputs, training=False)
        return tf.concat([outputs["class_probability"], outputs["energy"][:, None]], axis=1)

    return tf.function(infer, input_signature=[signature])


def _measure_batches(
    figures: ReportedFigures,
    prefix: str,
    batches: Sequence[int],
    make_call: Callable[[int], Callable[[], Any]],
    repeats: int,
    max_call_seconds: float,
) -> None:
    """Time ``make_call(batch)()`` for each batch size (increasing), skipping predicted over-long calls."""

    def measure(batch: int, timed: int, warm_up: bool) -> float:
        wall, cpu = time_median(make_call(batch), timed, warm_up)
        figures[f"{prefix}_batch{batch}_events_per_s"] = batch / wall
        figures[f"{prefix}_cpu_ms_per_event_batch{batch}"] = 1e3 * cpu / batch
        return wall

    sweep_batches(
        figures,
        batches,
        measure,
        lambda batch: f"{prefix}_batch{batch}_events_per_s",
        repeats=repeats,
        max_call_seconds=max_call_seconds,
    )


def _feature_batch(n: int, seed: int) -> dict[str, np.ndarray]:
    """Expert features (and a learnable label and energy) of ``n`` random full-window showers."""
    rng = np.random.default_rng(seed)
    ecal = (rng.exponential(0.01, (n, *CLIC_ECAL.shape)) * (rng.random((n, *CLIC_ECAL.shape)) < 0.05)).astype(
        np.float32
    )
    hcal = (rng.exponential(0.01, (n, *CLIC_HCAL.shape)) * (rng.random((n, *CLIC_HCAL.shape)) < 0.05)).astype(
        np.float32
    )
    batch = dict(expert_features(ecal, hcal))
    batch["energy"] = (50.0 * (batch["ECAL_E"] + batch["HCAL_E"]) * rng.normal(1.0, 0.05, n)).astype(np.float32)
    batch["class_label"] = (batch["R9"] > np.median(batch["R9"])).astype(np.int32)
    return batch


def _tile(batch: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The first ``n`` events of ``batch`` repeated cyclically."""
    index = np.arange(n) % len(next(iter(batch.values())))
    return {key: value[index] for key, value in batch.items()}


def benchmark_reco(
    batches: Sequence[int] = (1, 1000),
    repeats: int = 5,
    seed: int = 1,
    max_call_seconds: float = 120.0,
    network_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    networks: Sequence[str] = tuple(NETWORKS),
    baselines: bool = True,
    bdt_rounds: int = 800,
    xgb_rounds: int = 1000,
    baseline_train_events: int = 512,
    report: Callable[[str, float | str], None] | None = None,
    precisions: Sequence[str] = ("float32", "bfloat16"),
) -> dict[str, float | str]:
    """Measure inference of the Triforce networks and baselines; figures ``name`` -> value (unit in the name) or a
    note (str).

    ``network_kwargs`` maps a network (``dnn``, ``cnn``, ``googlenet``) to constructor arguments (default: the
    paper's sizes; tests pass tiny ones); ``networks`` chooses which run. ``batches`` are measured in increasing
    order with the median of ``repeats`` calls; see the module docstring for warm-up and skips. ``report(name,
    value)``, when given, is called for each figure as soon as it is measured. Each network runs in each of
    ``precisions``: ``bfloat16`` is the network rebuilt under the ``mixed_bfloat16`` policy with the same weights
    (figures ``<network>_bf16_...``, the ratios ``<network>_bf16_over_f32_batch<B>`` of wall-clock rates and
    ``<network>_bf16_over_f32_cpu_time_batch<B>`` of CPU time per event), skipped with a note on a
    machine without bfloat16 units.
    """
    unknown = sorted(set(networks) - set(NETWORKS))
    if unknown:
        raise ValueError(f"unknown networks {unknown}; choose from {list(NETWORKS)}")
    kwargs = dict(network_kwargs or {})
    figures = ReportedFigures(report)
    figures["reco_load_average_1min_at_start"] = os.getloadavg()[0]
    bf16_supported, bf16_reason = bf16_support()
    for network in networks:
        float32_model = getattr(triforce_nets, NETWORKS[network])(seed=seed, **kwargs.get(network, {}))
        figures[f"{network}_parameters"] = float(float32_model.count_params())
        for precision in precisions:
            prefix = network if precision == "float32" else f"{network}_bf16"
            if precision == "bfloat16" and not bf16_supported:
                figures[f"{prefix}_events_per_s"] = f"skipped ({bf16_reason})"
                continue
            model = model_in_precision(float32_model, precision)
            function = _compiled(model)

            def make_call(batch: int, model: Any = model, function: Any = function) -> Callable[[], Any]:
                inputs = {k: tf.constant(v) for k, v in _random_inputs(batch, seed, model.input_keys).items()}
                return lambda: function(inputs)

            _measure_batches(figures, prefix, batches, make_call, repeats, max_call_seconds)
            del model, function
        for batch in batches:
            bf16 = figures.get(f"{network}_bf16_batch{batch}_events_per_s")
            f32 = figures.get(f"{network}_batch{batch}_events_per_s")
            if isinstance(bf16, float) and isinstance(f32, float):
                figures[f"{network}_bf16_over_f32_batch{batch}"] = bf16 / f32
                cpu_f32 = float(figures[f"{network}_cpu_ms_per_event_batch{batch}"])
                cpu_bf16 = float(figures[f"{network}_bf16_cpu_ms_per_event_batch{batch}"])
                figures[f"{network}_bf16_over_f32_cpu_time_batch{batch}"] = cpu_f32 / cpu_bf16
        del float32_model
    if baselines:
        train = _feature_batch(baseline_train_events, seed)
        labels = train["class_label"]
        settings = [{"max_depth": 3, "learning_rate": 0.3}]
        bdt = BDTClassifier(seed=seed, grid=settings, max_rounds=bdt_rounds, early_stopping_rounds=bdt_rounds + 1)
        bdt.fit(train, labels, train, labels)
        xgb = XGBoostEnergyRegression(
            regression_feature_names("electron"), seed, max_rounds=xgb_rounds, early_stopping_rounds=xgb_rounds + 1
        ).fit(train, train)
        linreg = LinearEnergyRegression().fit(train)
        figures["bdt_trees"] = float(bdt.model.get_booster().num_boosted_rounds())
        figures["xgb_trees"] = float(xgb.model.get_booster().num_boosted_rounds())
        predictors: dict[str, Callable[[dict[str, np.ndarray]], Any]] = {
            "bdt": bdt.predict_proba,
            "xgb": xgb.predict,
            "linreg": linreg.predict,
        }
        for prefix, predict in predictors.items():

            def make_predict_call(batch: int, predict: Any = predict) -> Callable[[], Any]:
                features = _tile(train, batch)
                return lambda: predict(features)

            _measure_batches(figures, prefix, batches, make_predict_call, repeats, max_call_seconds)

        def make_features_call(batch: int) -> Callable[[], Any]:
            rng = np.random.default_rng(seed)
            ecal = rng.exponential(0.01, (batch, *CLIC_ECAL.shape)).astype(np.float32)
            hcal = rng.exponential(0.01, (batch, *CLIC_HCAL.shape)).astype(np.float32)
            return lambda: expert_features(ecal, hcal)["R9"]

        _measure_batches(figures, "expert_features", batches, make_features_call, repeats, max_call_seconds)
    figures["reco_load_average_1min_at_end"] = os.getloadavg()[0]
    return dict(figures)
