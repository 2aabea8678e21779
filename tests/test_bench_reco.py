"""The Triforce inference benchmark on tiny networks: figure names, positive finite rates, skips, units."""

from __future__ import annotations

import math

import pytest

from caloml.bench.__main__ import _unit, print_figures
from caloml.bench.reco import benchmark_reco

TINY = {
    "dnn": {"n_hidden_layers": 1, "hidden_units": 8},
    "cnn": {"ecal_filters": 1, "ecal_kernel": (2, 2, 2), "hcal_filters": 1, "n_hidden_layers": 1, "hidden_units": 8},
    "googlenet": {"width_multiplier": 0.02, "dense_units": 8},
}


def test_reco_benchmark_figures(capsys: pytest.CaptureFixture[str]) -> None:
    reported: list[str] = []
    figures = benchmark_reco(
        batches=(1, 4),
        repeats=2,
        network_kwargs=TINY,
        bdt_rounds=5,
        xgb_rounds=5,
        baseline_train_events=32,
        report=lambda name, value: reported.append(name),
    )
    for model in ("dnn", "cnn", "googlenet", "bdt", "xgb", "linreg", "expert_features"):
        for batch in (1, 4):
            rate = figures[f"{model}_batch{batch}_events_per_s"]
            assert isinstance(rate, float)
            assert math.isfinite(rate)
            assert rate > 0
            assert figures[f"{model}_cpu_ms_per_event_batch{batch}"] >= 0
    assert figures["dnn_parameters"] > 0
    assert figures["bdt_trees"] == 5
    assert figures["xgb_trees"] == 5
    assert reported == list(figures)  # each figure reported as it was measured
    print_figures(figures)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("dnn_batch1_events_per_s: ") and line.endswith(" events/s") for line in lines)
    assert _unit("googlenet_cpu_ms_per_event_batch1000") == "ms"


def test_over_long_batches_are_skipped_with_the_reason() -> None:
    figures = benchmark_reco(
        batches=(1, 1_000_000),
        repeats=1,
        network_kwargs=TINY,
        networks=("dnn",),
        baselines=False,
        max_call_seconds=1.0,
    )
    assert figures["dnn_batch1_events_per_s"] > 0
    note = str(figures["dnn_batch1000000_events_per_s"])
    assert note.startswith("skipped (one call predicted")
    assert "--max-call-seconds" in note
    with pytest.raises(ValueError, match="unknown networks"):
        benchmark_reco(networks=("resnet",))
