"""What a trainable model tells the shared trainer: its configuration, data, model factory and selection rule.

A model module knows its architecture and its training step; a task binds it to data and to the trainer, and
``python -m caloml.train NAME`` only looks the task up by name (see :mod:`caloml.train`).

See ``docs/training.md``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import keras
import tensorflow as tf

from caloml.training.config import TrainerSection

__all__ = ["SelectionMetric", "TrainerSection", "TrainingTask"]  # TrainerSection: its home is training.config


@dataclass
class SelectionMetric:
    """A model-selection rule: ``compute(model)`` returns a number, lower is better."""

    name: str
    compute: Callable[[keras.Model], float]
    description: str = ""


class TrainingTask(Protocol):
    """The contract between a model and :func:`caloml.training.trainer.train`."""

    name: str
    config_class: type
    presets: dict[str, dict[str, Any]]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Task-specific command-line flags (each maps to one dotted configuration key)."""

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        """The flags given on the command line as ``{"section.key": value}`` (None for flags not given)."""

    def default_run_dir(self, config: Any) -> Path:
        """Where a run goes when ``runtime.run_dir`` is empty."""

    def prepare_data(self, config: Any, *, chief: bool) -> Any:
        """Locate (or simulate and cache) the data; runs before any model is built."""

    def make_dataset(self, config: Any, data: Any, input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        """The training dataset for one input pipeline (batched per replica, repeated)."""

    def steps_per_epoch(self, config: Any, data: Any) -> int:
        """Steps in one epoch when ``trainer.steps_per_epoch`` is 0."""

    def build_model(self, config: Any, data: Any) -> keras.Model:
        """The compiled model with its optimizers' variables built (called inside ``strategy.scope()``).

        ``data`` is what :meth:`prepare_data` returned (e.g. the trained condition ranges measured on it).
        """

    def optimizers(self, model: keras.Model) -> dict[str, keras.optimizers.Optimizer]:
        """The optimizers whose state is checkpointed with the model."""

    def selection_metric(self, config: Any, data: Any) -> SelectionMetric | None:
        """The rule that picks the best epoch (None: the last epoch)."""

    def check_init_source(self, config: Any, source: keras.Model) -> None:
        """Raise CalomlError when ``source`` cannot initialize this task's model (another architecture...)."""
