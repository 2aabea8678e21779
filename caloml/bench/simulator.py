"""Simulator benchmark: showers per second per core, including writing the HDF5 file.

The reference figure is 100 GeV electrons at perpendicular incidence into the 51 x 51 x 25 CLIC window,
written in the LCD layout (gzip, one event per chunk). GEANT4 takes about 17 s per such shower (the 3DGAN paper,
arXiv:2109.07388), which gives the speed-up factor. See ``docs/benchmarks.md``.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from caloml.sim.run import SimulationRequest, default_workers, iter_chunks, simulate_events, simulate_file

#: GEANT4 CPU time per 100 GeV electron shower in the CLIC ECAL (3DGAN paper, arXiv:2109.07388), seconds.
GEANT4_SECONDS_PER_SHOWER = 17.0


def benchmark_simulator(n_events: int = 1024, seed: int = 1, workers: int | None = None) -> dict[str, float]:
    """Measure the simulator; returns figures keyed ``name`` -> value with the unit in the name's suffix."""
    request = SimulationRequest("lcd-gen", "electron", n_events, seed, (100.0, 100.0), (1.5708, 1.5708))
    simulate_events(SimulationRequest("lcd-gen", "electron", 64, seed, (100.0, 100.0), (1.5708, 1.5708)))  # warm-up
    workers = workers or default_workers()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "one.h5"
        start = time.perf_counter()
        simulate_file(request, one, workers=1, progress=False)
        seconds = time.perf_counter() - start
        figures["sim_showers_per_s_per_core_with_file"] = n_events / seconds
        figures["sim_file_bytes_per_shower"] = os.path.getsize(one) / n_events
        start = time.perf_counter()
        for _ in iter_chunks(request, workers=1):
            pass
        figures["sim_showers_per_s_per_core_no_file"] = n_events / (time.perf_counter() - start)
        if workers > 1:
            # Four times the events, so that starting the worker processes (about a second) is amortized.
            many = replace(request, n_events=4 * n_events)
            start = time.perf_counter()
            simulate_file(many, Path(tmp) / "all.h5", workers=workers, progress=False)
            figures[f"sim_showers_per_s_{workers}_workers_with_file"] = many.n_events / (time.perf_counter() - start)
    figures["sim_speedup_vs_geant4_per_core"] = figures["sim_showers_per_s_per_core_with_file"] * (
        GEANT4_SECONDS_PER_SHOWER
    )
    return figures
