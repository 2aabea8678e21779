"""Reproducible training on request: ``runtime.deterministic`` (``--deterministic``).

:func:`apply_determinism` seeds Python's, NumPy's and TensorFlow's random generators from ``runtime.seed``
(``keras.utils.set_random_seed``, which every run does) and, when ``runtime.deterministic`` is set, switches on
TensorFlow's op determinism (``tf.config.experimental.enable_op_determinism``): kernels then pick deterministic
algorithms (or raise when an op has none), ``tf.data`` delivers in order, and two runs of the same command with
the same seed give bit-identical weights and history on the same machine and software. The trainer also asks every
input pipeline for ordered delivery (:func:`deterministic_dataset`), and the command line gives TensorFlow one
intra-op thread before its runtime starts (:func:`configure_deterministic_threads`: on a CPU, op determinism alone
is not enough). Op determinism is process-wide; a test that wants it only for one block uses
:func:`op_determinism`. The speed cost is measured in ``docs/training.md``
("Reproducible training").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
import tensorflow as tf

# TensorFlow exports no way to switch op determinism off again; its config module has one (op_determinism below)
from tensorflow.python.framework import config as tf_config

__all__ = ["apply_determinism", "configure_deterministic_threads", "deterministic_dataset", "op_determinism"]


def configure_deterministic_threads() -> bool:
    """One intra-op thread: CPU kernels (oneDNN's convolutions, Eigen's reductions) then sum in one fixed order.

    Op determinism alone leaves oneDNN's multithreaded CPU kernels free to split their sums by thread, which
    changes the last bits of a 3DGAN step from run to run. Must run before TensorFlow's runtime starts (the command
    line calls it then); later it is a no-op that returns False.
    """
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:  # the runtime started already: the thread pools are fixed
        return False
    return True


def apply_determinism(config: Any) -> bool:
    """Seed every generator from ``config.runtime.seed``; with ``config.runtime.deterministic`` also switch on
    TensorFlow's op determinism (process-wide). Returns whether op determinism is on."""
    keras.utils.set_random_seed(config.runtime.seed)
    if getattr(config.runtime, "deterministic", False):
        configure_deterministic_threads()  # a no-op once the runtime runs (the command line did it before)
        tf.config.experimental.enable_op_determinism()
    return bool(tf_config.is_op_determinism_enabled())


def deterministic_dataset(dataset: tf.data.Dataset, deterministic: bool) -> tf.data.Dataset:
    """``dataset`` with ordered delivery forced when ``deterministic`` (else unchanged)."""
    if not deterministic:
        return dataset
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options)


@contextmanager
def op_determinism(enabled: bool = True) -> Iterator[None]:
    """Op determinism on (or off) inside the block, restored to its earlier state after it."""
    before = bool(tf_config.is_op_determinism_enabled())
    if enabled:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    try:
        yield
    finally:
        if before:
            tf_config.enable_op_determinism()
        else:
            tf_config.disable_op_determinism()
