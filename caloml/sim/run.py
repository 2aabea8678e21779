"""Simulating whole data sets: seeded chunks, parallel over cores, written in order to the file layouts.

Every chunk of ``chunk_events`` events draws from its own generator, spawned from the request's seed, so a
file depends only on the request (same seed and chunk size, same file), whatever the number of worker processes.
See ``docs/simulator.md``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

import caloml
from caloml.cli_args import check_memory
from caloml.data.calochallenge import CaloChallengeWriter
from caloml.data.crystal import CrystalWriter
from caloml.data.hdf5 import provenance_attrs
from caloml.data.lcd import LCDWriter
from caloml.errors import CalomlError
from caloml.progress import progress_bar
from caloml.sim.engine import simulate_batch
from caloml.sim.filtered import simulate_filtered_batch
from caloml.sim.layouts import DEGREE, LAYOUTS
from caloml.sim.particles import PARTICLES, Primaries, sample_primaries

#: Incidence angles the LCD windows can hold: beyond them the barycentre leaves the binned margin.
LCD_THETA_LIMITS_RAD = (50.0 * DEGREE, 130.0 * DEGREE)
#: Lowest primary energy of the parametrization (GeV).
MIN_ENERGY_GEV = 0.5
#: Highest primary energy (GeV): the parametrization's profiles are fitted far below; beyond, they are extrapolated.
MAX_ENERGY_GEV = 10_000.0
#: Peak memory of the simulation per shower and GeV of primary energy (bytes), measured on 32-shower chunks at
#: 1 TeV: about 9 kB for the sampling calorimeters, 23 kB for the crystal array (its optical photons); the
#: estimates below use these lower figures, so that a refusal is certain to be right.
MEMORY_PER_SHOWER_GEV_BYTES = {"lcd": 8_000.0, "calochallenge": 7_500.0, "crystal": 20_000.0}


@dataclass(frozen=True)
class SimulationRequest:
    """What to simulate; ranges left as None take the geometry's defaults (see ``caloml.sim.layouts``).

    Attributes:
        geometry: ``lcd-gen``, ``lcd-rec``, ``calochallenge-2`` or ``calochallenge-3``.
        particle: ``electron``, ``photon``, ``pi0`` or ``chpi``.
        n_events: number of showers.
        seed: seed of every random draw.
        energy_range_gev: primary energy range (equal ends: a fixed energy), GeV.
        theta_range_rad: incidence-angle range (equal ends: a fixed angle), radians; 90 degrees is perpendicular.
        log_uniform_energy: energy spectrum, log-uniform instead of uniform.
        chunk_events: events simulated together; each chunk draws from its own generator, so this is part of
            the random stream (a different value gives different showers for the same seed). 32 keeps the
            work in the CPU caches; 32 showers of 500 GeV need about 0.3 GB.
        energy_points_gev: a grid of primary energies (GeV), each shower taking one at random; replaces the range.
    """

    geometry: str
    particle: str
    n_events: int
    seed: int
    energy_range_gev: tuple[float, float] | None = None
    theta_range_rad: tuple[float, float] | None = None
    log_uniform_energy: bool | None = None
    chunk_events: int = 32
    energy_points_gev: tuple[float, ...] | None = None
    resolved: dict = field(default_factory=dict, compare=False, repr=False)

    def resolve(self) -> SimulationRequest:
        """A copy with the defaults filled in and every value checked (CalomlError on a bad one)."""
        if self.geometry not in LAYOUTS:
            raise CalomlError(f"unknown geometry {self.geometry!r}; choose one of {', '.join(LAYOUTS)}")
        if self.particle not in PARTICLES:
            raise CalomlError(f"unknown particle {self.particle!r}; choose one of {', '.join(PARTICLES)}")
        if self.n_events < 1:
            raise CalomlError(f"the number of events must be positive, got {self.n_events}")
        if self.chunk_events < 1:
            raise CalomlError(f"chunk_events must be positive, got {self.chunk_events}")
        layout = LAYOUTS[self.geometry]
        points = None
        if self.energy_points_gev is not None:
            points = tuple(sorted(float(e) for e in self.energy_points_gev))
            if not points or not all(np.isfinite(points)) or points[0] < MIN_ENERGY_GEV:
                raise CalomlError(f"energy points {points} GeV are invalid: need finite values >= {MIN_ENERGY_GEV} GeV")
        low_e, high_e = (points[0], points[-1]) if points else (self.energy_range_gev or layout.energy_range_gev)
        low_t, high_t = self.theta_range_rad or layout.theta_range_rad
        energy = (float(low_e), float(high_e))
        theta = (float(low_t), float(high_t))
        if not all(np.isfinite(energy)) or energy[0] < MIN_ENERGY_GEV or energy[1] < energy[0]:
            raise CalomlError(f"energy range {energy} GeV is invalid: need {MIN_ENERGY_GEV} GeV <= low <= high, finite")
        _check_memory(self.geometry, min(self.chunk_events, self.n_events), energy[1], chunks=1)
        if energy[1] > MAX_ENERGY_GEV:
            raise CalomlError(
                f"energy {energy[1]:g} GeV is above the simulator's range ({MIN_ENERGY_GEV:g} to "
                f"{MAX_ENERGY_GEV:g} GeV): the shower parametrization is not valid there"
            )
        if layout.file_layout == "crystal" and self.particle not in ("electron", "photon"):
            raise CalomlError(f"the crystal array simulates electrons and photons, not {self.particle!r}")
        if layout.file_layout in ("calochallenge", "crystal"):
            if theta != (90.0 * DEGREE, 90.0 * DEGREE):
                raise CalomlError(f"the {self.geometry} geometry is perpendicular: theta must be pi/2")
        elif not (LCD_THETA_LIMITS_RAD[0] <= theta[0] <= theta[1] <= LCD_THETA_LIMITS_RAD[1]):
            raise CalomlError(
                f"theta range {theta} rad is outside the LCD window's reach "
                f"[{LCD_THETA_LIMITS_RAD[0]:.3f}, {LCD_THETA_LIMITS_RAD[1]:.3f}] rad"
            )
        log_uniform = layout.log_uniform_energy if self.log_uniform_energy is None else self.log_uniform_energy
        return SimulationRequest(
            self.geometry,
            self.particle,
            self.n_events,
            self.seed,
            energy,
            theta,
            log_uniform,
            self.chunk_events,
            energy_points_gev=points,
        )

    def to_config(self) -> dict:
        """The resolved request as a JSON-serializable dict, with the simulator's version."""
        config = asdict(self.resolve())
        config.pop("resolved")
        if config["energy_points_gev"] is None:  # files of the energy-range layouts keep their configuration
            config.pop("energy_points_gev")
        config["simulator"] = "caloml.sim (GFlash parametrization)"
        config["caloml_version"] = caloml.__version__
        return config


def _check_memory(geometry: str, showers: int, energy_gev: float, chunks: int, available: int | None = None) -> None:
    per_gev = MEMORY_PER_SHOWER_GEV_BYTES[LAYOUTS[geometry].file_layout]
    what = f"simulating {chunks} x {showers} showers of {energy_gev:g} GeV at once"
    hint = "fewer --workers, or lower energies" if chunks > 1 else "lower energies"
    check_memory(chunks * showers * energy_gev * per_gev, what, available, hint)


def check_simulation_memory(request: SimulationRequest, workers: int, available_bytes: int | None = None) -> None:
    """Refuse (CalomlError, with the number) a request whose chunks in flight would exceed the machine's memory.

    ``workers`` chunks of ``chunk_events`` showers at the highest energy are simulated at once (the machine's
    physical memory unless ``available_bytes`` is given).
    """
    request = request.resolve()
    assert request.energy_range_gev is not None
    n_chunks = -(-request.n_events // request.chunk_events)
    chunks = max(1, min(workers, n_chunks))
    showers = min(request.chunk_events, request.n_events)
    _check_memory(request.geometry, showers, request.energy_range_gev[1], chunks, available_bytes)
    # the plan holds one seed sequence (about 0.5 kB) per chunk
    check_memory(n_chunks * 512, f"planning {n_chunks} chunks of {request.chunk_events} showers", available_bytes)


def _exit_with(parent_pid: int, period_s: float = 1.0) -> None:
    """Worker-side watchdog: end this process as soon as the process ``parent_pid`` is gone."""
    while True:
        time.sleep(period_s)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # pragma: no cover - the pid was reused by another user's process
            os._exit(1)


def _die_with_parent(parent_pid: int) -> None:
    """Initializer of the worker processes: they die with the command that started them, even after a SIGKILL.

    The workers are children of multiprocessing's fork server, not of the command, so Linux's parent-death signal
    cannot reach them; a daemon thread in each worker watches the command's process id instead.
    """
    threading.Thread(target=_exit_with, args=(parent_pid,), name="caloml-die-with-parent", daemon=True).start()


def _simulate_chunk(request: SimulationRequest, chunk_seed: np.random.SeedSequence, n_events: int) -> dict:
    rng = np.random.default_rng(chunk_seed)
    return simulate_batch(rng, LAYOUTS[request.geometry], request.particle, _chunk_primaries(request, rng, n_events))


def _chunk_primaries(request: SimulationRequest, rng: np.random.Generator, n_events: int) -> Primaries:
    """The primaries of one chunk, the first draws of its generator."""
    assert request.energy_range_gev is not None, "resolve() first"
    assert request.theta_range_rad is not None, "resolve() first"
    primaries = sample_primaries(
        rng,
        n_events,
        energy_range_gev=request.energy_range_gev,
        theta_range_rad=request.theta_range_rad,
        log_uniform_energy=bool(request.log_uniform_energy),
    )
    if request.energy_points_gev:
        energy = rng.choice(np.asarray(request.energy_points_gev), n_events)
        primaries = Primaries(energy, primaries.theta_rad, primaries.phi_rad)
    return primaries


def _chunk_plan(request: SimulationRequest) -> list[tuple[np.random.SeedSequence, int]]:
    n_chunks = -(-request.n_events // request.chunk_events)
    seeds = np.random.SeedSequence(request.seed).spawn(n_chunks)
    sizes = [request.chunk_events] * (n_chunks - 1) + [request.n_events - request.chunk_events * (n_chunks - 1)]
    return list(zip(seeds, sizes, strict=True))


def default_workers() -> int:
    """Cores available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _main_module_importable() -> bool:
    """Whether worker processes can re-import ``__main__`` (not so for code piped to ``python -``)."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or os.path.exists(main_file)


def iter_chunks(request: SimulationRequest, workers: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Simulated chunks in order (energies in GeV, the layout's keys); ``workers`` > 1 uses processes."""
    request = request.resolve()
    check_simulation_memory(request, workers or default_workers())
    plan = _chunk_plan(request)
    workers = min(workers or default_workers(), len(plan))
    if workers <= 1 or not _main_module_importable():
        for seed, size in plan:
            yield _simulate_chunk(request, seed, size)
        return
    # forkserver: safe even when the parent has imported TensorFlow; at most 2 chunks per worker in flight.
    # the workers die with this process, even after a SIGKILL (_die_with_parent)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("forkserver"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    with pool:
        pending: deque[Future] = deque()
        for seed, size in plan:
            pending.append(pool.submit(_simulate_chunk, request, seed, size))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def simulate_events(request: SimulationRequest, workers: int | None = 1) -> dict[str, np.ndarray]:
    """All events of ``request`` in memory (GeV, the layout's keys): for notebooks and tests."""
    chunks = list(iter_chunks(request, workers))
    return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}


def simulate_filtered_events(
    request: SimulationRequest, max_hcal_over_ecal: float
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The events of ``request`` (LCD layouts) with ``HCAL_E < max_hcal_over_ecal * ECAL_E``, and their indices.

    The same events, bit for bit, as :func:`simulate_events` followed by the cut (the e-vs-pi charged pions:
    ``max_hcal_over_ecal=0.1``), at the price of what passes: only the candidates of the pre-selection of
    :func:`caloml.sim.filtered.simulate_filtered_batch` are binned into cells. One process; returns the passing
    events (GeV, the layout's keys) and their indices (K,) among the request's ``n_events``.
    """
    request = request.resolve()
    parts, indices, offset = [], [], 0
    for seed, size in _chunk_plan(request):
        rng = np.random.default_rng(seed)
        primaries = _chunk_primaries(request, rng, size)
        events, passing = simulate_filtered_batch(
            rng, LAYOUTS[request.geometry], request.particle, primaries, max_hcal_over_ecal
        )
        parts.append(events)
        indices.append(offset + passing)
        offset += size
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}, np.concatenate(indices)


def simulate_file(
    request: SimulationRequest,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Simulate ``request`` into the HDF5 file ``out`` in the geometry's real layout, atomically.

    The resolved request (seed included) is stored as the JSON root attribute ``caloml_config``.
    Returns that configuration with the output path.
    """
    request = request.resolve()
    check_simulation_memory(request, workers or default_workers())
    config = request.to_config()
    layout = LAYOUTS[request.geometry]
    writer_class = {"lcd": LCDWriter, "calochallenge": CaloChallengeWriter, "crystal": CrystalWriter}[
        layout.file_layout
    ]
    attrs = provenance_attrs(config)
    bar = progress_bar(request.n_events, unit="shower", desc=f"simulate {request.particle}", enabled=progress)
    with writer_class(Path(out), overwrite=overwrite, attrs=attrs) as writer, bar:
        for chunk in iter_chunks(request, workers):
            writer.append(chunk)
            bar.update(len(next(iter(chunk.values()))))
    return {**config, "out": str(out)}
