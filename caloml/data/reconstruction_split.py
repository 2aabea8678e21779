"""The data split of the reconstruction runs, shared by the Triforce networks and the baselines.

The networks (:mod:`caloml.tasks.triforce`) and the baselines (:mod:`caloml.tasks.baselines`) are compared on the
same test events; this module is the one place that decides them: the data section both share
(:class:`ReconstructionData`), the default data request of one particle type (:func:`default_data_request`) and its
size bound (:func:`check_default_data_size`), the fraction rule (:func:`check_split_fractions`), the split of one
source (:func:`split_source`: ``split_indices(N, fractions, seed=1000 seed + k)`` for source ``k``, then the task
filters and any further cut) and the split record it gives (:func:`make_split_record`, written as
``RUN/test_events.json`` by :mod:`caloml.data.split_record`). See ``docs/reconstruction.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from caloml.data.reconstruction_tasks import TASKS, ReconstructionTask, class_labels, filter_mask, split_indices
from caloml.data.split_record import INDEX_RULE, SPLIT_FILE, SPLIT_FORMAT, SplitRecord, SplitSource
from caloml.errors import CalomlError
from caloml.particles import PDG_ID
from caloml.sim.run import SimulationRequest

__all__ = [
    "MAX_SIMULATED_SHOWERS",
    "PAPER_SPLIT_DATA",
    "SPLITS",
    "SPLIT_FILE",
    "DefaultDataSettings",
    "ReconstructionData",
    "SourceSplit",
    "check_default_data_size",
    "check_split_fractions",
    "default_data_request",
    "default_showers",
    "describe_filters",
    "filter_counts_line",
    "make_split_record",
    "single_class",
    "source_entry",
    "split_source",
    "task_of_particle",
]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: Default bound on the showers the default data may simulate per run (all particles together): the simulator makes
#: about 300 showers per second per core and an lcd-rec shower holds about 0.3 MB of cells before compression, so
#: 2,000,000 showers cost about 1.9 core-hours and up to 600 GB of cells.
MAX_SIMULATED_SHOWERS = 2_000_000
#: The data-section settings of the reconstruction papers' samples, the networks' and the baselines' "paper" presets
#: alike: 40% training, 10% validation and 40% test events of every source, and 20 charged pions simulated per
#: requested one (few pass the HCAL/ECAL < 0.1 filter).
PAPER_SPLIT_DATA: dict[str, Any] = {"simulation_factor": {"chpi": 20.0}, "split_fractions": [0.4, 0.1, 0.4]}


# ------------------------------------------------------------------------------------------------- default data
class DefaultDataSettings(Protocol):
    """The data-section fields the default data depends on (the networks' and the baselines' data sections)."""

    events_per_particle: int
    simulation_factor: dict[str, float]
    energy_range_gev: tuple[float, float]
    simulation_seed: int
    max_simulated_showers: int


@dataclass
class ReconstructionData:
    """Data section of the reconstruction runs (the networks' and the baselines'): the same settings give the same
    default data and the same test events.

    Attributes:
        files: LCD HDF5 files or TFRecord directories; empty: simulate (once, cached) the default data.
        events_per_particle: showers per particle type of the default data (before the split and the filters).
        simulation_factor: per particle type, a factor on ``events_per_particle`` for the default data (charged
            pions 20: few of the simulator's pass the HCAL/ECAL < 0.1 filter, 0.4-0.75%).
        energy_range_gev: primary energies of the default data, GeV.
        simulation_seed: seed of the default data (particle ``k`` of its task uses ``100 s + k``).
        split_fractions: training, validation and test fractions of every source (before the filters), each > 0.
        split_seed: seed of the split (source ``k`` uses ``1000 split_seed + k``), independent of ``runtime.seed``.
        max_simulated_showers: the most showers the default data may simulate in all (a larger request is refused
            with a one-line error, :func:`check_default_data_size`).
        resample: ``none`` (CLIC granularity), ``atlas`` or ``cms``: the ECAL granularity the run trains on
            (:mod:`caloml.data.resampling`).
    """

    files: list[str] = field(default_factory=list)
    events_per_particle: int = 5000
    simulation_factor: dict[str, float] = field(default_factory=lambda: {"chpi": 20.0})
    energy_range_gev: tuple[float, float] = (10.0, 510.0)
    simulation_seed: int = 1
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split_seed: int = 1
    max_simulated_showers: int = MAX_SIMULATED_SHOWERS
    resample: str = "none"


def task_of_particle(particle: str) -> ReconstructionTask:
    """The reconstruction task whose classes hold ``particle`` (a simulator particle name)."""
    if particle not in PDG_ID:
        raise CalomlError(f"unknown particle {particle!r}; choose one of {', '.join(PDG_ID)}")
    pdg = PDG_ID[particle]
    return next(task for task in TASKS.values() if pdg in task.classes)


def default_showers(particle: str, data: DefaultDataSettings) -> int:
    """Showers of ``particle`` the default data simulates: ``events_per_particle x simulation_factor[particle]``."""
    return max(1, round(data.events_per_particle * data.simulation_factor.get(particle, 1.0)))


def default_data_request(particle: str, data: DefaultDataSettings) -> SimulationRequest:
    """The simulation request of the default data of ``particle`` (the same for the networks and the baselines).

    ``lcd-rec`` layout, :func:`default_showers` showers, primary energies ``data.energy_range_gev`` (GeV), seed
    ``100 data.simulation_seed + k`` with ``k`` the particle's position in its task (electron, chpi; photon, pi0).
    """
    k = task_of_particle(particle).particles.index(particle)
    low, high = data.energy_range_gev
    return SimulationRequest(
        "lcd-rec", particle, default_showers(particle, data), 100 * data.simulation_seed + k, (float(low), float(high))
    )


def check_default_data_size(particles: Sequence[str], data: DefaultDataSettings) -> None:
    """Refuse (one line) a default data set of more than ``data.max_simulated_showers`` showers in all.

    The bound exists because the simulator's charged pions rarely pass the e-vs-pi filter (HCAL/ECAL < 0.1, about
    0.4-0.7%), so their ``simulation_factor`` multiplies large requests: the paper preset's 500,000 per particle
    would simulate 10,000,000 charged-pion showers.
    """
    if data.events_per_particle < 1:
        n = data.events_per_particle
        raise CalomlError(f"configuration 'data.events_per_particle' must be at least 1, got {n}")
    for particle, factor in data.simulation_factor.items():
        if particle not in PDG_ID or not factor > 0:
            raise CalomlError(f"configuration 'data.simulation_factor.{particle}': needs a particle type, factor > 0")
    counts = {particle: default_showers(particle, data) for particle in particles}
    total = sum(counts.values())
    if total > data.max_simulated_showers:
        detail = " + ".join(f"{n:,} {particle}" for particle, n in counts.items())
        hours = total / 300.0 / 3600.0
        raise CalomlError(
            f"the default data would simulate {total:,} showers ({detail}; about {hours:.0f} core-hours at 300 "
            f"showers/s), more than data.max_simulated_showers = {data.max_simulated_showers:,}: give fewer with "
            "--events N, your own files with --data, or raise data.max_simulated_showers"
        )


# ------------------------------------------------------------------------------------------------------ the split
def check_split_fractions(
    fractions: Sequence[float], where: str = "data.split_fractions"
) -> tuple[float, float, float]:
    """The one rule of the split: train, validation and test fractions, each > 0, summing to at most 1."""
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or not all(f > 0 for f in values) or sum(values) > 1.0 + 1e-9:
        raise CalomlError(
            f"configuration '{where}' must be 3 fractions (train, validation, test), each > 0, summing to at most 1,"
            f" got {list(values)}"
        )
    return values[0], values[1], values[2]


@dataclass
class SourceSplit:
    """The split of one source.

    Attributes:
        number: the source number ``k`` (the split seed is ``1000 seed + k``).
        n_events: events of the source.
        codes: ``abs(pdgID)`` (N,) int64 of every event.
        labels: class index (N,) int32 of every event (-1 where the task has no class for it: regressions only).
        keep: (N,) bool, the events passing the task filters and the further cuts.
        indices: per split, the sorted event indices of that split that pass (int64).
    """

    number: int
    n_events: int
    codes: np.ndarray
    labels: np.ndarray
    keep: np.ndarray
    indices: dict[str, np.ndarray]

    def mask(self, split: str) -> np.ndarray:
        """(N,) bool: the events of ``split`` that pass."""
        out = np.zeros(self.n_events, dtype=bool)
        out[self.indices[split]] = True
        return out


def split_source(
    scalars: Mapping[str, np.ndarray],
    n_events: int,
    task: ReconstructionTask,
    *,
    fractions: Sequence[float],
    seed: int,
    number: int,
    where: object,
    particle: str | None = None,
    extra_keep: np.ndarray | None = None,
) -> SourceSplit:
    """Split source ``number`` (``scalars``: its per-event scalars, ``pdgID`` and what the filters read).

    ``particle`` None: a classification, a pdgID outside ``task`` is a one-line error; else only the events of
    that particle type are kept (others are skipped). ``extra_keep``: a further (N,) cut. ``where`` names the source
    in error messages.
    """
    fractions = check_split_fractions(fractions)
    codes = np.abs(np.asarray(scalars["pdgID"]).astype(np.int64).reshape(-1))
    if particle is None:
        labels = class_labels(codes, task, require_all=False)  # refuses foreign pdgIDs
        keep = filter_mask(scalars, task, where)
    else:
        labels = np.full(codes.shape, -1, dtype=np.int32)
        for index, pdg in enumerate(task.classes):
            labels[codes == pdg] = index
        keep = (codes == PDG_ID[particle]) & filter_mask(scalars, task, where)
    if extra_keep is not None:
        keep &= np.asarray(extra_keep, dtype=bool)
    parts = split_indices(n_events, fractions, seed=1000 * seed + number)
    indices = {name: part[keep[part]].astype(np.int64) for name, part in zip(SPLITS, parts, strict=True)}
    return SourceSplit(number, n_events, codes, labels, keep, indices)


def single_class(codes: np.ndarray, task: ReconstructionTask) -> dict[str, Any]:
    """``particle`` and ``label`` when the PDG codes ``codes`` (of the events a run kept) are all of one class of
    ``task``; both None otherwise (a mixed source, or no kept event)."""
    present = np.unique(np.abs(np.asarray(codes).astype(np.int64)))
    if len(present) != 1 or int(present[0]) not in task.classes:
        return {"particle": None, "label": None}
    label = task.classes.index(int(present[0]))
    return {"particle": task.particles[label], "label": label}


def source_entry(path: str, source_format: str, split: SourceSplit, task: ReconstructionTask) -> SplitSource:
    """The split record's entry of one source: its test events after the cuts, and its class when single."""
    kept = single_class(split.codes[split.keep], task)
    return SplitSource(path, split.indices["test"], source_format, split.n_events, kept["particle"], kept["label"])


def describe_filters(task: ReconstructionTask) -> str:
    """The task filters in words (for the record and the messages)."""
    described = [f"pdgID {pdg}: {f!r}" for pdg, filters in task.filters.items() for f in filters]
    return ", ".join(described) or "none"


def make_split_record(
    task: ReconstructionTask,
    *,
    fractions: Sequence[float],
    seed: int,
    cuts: Sequence[str],
    sources: Sequence[SplitSource],
    resample: str,
    particle: str | None = None,
) -> SplitRecord:
    """The split record of a run (``RUN/test_events.json``); ``cuts``: what dropped events, in words."""
    return SplitRecord(
        [*sources],
        task=task.name,
        particle=particle,
        classes=[
            {"label": i, "pdgID": pdg, "particle": name}
            for i, (pdg, name) in enumerate(zip(task.classes, task.particles, strict=True))
        ],
        split={
            "fractions": [float(f) for f in fractions],
            "seed": seed,
            "rule": "source k of N events: caloml.data.reconstruction_tasks.split_indices(N, fractions,"
            " seed=seed*1000+k) gives train, validation, test; then " + "; ".join(cuts),
            "cuts": list(cuts),
        },
        resample=resample,
        index=INDEX_RULE,
        format=SPLIT_FORMAT,
    )


def filter_counts_line(task: ReconstructionTask, splits: Sequence[SourceSplit]) -> str:
    """One line: per class of ``task``, the events that passed the cuts out of those read (all splits)."""
    parts = []
    for pdg, name in zip(task.classes, task.particles, strict=True):
        read = sum(int(np.sum(s.codes == pdg)) for s in splits)
        if not read:
            continue
        passed = sum(int(np.sum(s.keep & (s.codes == pdg))) for s in splits)
        parts.append(f"{name} {passed:,} of {read:,} ({100.0 * passed / read:.2f}%)")
    return f"events passing the {task.name} cuts: " + ", ".join(parts)
