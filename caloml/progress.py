"""Progress reports fit for where they are shown: a terminal, a notebook or a log file.

:func:`progress_bar` picks one of three displays for a loop over ``total`` items:

- on a terminal (the stream is a tty): tqdm's live bar;
- in a Jupyter notebook: tqdm's widget bar (``ipywidgets``);
- anywhere else (a log file, a pipe, CI): :class:`ProgressLines` on stdout (the log, beside the command's own
  output; stderr stays for errors), one plain line every few percent or every 30 s with the count, the rate and
  the time left, and no escape codes.

The same object answers ``update(n)``, ``close()`` and ``with``. See ``docs/cli.md`` (progress and verbosity).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, TextIO

#: A log line at least every this many percent of the total...
LOG_EVERY_PERCENT = 10.0
#: ... and at least every this many seconds...
LOG_EVERY_SECONDS = 30.0
#: ... but not more often than every this many seconds.
LOG_MIN_SECONDS = 2.0


class Progress(Protocol):
    """What every display answers."""

    def update(self, n: int = 1) -> Any:
        """Count ``n`` more items done."""

    def close(self) -> None:
        """Finish the display (idempotent)."""

    def __enter__(self) -> Any: ...

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> Any: ...


def display_kind(stream: TextIO | None = None) -> str:
    """``"notebook"``, ``"terminal"`` or ``"log"``: where a progress report on ``stream`` (default stderr) is shown."""
    if in_notebook():
        return "notebook"
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "terminal" if callable(isatty) and isatty() else "log"


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel that can show widgets (``ipywidgets`` importable)."""
    if "ipykernel" not in sys.modules or "IPython" not in sys.modules:
        return False
    shell = sys.modules["IPython"].get_ipython()
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return False
    try:
        import ipywidgets  # noqa: F401 - only whether widgets can be shown
    except ImportError:
        return False
    return True


def progress_bar(
    total: int | None,
    *,
    desc: str,
    unit: str = "item",
    enabled: bool = True,
    stream: TextIO | None = None,
) -> Progress:
    """A progress display for ``total`` items (None: unknown) named ``desc``, counted in ``unit``.

    ``enabled=False`` shows nothing. ``stream``: where the bar or the lines go (default: a bar on stderr when it is
    a terminal, else lines on stdout).
    """
    if not enabled:
        return _NoProgress()
    kind = display_kind(stream)
    if kind == "log" and stream is None:
        stream = sys.stdout
    if kind == "notebook":
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm(total=total, desc=desc, unit=unit)  # type: ignore[no-any-return]
    if kind == "terminal":
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True)  # type: ignore[no-any-return]
    return ProgressLines(total, desc=desc, unit=unit, stream=stream)


class ProgressLines:
    """Plain progress lines for log files: ``desc: 40/100 showers (40%), 12.3 showers/s, 5 s left``.

    A line is written when the count passes the next multiple of ``every_percent`` of ``total`` (at most one every
    ``min_seconds``), or when ``every_seconds`` have passed since the last line (the only rule when ``total`` is
    None), and a final line with the total time on :meth:`close`. A ``postfix`` text (e.g. the current losses, or a
    function returning it, called only when a line is written) is appended to the line.
    """

    def __init__(
        self,
        total: int | None,
        *,
        desc: str,
        unit: str = "item",
        stream: TextIO | None = None,  # default: stdout
        every_percent: float = LOG_EVERY_PERCENT,
        every_seconds: float = LOG_EVERY_SECONDS,
        min_seconds: float = LOG_MIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream
        self.every_percent = every_percent
        self.every_seconds = every_seconds
        self.min_seconds = min_seconds
        self.clock = clock
        self.count = 0
        self.start = clock()
        self._last_line_time = self.start
        self._last_line_count = 0
        self._closed = False

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close(final=kind is None)

    def update(self, n: int = 1, postfix: str | Callable[[], str] = "") -> None:
        """Count ``n`` more items; write a line when a percent step or the time interval is passed."""
        self.count += n
        now = self.clock()
        since = now - self._last_line_time
        due = since >= self.every_seconds
        if self.total and self.every_percent > 0 and since >= self.min_seconds:
            step = self.total * self.every_percent / 100.0
            due = due or math.floor(self.count / step) > math.floor(self._last_line_count / step)
        if due and (self.total is None or self.count < self.total):
            self._write(self.line(now, postfix() if callable(postfix) else postfix))
            self._last_line_time, self._last_line_count = now, self.count

    def line(self, now: float, postfix: str = "") -> str:
        """The progress line at time ``now`` (the clock's seconds)."""
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        done = f"{self.count}/{self.total}" if self.total else f"{self.count}"
        parts = [f"{self.desc}: {done} {self.unit}s"]
        if self.total:
            parts[0] += f" ({100.0 * self.count / self.total:.0f}%)"
        parts.append(f"{format_rate(rate, self.unit)}")
        if self.total and rate > 0 and self.count < self.total:
            parts.append(f"{format_duration((self.total - self.count) / rate)} left")
        if postfix:
            parts.append(postfix)
        return ", ".join(parts)

    def close(self, postfix: str = "", *, final: bool = True) -> None:
        """Write the closing line (count, total time and rate) once; ``final=False`` (an error) writes none."""
        if self._closed:
            return
        self._closed = True
        if not final:
            return
        elapsed = max(self.clock() - self.start, 1e-9)
        text = f"{self.desc}: {self.count} {self.unit}s in {format_duration(elapsed)}"
        text += f", {format_rate(self.count / elapsed, self.unit)}"
        self._write(f"{text}, {postfix}" if postfix else text)

    def _write(self, text: str) -> None:
        stream = sys.stdout if self.stream is None else self.stream
        stream.write(text + "\n")
        stream.flush()


def format_duration(seconds: float) -> str:
    """``"42 s"``, ``"3 min 20 s"``, ``"2 h 05 min"``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_rate(per_second: float, unit: str) -> str:
    """``"12.3 showers/s"``, or ``"4.1 s/shower"`` below one per second."""
    if per_second >= 1 or per_second <= 0:
        return f"{per_second:.3g} {unit}s/s"
    return f"{1 / per_second:.3g} s/{unit}"


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        pass
