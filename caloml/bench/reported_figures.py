"""The figures of a benchmark, each reported as soon as it is measured (long benchmarks print as they go), and the
sweep over batch sizes that the model benchmarks share: a batch whose one call is predicted, from the previous
batch size, to take too long is skipped with a text figure. See ``docs/benchmarks.md``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["SKIP_WARM_UP_SECONDS", "ReportedFigures", "sweep_batches"]

#: Calls predicted to take longer than this (seconds) are timed without a warm-up call (already traced).
SKIP_WARM_UP_SECONDS = 30.0


class ReportedFigures(dict[str, float | str]):
    """name -> value (a number, or a text such as why a figure was skipped); each is passed to ``report`` when set."""

    def __init__(self, report: Callable[[str, float | str], None] | None) -> None:
        super().__init__()
        self._report = report

    def __setitem__(self, name: str, value: float | str) -> None:
        super().__setitem__(name, value)
        if self._report is not None:
            self._report(name, value)


def sweep_batches(
    figures: dict[str, float | str],
    batches: Sequence[int],
    measure: Callable[[int, int, bool], float],
    skipped_name: Callable[[int], str],
    *,
    repeats: int,
    max_call_seconds: float,
) -> None:
    """Measure each batch size, smallest first, predicting each call's duration from the previous batch size.

    ``measure(batch, timed_calls, warm_up)`` times ``timed_calls`` calls (after one untimed warm-up call when
    ``warm_up``), records its own figures and returns the wall seconds of one call. The first batch size gets
    ``repeats`` calls and a warm-up; a later one gets as many calls as fit in ``max_call_seconds`` (at least 1, at
    most ``repeats``) and a warm-up only when its predicted call is under :data:`SKIP_WARM_UP_SECONDS`. A batch
    whose one call is predicted over ``max_call_seconds`` is not run: the figure ``skipped_name(batch)`` says why.
    """
    seconds_per_event: float | None = None
    for batch in sorted(batches):
        predicted = None if seconds_per_event is None else seconds_per_event * batch
        if predicted is not None and predicted > max_call_seconds:
            figures[skipped_name(batch)] = (
                f"skipped (one call predicted to take {predicted:.0f} s from the smaller batch, over the"
                f" {max_call_seconds:.0f} s limit; raise --max-call-seconds to measure it)"
            )
            continue
        timed = repeats if predicted is None else max(1, min(repeats, int(max_call_seconds // max(predicted, 1e-9))))
        warm_up = predicted is None or predicted <= SKIP_WARM_UP_SECONDS
        seconds_per_event = measure(batch, timed, warm_up) / batch
