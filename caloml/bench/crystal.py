"""Generation speed of a trained crystal generator (``wgan``, ``vae``, ``vaewgan``) on the CPU.

``python -m caloml.bench crystal --model RUN [--batches 1,10000] [--repeats 3]``: showers per second of the
model's graph (a ``tf.function`` of its ``call``, noise drawn inside) at each batch size, after one warm-up call;
the median of the timed calls. See ``docs/vaewgan.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["benchmark_crystal"]


def benchmark_crystal(
    model_path: str,
    *,
    batches: Sequence[int] = (1, 10000),
    repeats: int = 3,
    seed: int = 1,
    report: Callable[[str, float | str], None] | None = None,
) -> dict[str, float]:
    """Showers per second and milliseconds per call of the crystal model at ``model_path`` for each batch size."""
    import tensorflow as tf

    from caloml.errors import CalomlError
    from caloml.generate.crystal import model_class
    from caloml.generate.trained_model import load_trained_model

    if not model_path:
        raise CalomlError("the crystal benchmark needs --model RUN (a trained wgan, vae or vaewgan)")
    model_class("wgan")  # registers the crystal classes
    from caloml.models.crystal_showers import CrystalShowerModel

    model: Any = load_trained_model(model_path, CrystalShowerModel).model
    kind = type(model).__name__
    low, high = model.energy_range_gev

    @tf.function(reduce_retracing=True)
    def generate(energy: tf.Tensor, draw: tf.Tensor) -> tf.Tensor:
        noise = tf.random.stateless_normal(tf.stack([tf.shape(energy)[0], model.noise_size]), seed=draw)
        return model({"energy_gev": energy, "noise": noise}, training=False)

    figures: dict[str, float] = {}
    rng = np.random.default_rng(seed)
    for batch in batches:
        energy = tf.constant(rng.uniform(low, high, batch).astype(np.float32))
        generate(energy, tf.constant([seed, 0], tf.int64)).numpy()  # warm-up: tracing
        seconds = []
        for call in range(repeats):
            start = time.perf_counter()
            generate(energy, tf.constant([seed, call + 1], tf.int64)).numpy()
            seconds.append(time.perf_counter() - start)
        median = float(np.median(seconds))
        for name, value in (
            (f"{kind}_batch{batch}_showers_per_s", batch / median),
            (f"{kind}_batch{batch}_ms_per_call", 1e3 * median),
        ):
            figures[name] = value
            if report is not None:
                report(name, value)
    return figures
