"""Training progress fit for where it is shown: Keras' bar on a terminal or in a notebook, plain lines in a log.

:class:`TrainingProgress` replaces Keras' own progress display (``fit`` runs with ``verbose=0``):

- ``"bar"``: Keras' progress bar, finished at the epoch's last step, so that what the next callbacks print (the
  validation summary) starts on its own line;
- ``"lines"`` (stdout is not a terminal: a log file): an ``Epoch i/N`` line, a plain line every few percent of the
  epoch or every 30 s with the step rate, the time left and the running losses, and one line per epoch; no escape
  codes;
- ``"epochs"`` (``runtime.progress: false``): the line per epoch only.

See ``docs/training.md`` (logs and TensorBoard).
"""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

import keras

from caloml.progress import ProgressLines, in_notebook

#: Progress lines inside an epoch: at each of these percent steps (at most one line per ``MIN_SECONDS``)...
EVERY_PERCENT = 25.0
#: ... or every this many seconds.
EVERY_SECONDS = 30.0


def progress_mode(progress: bool, stream: TextIO | None = None) -> str:
    """``"bar"``, ``"lines"`` or ``"epochs"`` for a run with ``runtime.progress = progress`` printing to ``stream``
    (default stdout, where Keras prints)."""
    if not progress:
        return "epochs"
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "bar" if in_notebook() or (callable(isatty) and isatty()) else "lines"


def metrics_text(logs: dict[str, Any] | None) -> str:
    """``"d_loss=0.6931, g_loss=1.204"``: the logged values with 4 significant digits."""
    parts = []
    for name, value in (logs or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        parts.append(f"{name}={number:.4g}" if math.isfinite(number) else f"{name}={number}")
    return ", ".join(parts)


class TrainingProgress(keras.callbacks.Callback):
    """The progress display of ``fit`` in one of the modes of :func:`progress_mode` (see the module docstring).

    ``stream``: where the lines go (default stdout); Keras' bar always writes to stdout.
    """

    def __init__(self, mode: str, stream: TextIO | None = None) -> None:
        super().__init__()
        if mode not in ("bar", "lines", "epochs"):
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode = mode
        self.stream = stream
        self._bar: keras.utils.Progbar | None = None
        self._lines: ProgressLines | None = None
        self._epoch = 0

    @property
    def _out(self) -> TextIO:
        # Keras' bar writes to sys.stdout: its epoch header goes there too
        return sys.stdout if self.stream is None or self.mode == "bar" else self.stream

    def _steps(self) -> int | None:
        steps = self.params.get("steps") if self.params else None
        return int(steps) if steps else None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        epochs = self.params.get("epochs", "?") if self.params else "?"
        desc = f"epoch {epoch + 1}/{epochs}"
        if self.mode == "bar":
            self._out.write(f"Epoch {epoch + 1}/{epochs}\n")
            self._out.flush()
            self._bar = keras.utils.Progbar(target=self._steps(), verbose=1, unit_name="step")
        else:
            every_percent = EVERY_PERCENT if self.mode == "lines" else 0.0
            every_seconds = EVERY_SECONDS if self.mode == "lines" else math.inf
            self._lines = ProgressLines(
                self._steps(),
                desc=desc,
                unit="step",
                stream=self._out,
                every_percent=every_percent,
                every_seconds=every_seconds,
            )

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        steps = self._steps()
        last = steps is not None and batch + 1 >= steps
        if self._bar is not None:
            values = [(k, float(v)) for k, v in (logs or {}).items() if _is_number(v)]
            self._bar.update(batch + 1, values, finalize=last)
            if last:
                self._bar = None
        elif self._lines is not None:
            self._lines.update(1, postfix=lambda: metrics_text(logs))
            if last:  # before the callbacks' epoch-end lines (the validation summary)
                self._lines.close(postfix=metrics_text(logs))
                self._lines = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # an epoch cut short (its data ran out) ends here
        if self._bar is not None:
            self._bar.update(self._bar._seen_so_far, finalize=True)
            self._bar = None
        if self._lines is not None:
            self._lines.close(postfix=metrics_text(logs))
            self._lines = None


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
