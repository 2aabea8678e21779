"""The Triforce reconstruction task: configuration and presets, data and pipeline, and the training task.

``python -m caloml.train triforce`` looks up :data:`TASK`. The modules: :mod:`caloml.tasks.triforce.config`
(sections, presets, checks), :mod:`caloml.tasks.triforce.data` (split, ``test_events.json``, ``tf.data``
pipeline), :mod:`caloml.tasks.triforce.task` (the task the trainer drives). See ``docs/reconstruction.md``.
"""

from __future__ import annotations

from caloml.data.split_record import SPLIT_FILE
from caloml.tasks.triforce.config import (
    ARCHS,
    PAPER_DROPOUT,
    PAPER_LEARNING_RATE,
    PAPER_MICRO_BATCH_SIZE,
    PRESETS,
    TriforceConfig,
    TriforceData,
    TriforceModelSection,
    TriforceTrainer,
    check_config,
    dropout_of,
    learning_rate_of,
    micro_batch_size_of,
)
from caloml.tasks.triforce.data import (
    BATCH_KEYS,
    TriforceInputs,
    locate_and_split,
    read_split,
    source_events,
    split_dataset,
    split_record,
    training_dataset,
)
from caloml.tasks.triforce.task import SUMMARY_FILE, TASK, TriforceTask, build_network, validation_scores

__all__ = [
    "ARCHS",
    "BATCH_KEYS",
    "PAPER_DROPOUT",
    "PAPER_LEARNING_RATE",
    "PAPER_MICRO_BATCH_SIZE",
    "PRESETS",
    "SPLIT_FILE",
    "SUMMARY_FILE",
    "TASK",
    "TriforceConfig",
    "TriforceData",
    "TriforceInputs",
    "TriforceModelSection",
    "TriforceTask",
    "TriforceTrainer",
    "build_network",
    "check_config",
    "dropout_of",
    "learning_rate_of",
    "locate_and_split",
    "micro_batch_size_of",
    "read_split",
    "source_events",
    "split_dataset",
    "split_record",
    "training_dataset",
    "validation_scores",
]
