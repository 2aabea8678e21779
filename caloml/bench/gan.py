"""3DGAN generator benchmark: showers per second on this CPU, with and without XLA, in float32 and bfloat16.

For each batch size (1, 64 and 1024 by default) the full-size generator (random weights unless a trained model is
given: the speed does not depend on the weights) runs through ``GAN3D.call`` - conditions, generator, inverse
power, i.e. showers in GeV - in these modes:

* ``graph``: a ``tf.function`` (TensorFlow's graph executor; oneDNN kernels on x86);
* ``xla``: the same with ``jit_compile=True`` (XLA's CPU compiler);
* ``bf16`` / ``bf16_xla``: the model rebuilt under the Keras ``mixed_bfloat16`` policy (bfloat16 arithmetic,
  float32 weights), only when the CPU has bfloat16 instructions (``avx512_bf16`` or ``amx_bf16`` in
  ``/proc/cpuinfo``, or a GPU); otherwise the lines say why they were skipped. The Conv3D layers are guarded
  against TensorFlow's wrong bfloat16 kernel (:mod:`caloml.models.bf16_conv3d_guard`);
* ``train`` / ``bf16_train``: one ``GAN3D.train_step`` (three generator and two discriminator passes, their
  gradients and updates) at ``train_batch`` showers, in float32 and bfloat16, and its parts
  (:data:`TRAINING_PARTS`) timed on their own.

The bfloat16-over-float32 ratios measured in the same run (``gan_bf16_over_f32_batch<B>``,
``gan_train_step_bf16_over_f32``, and the same from the process CPU time, ``..._cpu_time...``) are the figures
that count on a shared machine.

Each figure is the best of ``repeats`` timed calls after one untimed warm-up call (tracing, compilation, oneDNN
primitive creation); long calls are timed fewer times, or skipped when predicted to exceed a time limit (see
:func:`benchmark_gan`). Wall-clock rates (showers/s, ms/shower) and process CPU time per shower are both given: on a
machine shared with other work the CPU time is the steadier figure. The FLOPs of one shower are counted from the
layer shapes (2 per multiply-add of the Conv3D and Dense layers; the element-wise layers, under 1%, are left out)
and the achieved FLOP rate per CPU-second is compared with that of a large ``tf.matmul`` measured in the same run
(float32 for the float32 modes, bfloat16 for the bfloat16 ones). The bfloat16 modes are first checked against
float32 (mean relative change of the total shower energy); a change beyond bfloat16 rounding is reported as wrong
results.

See ``docs/3dgan.md``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.bench.reported_figures import ReportedFigures, sweep_batches
from caloml.generate.trained_model import load_trained_model
from caloml.models.gan3d import GAN3D
from caloml.models.precision import BF16_CPU_FLAGS, bf16_support, cpu_flags, model_in_precision

__all__ = [
    "BF16_CPU_FLAGS",
    "BF16_TOLERANCE",
    "GENERATION_MODES",
    "MODES",
    "TRAINING_PARTS",
    "benchmark_gan",
    "bf16_support",
    "cpu_flags",
    "generator_flops_per_shower",
    "matmul_gflop_per_s",
]

#: The measured modes: generation as a graph (tf.function), with XLA (jit_compile), both in bfloat16
#: (mixed_bfloat16 policy); and one training step (``GAN3D.train_step`` as a tf.function) in float32 and bfloat16.
MODES = ("graph", "xla", "bf16", "bf16_xla", "train", "bf16_train")
#: The generation modes (swept over batch sizes); the others are training modes (one batch size).
GENERATION_MODES = MODES[:4]
#: Largest mean relative change of the total shower energy that bfloat16 rounding explains (8 bits of mantissa
#: per operation, summed over 65,025 cells: well under 1% when the arithmetic is right).
BF16_TOLERANCE = 0.05
#: Milliseconds per shower of the 3DGAN paper (arXiv:2109.07388) on a 2-socket Xeon 8180 and on a GTX 1080.
PAPER_MS_PER_SHOWER = {"xeon_8180_2_sockets": 16.0, "gtx_1080": 4.0}


def generator_flops_per_shower(generator: Any) -> float:
    """FLOPs of one shower through a functional generator: 2 x the multiply-adds of its Conv3D and Dense layers.

    Conv3D: 2 x kernel volume x input channels x filters x output voxels; Dense: 2 x inputs x units.
    """
    flops = 0.0
    for layer in generator.layers:
        if isinstance(layer, keras.layers.Conv3D):
            kernel = tuple(int(d) for d in layer.kernel.shape)  # (kx, ky, kz, in, out)
            voxels = int(np.prod([int(d) for d in layer.output.shape[1:4]]))
            flops += 2.0 * float(np.prod(kernel)) * voxels
        elif isinstance(layer, keras.layers.Dense):
            flops += 2.0 * float(np.prod([int(d) for d in layer.kernel.shape]))
        elif isinstance(layer, keras.Model):
            flops += generator_flops_per_shower(layer)
    return flops


def _time_calls(function: Callable[[], Any], timed_calls: int, warm_up: bool = True) -> tuple[float, float]:
    """(best wall seconds, process CPU seconds of that call) over ``timed_calls`` calls, after one untimed warm-up
    call when ``warm_up``; ``function`` must return something NumPy can convert (which waits for the result)."""
    if warm_up:
        np.asarray(function())
    best = (float("inf"), float("inf"))
    for _ in range(max(1, timed_calls)):
        wall, cpu = time.perf_counter(), time.process_time()
        np.asarray(function())
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def matmul_gflop_per_s(dtype: str = "float32", size: int = 4096, repeats: int = 3) -> tuple[float, float]:
    """FLOP rate of a ``size`` x ``size`` ``tf.matmul`` in ``dtype`` on this machine (best of ``repeats``):
    (GFLOP per wall-clock second, GFLOP per second of process CPU time)."""
    rng = np.random.default_rng(0)
    a = tf.cast(tf.constant(rng.standard_normal((size, size), dtype=np.float32)), dtype)
    b = tf.cast(tf.constant(rng.standard_normal((size, size), dtype=np.float32)), dtype)
    product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b)[:1, :1], tf.float32)))
    wall, cpu = _time_calls(product, repeats)
    return 2.0 * size**3 / wall / 1e9, 2.0 * size**3 / cpu / 1e9


def _compiled(net: Any, signature: dict[str, Any], jit_compile: bool) -> Callable[[dict[str, Any]], Any]:
    """``net``'s showers in float32 as one ``tf.function`` (XLA-compiled when ``jit_compile``)."""

    def showers(inputs: dict[str, Any]) -> Any:
        return tf.cast(net(inputs, training=False), tf.float32)

    return tf.function(showers, input_signature=[signature], jit_compile=jit_compile)


def _speed_name(batch: int, mode: str) -> str:
    """The showers-per-second figure of ``batch`` in ``mode`` (also the one that says why it was skipped)."""
    return f"gan_showers_per_s_b{batch}_{mode}"


def _precision(mode: str) -> str:
    """The float type of a benchmark mode: ``bfloat16`` for the ``bf16*`` modes, else ``float32``."""
    return "bfloat16" if mode.startswith("bf16") else "float32"


def _training_batch(model: Any, batch: int, seed: int) -> dict[str, Any]:
    """A training batch of sparse random showers (GeV) with conditions inside the model's ranges."""
    rng = np.random.default_rng(seed)
    shape = (batch, 51, 51, 25)
    cells = rng.exponential(0.05, shape) * (rng.random(shape) < 0.05)
    inputs = _inputs(model, batch, seed)
    return {
        "ECAL": tf.constant(cells.astype(np.float32)),
        "energy": inputs["energy_gev"],
        model.condition_angle: inputs["theta_rad"],
    }


def _measure_training(
    figures: ReportedFigures, model: Any, mode: str, batch: int, repeats: int, seed: int, max_call_seconds: float
) -> None:
    """Showers per second of one ``train_step`` (a tf.function) of ``model`` at ``batch``, after a warm-up step."""
    model.compile()
    step = tf.function(model.train_step)
    data = _training_batch(model, batch, seed)
    wall, cpu = _time_calls(lambda: step(data)["g_loss"], 1)
    if wall * repeats > max_call_seconds:
        repeats = 1
    if repeats > 1:
        wall, cpu = min((wall, cpu), _time_calls(lambda: step(data)["g_loss"], repeats - 1, warm_up=False))
    figures[f"gan_train_showers_per_s_b{batch}_{mode}"] = batch / wall
    figures[f"gan_train_cpu_ms_per_shower_b{batch}_{mode}"] = 1e3 * cpu / batch
    for part, function in _training_parts(model, data).items():  # where the step's time goes
        _, part_cpu = _time_calls(function, repeats)
        figures[f"gan_train_part_{part}_cpu_ms_per_shower_b{batch}_{mode}"] = 1e3 * part_cpu / batch


#: The parts of a training step timed on their own (``train`` modes): name -> what it computes.
TRAINING_PARTS = {
    "generator_forward": "the generator in training mode (batch statistics)",
    "discriminator_forward": "the discriminator on a batch of images",
    "discriminator_forward_backward": "the discriminator and its gradients (twice a step: real and generated)",
    "generator_step": "generator and discriminator forward, gradients into the generator",
}


def _training_parts(model: Any, data: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """One ``tf.function`` per part of :data:`TRAINING_PARTS` on ``data``'s conditions (the losses are replaced by
    the mean of every discriminator output: the cost is in the networks, not the loss arithmetic)."""
    generator, discriminator = model.generator, model.discriminator
    batch = int(data["energy"].shape[0])
    noise = tf.random.stateless_normal((batch, int(model.latent_size) - 2), seed=(1, 2))
    inputs = [
        tf.reshape(data["energy"], (-1, 1)) / model.energy_scale_gev,
        tf.reshape(data[model.condition_angle], (-1, 1)),
        noise,
    ]
    images = tf.pow(data["ECAL"][..., None], model.power)

    def summed(outputs: dict[str, Any]) -> Any:
        return tf.add_n([tf.reduce_mean(tf.cast(value, tf.float32)) for value in outputs.values()])

    def one_number(tensors: list[Any]) -> Any:  # a scalar that depends on every result (the timer reads it)
        return tf.add_n([tf.reduce_sum(tf.cast(tensor, tf.float32)) for tensor in tensors])

    def discriminator_forward_backward() -> Any:
        with tf.GradientTape() as tape:
            loss = summed(discriminator(images, training=True))
        return one_number(tape.gradient(loss, discriminator.trainable_variables))

    def generator_step() -> Any:
        with tf.GradientTape() as tape:
            loss = summed(discriminator(generator(inputs, training=True), training=True))
        return one_number(tape.gradient(loss, generator.trainable_variables))

    return {
        "generator_forward": tf.function(lambda: one_number([generator(inputs, training=True)])),
        "discriminator_forward": tf.function(lambda: summed(discriminator(images, training=True))),
        "discriminator_forward_backward": tf.function(discriminator_forward_backward),
        "generator_step": tf.function(generator_step),
    }


def _inputs(model: Any, batch: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    (energy_low, energy_high), (theta_low, theta_high) = model.energy_range_gev, model.theta_range_rad
    return {
        "energy_gev": tf.constant(rng.uniform(energy_low, energy_high, batch).astype(np.float32)),
        "theta_rad": tf.constant(rng.uniform(theta_low, theta_high, batch).astype(np.float32)),
        "noise": tf.constant(rng.standard_normal((batch, int(model.latent_size) - 2), dtype=np.float32)),
    }


def benchmark_gan(
    model_path: str | Path | None = None,
    batches: Sequence[int] = (1, 64, 1024),
    repeats: int = 3,
    seed: int = 1,
    modes: Sequence[str] = MODES,
    matmul_size: int = 4096,
    max_call_seconds: float = 300.0,
    flags: set[str] | None = None,
    report: Callable[[str, float | str], None] | None = None,
    train_batch: int = 16,
) -> dict[str, float | str]:
    """Measure the 3DGAN generator; figures keyed ``name`` -> value (unit in the name's suffix) or a note (str).

    ``model_path``: a run directory or ``.keras`` file of a GAN3D (default: a randomly initialised full-size one).
    ``batches`` are measured in increasing order; ``repeats`` timed calls each, fewer when they would take more than
    ``max_call_seconds`` together (at least one). A batch whose call is predicted (from the previous batch's time
    per shower) to take more than ``max_call_seconds`` is skipped with a note. Calls predicted to take more than
    :data:`~caloml.bench.reported_figures.SKIP_WARM_UP_SECONDS` are not preceded by a warm-up call in the graph
    modes (the function is already traced; the once-per-shape setup is under 1% of such a call); the XLA modes
    always warm up (XLA compiles per shape). Wall-clock and process CPU time are both reported: on a loaded machine
    the CPU time per shower is the steadier figure. ``report(name, value)``, when given, is called for each figure
    as soon as it is measured. The training modes time one ``train_step`` at ``train_batch`` showers (random
    sparse showers: the speed does not depend on the data). When both precisions are measured, the ratios
    ``gan_bf16_over_f32_batch<B>`` (generation, graph modes) and ``gan_train_step_bf16_over_f32`` are reported.
    ``flags``: the CPU flags to judge bfloat16 support by (default: this machine's, and its GPUs).
    """
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise ValueError(f"unknown modes {unknown}; choose from {list(MODES)}")
    if model_path is None:
        model = GAN3D(seed=seed)
    else:
        model = load_trained_model(model_path, GAN3D).model
    flops = generator_flops_per_shower(model.generator)
    figures = ReportedFigures(report)
    figures["gan_model"] = "randomly initialised full-size GAN3D" if model_path is None else str(model_path)
    figures["gan_load_average_1min_at_start"] = os.getloadavg()[0]
    figures["gan_generator_parameters"] = float(model.generator.count_params())
    figures["gan_gflop_per_shower"] = flops / 1e9
    supported, reason = bf16_support(flags, None if flags is None else 0)
    figures["gan_bf16_support"] = f"{'yes' if supported else 'no'} ({reason})"
    reference: dict[str, float] = {}  # GFLOP per CPU-second of the matmul, per precision
    for precision in ("float32", "bfloat16"):
        if precision == "bfloat16" and not (supported and any(mode.startswith("bf16") for mode in modes)):
            continue
        per_wall_s, per_cpu_s = matmul_gflop_per_s(precision, matmul_size, repeats)
        figures[f"gan_matmul_{matmul_size}_{precision}_gflop_per_s"] = per_wall_s
        figures[f"gan_matmul_{matmul_size}_{precision}_gflop_per_cpu_s"] = per_cpu_s
        reference[precision] = per_cpu_s
    models = {"float32": model}
    noise_size = int(model.latent_size) - 2
    signature = {
        "energy_gev": tf.TensorSpec((None,), tf.float32),
        "theta_rad": tf.TensorSpec((None,), tf.float32),
        "noise": tf.TensorSpec((None, noise_size), tf.float32),
    }
    for mode in modes:
        precision = _precision(mode)
        xla = mode.endswith("xla")
        if precision == "bfloat16" and not supported and mode.endswith("train"):
            figures[f"gan_train_showers_per_s_b{train_batch}_{mode}"] = f"skipped ({reason})"
            continue
        if precision == "bfloat16" and not supported:
            for batch in batches:
                figures[_speed_name(batch, mode)] = f"skipped ({reason})"
            continue
        if precision not in models:
            models[precision] = model_in_precision(model, precision)
        if mode.endswith("train"):
            _measure_training(figures, models[precision], mode, train_batch, repeats, seed, max_call_seconds)
            continue
        function = _compiled(models[precision], signature, xla)
        if precision == "bfloat16":  # a speed is worth something only if the showers are right
            inputs = _inputs(model, 8, seed + 1)
            exact = np.asarray(model(inputs, training=False)).sum(axis=(1, 2, 3))
            approximate = np.asarray(function(inputs)).sum(axis=(1, 2, 3))
            # relative change of the summed deposit (an untrained generator may give empty showers: no 0/0)
            change = float(np.abs(approximate.sum() - exact.sum()) / max(float(np.abs(exact).sum()), 1e-12))
            figures[f"gan_{mode}_total_energy_rel_change"] = change
            if change > BF16_TOLERANCE:
                figures[f"gan_{mode}_results"] = (
                    f"WRONG: total energies differ from float32 by {100 * change:.0f}% on average (more than the"
                    f" {100 * BF16_TOLERANCE:.0f}% bfloat16 rounding allows); its speed below is not usable"
                )

        def measure(batch: int, timed: int, warm_up: bool, mode: str = mode, function: Any = function) -> float:
            name = f"b{batch}_{mode}"
            xla = mode.endswith("xla")  # an XLA function is recompiled for each batch size: always warm it up
            wall, cpu = _time_calls(partial(function, _inputs(model, batch, seed)), timed, xla or warm_up)
            figures[_speed_name(batch, mode)] = batch / wall
            figures[f"gan_ms_per_shower_{name}"] = 1e3 * wall / batch
            figures[f"gan_cpu_ms_per_shower_{name}"] = 1e3 * cpu / batch
            figures[f"gan_gflop_per_cpu_s_{name}"] = flops * batch / cpu / 1e9
            figures[f"gan_fraction_of_matmul_{name}"] = flops * batch / cpu / 1e9 / reference[_precision(mode)]
            return wall

        sweep_batches(
            figures,
            batches,
            measure,
            partial(_speed_name, mode=mode),
            repeats=repeats,
            max_call_seconds=max_call_seconds,
        )
    for batch in batches:
        bf16, f32 = figures.get(_speed_name(batch, "bf16")), figures.get(_speed_name(batch, "graph"))
        if isinstance(bf16, float) and isinstance(f32, float):
            figures[f"gan_bf16_over_f32_batch{batch}"] = bf16 / f32
            cpu_f32, cpu_bf16 = (figures[f"gan_cpu_ms_per_shower_b{batch}_{mode}"] for mode in ("graph", "bf16"))
            figures[f"gan_bf16_over_f32_cpu_time_batch{batch}"] = float(cpu_f32) / float(cpu_bf16)
    bf16, f32 = (figures.get(f"gan_train_showers_per_s_b{train_batch}_{mode}") for mode in ("bf16_train", "train"))
    if isinstance(bf16, float) and isinstance(f32, float):
        figures["gan_train_step_bf16_over_f32"] = bf16 / f32
        cpu_f32, cpu_bf16 = (
            figures[f"gan_train_cpu_ms_per_shower_b{train_batch}_{mode}"] for mode in ("train", "bf16_train")
        )
        figures["gan_train_step_bf16_over_f32_cpu_time"] = float(cpu_f32) / float(cpu_bf16)
        for part in TRAINING_PARTS:
            cpu_f32, cpu_bf16 = (
                figures[f"gan_train_part_{part}_cpu_ms_per_shower_b{train_batch}_{mode}"]
                for mode in ("train", "bf16_train")
            )
            figures[f"gan_train_part_{part}_bf16_over_f32_cpu_time"] = float(cpu_f32) / float(cpu_bf16)
    figures["gan_load_average_1min_at_end"] = os.getloadavg()[0]
    return dict(figures)
