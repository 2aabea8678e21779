"""Non-finite losses: stop training with one line naming the epoch, the step and the loss, or skip the batch.

:class:`NonFiniteLossGuard` is a Keras callback the shared trainer puts first in its list. After every training
step it reads the step's logs (every loss and metric the model reports); a NaN or infinite value then

* ``stop`` (``trainer.on_nonfinite``, the default): raises :class:`NonFiniteLossError` at once, before the epoch
  ends, so that the epoch's checkpoint is never written and the last good checkpoint stays the newest one (a rerun
  of the command resumes from it);
* ``skip-batch``: puts back the model's weights, the optimizers' state and the metrics as they were before the
  step (a snapshot taken before every step, which costs a copy of every variable per step), and training goes on
  with the next batch. Every Keras task offers it: the undo acts on the variables, whatever the model's
  ``train_step``. More than ``max_consecutive_skips`` skipped steps in a row stop the run as ``stop`` does (the
  model does not recover).

See ``docs/training.md`` ("Non-finite losses").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.errors import CalomlError

__all__ = ["ON_NONFINITE_CHOICES", "NonFiniteLossError", "NonFiniteLossGuard", "check_on_nonfinite", "nonfinite_logs"]

#: Values of ``trainer.on_nonfinite`` (``--on-nonfinite``).
ON_NONFINITE_CHOICES = ("stop", "skip-batch")


class NonFiniteLossError(CalomlError):
    """Training met a NaN or infinite loss (one line: epoch, step, loss, the checkpoint kept)."""


def check_on_nonfinite(value: str) -> str:
    """``value`` when it is one of :data:`ON_NONFINITE_CHOICES`, else a one-line CalomlError."""
    if value not in ON_NONFINITE_CHOICES:
        raise CalomlError(f"trainer.on_nonfinite must be one of {', '.join(ON_NONFINITE_CHOICES)}, got {value!r}")
    return value


def nonfinite_logs(logs: Mapping[str, Any] | None, *, skip_prefix: str = "val_") -> dict[str, float]:
    """The numeric entries of ``logs`` that are NaN or infinite (keys starting with ``skip_prefix`` ignored)."""
    bad: dict[str, float] = {}
    for key, value in (logs or {}).items():
        if key.startswith(skip_prefix):
            continue
        try:
            number = float(np.asarray(value).reshape(-1)[0]) if np.size(value) else 0.0
        except (TypeError, ValueError):
            continue
        if not math.isfinite(number):
            bad[key] = number
    return bad


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stop (or skip the batch) on a NaN or infinite training loss; see the module docstring.

    Args:
        mode: ``stop`` or ``skip-batch``.
        checkpoint_dir: where the epoch checkpoints are (named in the message).
        optimizers: the optimizers whose state a skipped step puts back (the task's, by checkpoint name).
        max_consecutive_skips: skipped steps in a row before ``skip-batch`` stops the run.
    """

    def __init__(
        self,
        mode: str,
        checkpoint_dir: str | Path,
        *,
        optimizers: Iterable[keras.optimizers.Optimizer] = (),
        max_consecutive_skips: int = 10,
    ) -> None:
        super().__init__()
        self.mode = check_on_nonfinite(mode)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.optimizers = list(optimizers)
        self.max_consecutive_skips = max_consecutive_skips
        self.epoch = 0
        self.skipped = 0
        self.consecutive = 0
        self.steps_this_epoch = 0
        self.skipped_this_epoch = 0
        self._snapshot: list[np.ndarray] | None = None

    def _state_variables(self) -> list[tf.Variable]:
        variables: dict[int, tf.Variable] = {}
        groups: list[Iterable[Any]] = [self.model.variables, self.model.metrics_variables]
        groups += [optimizer.variables for optimizer in self.optimizers]
        for group in groups:
            for variable in group:
                variables.setdefault(id(variable), variable)
        return list(variables.values())

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch
        self.steps_this_epoch = 0
        self.skipped_this_epoch = 0

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.mode == "skip-batch":
            self._snapshot = [np.array(v.numpy(), copy=True) for v in self._state_variables()]

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.steps_this_epoch += 1
        bad = nonfinite_logs(logs)
        if not bad:
            self.consecutive = 0
            return
        if self.mode == "skip-batch" and self._snapshot is not None and self.consecutive < self.max_consecutive_skips:
            for variable, value in zip(self._state_variables(), self._snapshot, strict=True):
                variable.assign(value)
            self.skipped += 1
            self.skipped_this_epoch += 1
            self.consecutive += 1
            print(f"epoch {self.epoch + 1}, step {batch + 1}: non-finite {_describe(bad)}: the step is undone")
            return
        raise NonFiniteLossError(self._message(bad, batch + 1))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        bad = nonfinite_logs(logs)
        if not bad and self.steps_this_epoch and self.skipped_this_epoch == self.steps_this_epoch:
            bad = {"every step's loss": math.nan}  # nothing was trained: no checkpoint for it
        if bad:  # before the epoch checkpoint (this callback comes first): the last good checkpoint stays
            raise NonFiniteLossError(self._message(bad, None))
        if self.skipped:
            print(f"epoch {epoch + 1}: {self.skipped} step(s) with a non-finite loss skipped so far")

    def _message(self, bad: dict[str, float], step: int | None) -> str:
        where = f"epoch {self.epoch + 1}, step {step}" if step is not None else f"the end of epoch {self.epoch + 1}"
        latest = tf.train.latest_checkpoint(str(self.checkpoint_dir))
        kept = (
            f"the last good checkpoint {latest} is kept (rerun the command to resume from it)"
            if latest
            else "no checkpoint was written yet"
        )
        repeated = f" after {self.consecutive} skipped steps in a row" if self.consecutive else ""
        return (
            f"non-finite training loss at {where}{repeated}: {_describe(bad)}; training stopped and {kept}; "
            "try a smaller learning rate, check the data, or pass --on-nonfinite skip-batch"
        )


def _describe(bad: Mapping[str, float]) -> str:
    return ", ".join(f"'{key}' = {value}" for key, value in bad.items())
