"""Expert-feature benchmark: Triforce expert features computed from the full ECAL and HCAL windows, events per second.

:func:`benchmark_features` times :func:`caloml.data.lcd_features.expert_features` on float32 batches of random
showers (exponential cell energies, every cell non-zero: the memory read is the same as for real showers, which are
stored dense) of the full 51 x 51 x 25 ECAL and 11 x 11 x 60 HCAL windows, in GeV, one core. Figures:
``expert_features_events_per_s`` (wall clock, best of the timed calls) and ``expert_features_cpu_ms_per_event``
(process CPU time, the steadier figure on a shared machine). See ``docs/benchmarks.md``.
"""

from __future__ import annotations

import time

import numpy as np

from caloml.data.lcd_features import expert_features
from caloml.geometry import CLIC_ECAL, CLIC_HCAL

__all__ = ["benchmark_features"]


def benchmark_features(n_events: int = 1000, seed: int = 1, repeats: int = 5) -> dict[str, float]:
    """Time ``repeats`` calls of the expert features on one batch of ``n_events`` random showers, after a warm-up.

    Returns ``expert_features_events_per_s`` (best wall-clock call) and ``expert_features_cpu_ms_per_event``
    (best process CPU time per event).
    """
    rng = np.random.default_rng(seed)
    ecal = rng.exponential(0.01, (n_events, *CLIC_ECAL.shape)).astype(np.float32)
    hcal = rng.exponential(0.01, (n_events, *CLIC_HCAL.shape)).astype(np.float32)
    expert_features(ecal[:8], hcal[:8])  # warm-up
    best_wall = best_cpu = float("inf")
    for _ in range(max(1, repeats)):
        wall, cpu = time.perf_counter(), time.process_time()
        expert_features(ecal, hcal)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return {
        "expert_features_events_per_s": n_events / best_wall,
        "expert_features_cpu_ms_per_event": 1e3 * best_cpu / n_events,
    }
