"""The speed benchmarks of the simulator, the filtered simulation and the expert features, at tiny sizes."""

from __future__ import annotations

import pytest

from caloml.bench.__main__ import _unit
from caloml.bench.features import benchmark_features
from caloml.bench.simulator import benchmark_filtered_simulation


def test_features_benchmark() -> None:
    figures = benchmark_features(n_events=6, repeats=2)
    assert figures["expert_features_events_per_s"] > 0
    assert figures["expert_features_cpu_ms_per_event"] >= 0
    assert _unit("expert_features_events_per_s") == "events/s"


def test_filtered_simulation_benchmark_prices_the_same_passing_pions() -> None:
    """Both ways see the same generator states (the benchmark raises if they keep different pions)."""
    figures = benchmark_filtered_simulation(n_pions=40, seed=2, max_hcal_over_ecal=1.0, chunk=16)
    assert figures["filtered_sim_pions"] == 40
    assert 0 < figures["filtered_sim_passing_pions"] < 40
    assert figures["filtered_sim_passing_fraction"] == pytest.approx(figures["filtered_sim_passing_pions"] / 40)
    per = figures["filtered_sim_passing_pions"]
    assert figures["filtered_sim_cpu_s_per_passing_pion_before"] == pytest.approx(
        40 * figures["filtered_sim_cpu_ms_per_pion_before"] / 1e3 / per
    )
    assert _unit("filtered_sim_cpu_s_per_passing_pion_after") == "CPU-s"
