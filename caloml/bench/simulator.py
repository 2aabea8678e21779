"""Simulator benchmark: showers per second per core, including writing the HDF5 file.

The reference figure is 100 GeV electrons at perpendicular incidence into the 51 x 51 x 25 CLIC window,
written in the LCD layout (gzip, one event per chunk). GEANT4 takes about 17 s per such shower (the 3DGAN paper,
arXiv:2109.07388), which gives the speed-up factor. ``simulator_showers_per_s_per_core`` repeats the
with-file figure under the name of the issue's target; ``sim_showers_per_cpu_s_with_file`` is the same per
second of the process's CPU time, which other jobs on the machine do not inflate.

:func:`benchmark_filtered_simulation` prices the e-vs-pi charged pions (HCAL / ECAL < 0.1, ``lcd-rec``, 10-510 GeV):
CPU time per *passing* pion of the plain simulation followed by the cut, and of
:func:`caloml.sim.filtered.simulate_filtered_batch`, on the same seeds (the same pions pass). See
``docs/benchmarks.md``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from caloml.data.transforms import MaxHcalEcalRatio
from caloml.sim.engine import simulate_batch
from caloml.sim.filtered import simulate_filtered_batch
from caloml.sim.layouts import LAYOUTS
from caloml.sim.particles import sample_primaries
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
        start, cpu = time.perf_counter(), time.process_time()
        simulate_file(request, one, workers=1, progress=False)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        figures["sim_showers_per_s_per_core_with_file"] = n_events / seconds
        # CPU time of this process: the steadier figure on a shared machine (the wall clock counts waiting)
        figures["sim_showers_per_cpu_s_with_file"] = n_events / cpu
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
    figures["simulator_showers_per_s_per_core"] = figures["sim_showers_per_s_per_core_with_file"]
    figures["sim_speedup_vs_geant4_per_core"] = figures["sim_showers_per_s_per_core_with_file"] * (
        GEANT4_SECONDS_PER_SHOWER
    )
    return figures


def benchmark_filtered_simulation(
    n_pions: int = 2048, seed: int = 1, max_hcal_over_ecal: float = 0.1, chunk: int = 32
) -> dict[str, float]:
    """CPU seconds per passing charged pion, plain (simulate every pion's cells, then cut) and filtered.

    ``lcd-rec`` pions in the layout's energy and angle ranges, ``n_pions`` in chunks of ``chunk``, each chunk
    from its own seeded generator; both ways see the same generator states, so the same pions pass (checked).
    The plain figure leaves out the writing of the rejected pions, which the plain workflow also pays.
    Returns ``filtered_sim_passing_fraction``, ``filtered_sim_cpu_s_per_passing_pion_before`` / ``_after`` and
    their ratio ``filtered_sim_speedup``.
    """
    layout = LAYOUTS["lcd-rec"]
    seeds = np.random.SeedSequence(seed).spawn(-(-n_pions // chunk))
    batches = []
    for k, chunk_seed in enumerate(seeds):
        size = min(chunk, n_pions - k * chunk)
        rng = np.random.default_rng(chunk_seed)
        primaries = sample_primaries(
            rng,
            size,
            energy_range_gev=layout.energy_range_gev,
            theta_range_rad=layout.theta_range_rad,
            log_uniform_energy=layout.log_uniform_energy,
        )
        batches.append((rng.bit_generator.state, primaries))
    cut = MaxHcalEcalRatio(max_hcal_over_ecal)
    simulate_batch(np.random.default_rng(0), layout, "chpi", batches[0][1])  # warm-up

    def generator(state: Mapping[str, Any]) -> np.random.Generator:
        rng = np.random.default_rng()
        rng.bit_generator.state = state
        return rng

    start, passing_before = time.process_time(), 0
    for state, primaries in batches:
        events = simulate_batch(generator(state), layout, "chpi", primaries)
        passing_before += int(np.count_nonzero(cut.keep(events)))
    before = time.process_time() - start
    start, passing_after = time.process_time(), 0
    for state, primaries in batches:
        events, _ = simulate_filtered_batch(generator(state), layout, "chpi", primaries, max_hcal_over_ecal)
        passing_after += len(events["ECAL_E"])
    after = time.process_time() - start
    if passing_after != passing_before:  # pragma: no cover - the pre-selection is a necessary condition
        raise RuntimeError(f"filtered simulation kept {passing_after} pions, the plain one {passing_before}")
    per = max(passing_before, 1)
    return {
        "filtered_sim_pions": float(n_pions),
        "filtered_sim_passing_pions": float(passing_before),
        "filtered_sim_passing_fraction": passing_before / n_pions,
        "filtered_sim_cpu_ms_per_pion_before": 1e3 * before / n_pions,
        "filtered_sim_cpu_ms_per_pion_after": 1e3 * after / n_pions,
        "filtered_sim_cpu_s_per_passing_pion_before": before / per,
        "filtered_sim_cpu_s_per_passing_pion_after": after / per,
        "filtered_sim_speedup": before / after,
    }
