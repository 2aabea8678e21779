"""ONNX Runtime against TensorFlow on the CPU, per exported model, at batch 1 and 64 (``python -m caloml.bench onnx``).

Each model (random weights: the speed does not depend on them) is exported with ``--format saved_model,onnx`` into
a temporary directory, which also checks that ONNX Runtime agrees with TensorFlow. Then the SavedModel's signature
(what TF Serving runs) and the ONNX file in an ONNX Runtime session are timed on the same inputs: the median of
``repeats`` calls after one warm-up call. Figures: ``<model>_batch<B>_tf_ms``, ``..._onnxruntime_ms`` and
``..._onnxruntime_speedup_x`` (TensorFlow's time over ONNX Runtime's: above 1 ONNX Runtime is faster).

For the 3DGAN the batch-1 call is also timed with the settings that could explain a loss: the graph optimisation
level (``basic`` and ``disabled`` against the default ``all``), one intra-op thread against the default, and the
number of ``Transpose`` nodes in the converted graph (TensorFlow's channels-last Conv3D becomes ONNX's channels-first
``Conv`` between transposes, which tf2onnx's optimiser removes where it can). The CaloPointFlow and Pyramid exports
have no ONNX form (their samplers draw stateless random numbers), which a line says. See ``docs/benchmarks.md``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import tensorflow as tf

from caloml.bench.reco import time_median
from caloml.bench.reported_figures import ReportedFigures

__all__ = ["MODELS", "benchmark_onnx"]

#: The benchmarked exports: name -> what it is.
MODELS: dict[str, str] = {
    "gan3d": "full-size 3DGAN generator (showers_from_noise)",
    "triforce_dnn": "Triforce DNN, the paper's size (reconstruct)",
    "triforce_cnn": "Triforce CNN, the paper's size (reconstruct)",
    "wgan": "crystal-5x5 WGAN generator (showers_from_noise)",
}
#: The TensorFlow signature each model's ONNX file reproduces.
_SIGNATURES = {"gan3d": "showers_from_noise", "triforce_dnn": "reconstruct", "triforce_cnn": "reconstruct"}
_LEVELS = {
    "all": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "basic": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disabled": onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


def _export(name: str, directory: Path, seed: int) -> Path:
    """Export a random-weight model ``name`` as SavedModel and ONNX; returns the version directory."""
    if name == "gan3d":
        from caloml.export.gan import export_gan
        from caloml.models.gan3d import GAN3D

        return export_gan(GAN3D(seed=seed), directory, formats=("saved_model", "onnx"))
    if name.startswith("triforce_"):
        from caloml.export.triforce import export_triforce
        from caloml.models import triforce_nets

        network = {"dnn": triforce_nets.TriforceDNN, "cnn": triforce_nets.TriforceCNN}[name.split("_")[1]](seed=seed)
        return export_triforce(network, "e-vs-pi", directory, formats=("saved_model", "onnx"))
    from caloml.export.crystal import export_crystal
    from caloml.models.crystal_wgan import CrystalWGAN

    return export_crystal(CrystalWGAN(seed=seed), directory, formats=("saved_model", "onnx"))


def _inputs(session: onnxruntime.InferenceSession, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Inputs of the session's shapes and physical scales: energies inside the models' ranges, standard normal
    noise, sparse exponential cells."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for item in session.get_inputs():
        shape = [batch, *(int(n) for n in item.shape[1:])]
        if item.name == "energy_gev":
            value = rng.uniform(1.0, 4.0, shape) if len(session.get_inputs()) == 2 else rng.uniform(20.0, 180.0, shape)
        elif item.name == "theta_rad":
            value = rng.uniform(1.3, 1.8, shape)
        elif item.name == "noise":
            value = rng.standard_normal(shape)
        else:
            value = rng.exponential(0.05 if len(shape) > 2 else 20.0, shape)
        inputs[item.name] = value.astype(np.float32)
    return inputs


def _session(path: Path, level: str = "all", threads: int = 0) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = _LEVELS[level]
    options.intra_op_num_threads = threads  # 0: ONNX Runtime's default (the physical cores)
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _tf_call(signature: Any, tensors: dict[str, Any]) -> Callable[[], Any]:
    return lambda: next(iter(signature(**tensors).values()))


def _onnx_call(session: onnxruntime.InferenceSession, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
    return lambda: session.run(None, inputs)[0]


def benchmark_onnx(
    models: Sequence[str] = tuple(MODELS),
    *,
    batches: Sequence[int] = (1, 64),
    repeats: int = 3,
    seed: int = 1,
    report: Callable[[str, float | str], None] | None = None,
) -> dict[str, float | str]:
    """Milliseconds per call of TensorFlow and ONNX Runtime, and their ratio, per model and batch size (see the
    module docstring); ``report(name, value)`` is called for each figure as soon as it is measured."""
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {list(MODELS)}")
    figures = ReportedFigures(report)
    figures["onnx_load_average_1min_at_start"] = os.getloadavg()[0]
    figures["onnx_onnxruntime_version"] = onnxruntime.__version__
    figures["onnx_cpu_count"] = float(os.cpu_count() or 0)
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            path = _export(name, Path(tmp) / name, seed)
            signature: Any = tf.saved_model.load(str(path)).signatures[_SIGNATURES.get(name, "showers_from_noise")]
            session = _session(path / "model.onnx")
            graph = onnx.load(str(path / "model.onnx")).graph
            figures[f"{name}_onnx_transpose_nodes"] = float(sum(node.op_type == "Transpose" for node in graph.node))
            for batch in batches:
                inputs = _inputs(session, batch, seed)
                tensors = {key: tf.constant(value) for key, value in inputs.items()}
                tf_wall, _ = time_median(_tf_call(signature, tensors), repeats)
                ort_wall, _ = time_median(_onnx_call(session, inputs), repeats)
                prefix = f"{name}_batch{batch}"
                figures[f"{prefix}_tf_ms"] = 1000.0 * tf_wall
                figures[f"{prefix}_onnxruntime_ms"] = 1000.0 * ort_wall
                figures[f"{prefix}_onnxruntime_speedup_x"] = tf_wall / ort_wall
                if name == "gan3d" and batch == min(batches):
                    for label, variant in (
                        ("opt_basic", _session(path / "model.onnx", "basic")),
                        ("opt_disabled", _session(path / "model.onnx", "disabled")),
                        ("1_thread", _session(path / "model.onnx", threads=1)),
                    ):
                        wall, _ = time_median(_onnx_call(variant, inputs), repeats)
                        figures[f"{prefix}_onnxruntime_{label}_ms"] = 1000.0 * wall
    figures["onnx_no_onnx_form"] = "pointflow, pyramid: samplers with stateless random numbers (see docs/serving.md)"
    return dict(figures)
