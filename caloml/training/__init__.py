"""The shared training machinery: configuration, strategies, run directories, the trainer.

Names (loaded on first use, so that the command lines parse their arguments without TensorFlow):
:func:`train` and :func:`describe` with :class:`TrainingResult` (:mod:`caloml.training.trainer`),
:func:`resolve_config` and :func:`config_to_dict` (:mod:`caloml.training.config`), :class:`TrainingTask` and
:class:`SelectionMetric` (:mod:`caloml.training.task`), :func:`make_strategy` (:mod:`caloml.training.strategy`),
:class:`RunDirectory` (:mod:`caloml.training.run_directory`). See ``docs/training.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from caloml.training.config import config_to_dict, resolve_config
    from caloml.training.run_directory import RunDirectory
    from caloml.training.strategy import make_strategy
    from caloml.training.task import SelectionMetric, TrainingTask
    from caloml.training.trainer import TrainingResult, describe, train

__all__ = [
    "RunDirectory",
    "SelectionMetric",
    "TrainingResult",
    "TrainingTask",
    "config_to_dict",
    "describe",
    "make_strategy",
    "resolve_config",
    "train",
]

_LAZY = {
    "train": "caloml.training.trainer",
    "describe": "caloml.training.trainer",
    "TrainingResult": "caloml.training.trainer",
    "resolve_config": "caloml.training.config",
    "config_to_dict": "caloml.training.config",
    "TrainingTask": "caloml.training.task",
    "SelectionMetric": "caloml.training.task",
    "make_strategy": "caloml.training.strategy",
    "RunDirectory": "caloml.training.run_directory",
}


def __getattr__(name: str) -> Any:
    """Load the names on first use (most of them import TensorFlow)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'caloml.training' has no attribute {name!r}")
