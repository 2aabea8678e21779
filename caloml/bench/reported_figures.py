"""The figures of a benchmark, each reported as soon as it is measured (long benchmarks print as they go)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ReportedFigures"]


class ReportedFigures(dict[str, float | str]):
    """name -> value (a number, or a text such as why a figure was skipped); each is passed to ``report`` when set."""

    def __init__(self, report: Callable[[str, float | str], None] | None) -> None:
        super().__init__()
        self._report = report

    def __setitem__(self, name: str, value: float | str) -> None:
        super().__setitem__(name, value)
        if self._report is not None:
            self._report(name, value)
