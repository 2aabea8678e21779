"""The batch-size sweep the model benchmarks share: predictions from the previous batch, skips, repeats, warm-ups."""

from __future__ import annotations

from caloml.bench.reported_figures import SKIP_WARM_UP_SECONDS, ReportedFigures, sweep_batches


def test_sweep_predicts_from_the_smaller_batch_and_skips_over_long_calls() -> None:
    reported: list[str] = []
    figures = ReportedFigures(lambda name, value: reported.append(name))
    calls: list[tuple[int, int, bool]] = []

    def measure(batch: int, timed_calls: int, warm_up: bool) -> float:
        calls.append((batch, timed_calls, warm_up))
        figures[f"b{batch}_events_per_s"] = 100.0
        return 0.01 * batch  # 10 ms per event

    sweep_batches(
        figures, [1000, 1, 100, 10000], measure, lambda b: f"b{b}_events_per_s", repeats=3, max_call_seconds=5
    )
    # batch 1: first, 3 calls and a warm-up; 100: predicted 1 s; 1000: predicted 10 s > 5 s, skipped; 10000:
    # predicted from batch 100's 10 ms per event, 100 s, skipped too
    assert calls == [(1, 3, True), (100, 3, True)]
    assert isinstance(figures["b1000_events_per_s"], str)
    assert "predicted to take 10 s" in figures["b1000_events_per_s"]
    assert "b10000_events_per_s" in figures
    assert reported == ["b1_events_per_s", "b100_events_per_s", "b1000_events_per_s", "b10000_events_per_s"]


def test_sweep_fits_the_repeats_in_the_time_limit_and_skips_the_warm_up_of_long_calls() -> None:
    figures: dict[str, float | str] = {}
    calls: list[tuple[int, int, bool]] = []

    def measure(batch: int, timed_calls: int, warm_up: bool) -> float:
        calls.append((batch, timed_calls, warm_up))
        return 1.0 * batch  # 1 s per event

    limit = 100.0
    sweep_batches(figures, [1, 40], measure, str, repeats=5, max_call_seconds=limit)
    assert SKIP_WARM_UP_SECONDS < 40
    assert calls == [(1, 5, True), (40, 2, False)]  # 100 s // 40 s = 2 timed calls, no warm-up
    assert figures == {}
