"""The data split of the Triforce reconstruction runs, shared by the networks and the baselines (seed 004 section 5).

The networks (:mod:`caloml.tasks.triforce`) and the baselines (:mod:`caloml.tasks.baselines`) are compared on the
same test events; this module is the one place that decides them, so that the guarantee cannot drift:

* :func:`default_data_request` - the simulation request of the default data of one particle type (the simulator's
  ``lcd-rec`` layout, ``events_per_particle x simulation_factor[particle]`` showers, seed ``100 simulation_seed +
  k`` for the particle's position ``k`` in its task), and :func:`check_default_data_size`, which refuses a default
  data set above ``data.max_simulated_showers`` (:data:`MAX_SIMULATED_SHOWERS`).
* :func:`check_split_fractions` - the one rule for ``data.split_fractions``: three fractions, each > 0, summing to
  at most 1.
* :func:`split_source` - source ``k`` of ``N`` events: ``split_indices(N, fractions, seed=1000 seed + k)`` gives the
  training, validation and test events, then the task filters (:func:`caloml.tasks.triforce_data.filter_mask`)
  and any further cut drop events from every split.
* :func:`source_entry` and :func:`split_record` - ``RUN/test_events.json`` (format ``caloml-triforce-split``
  version 1, read by :mod:`caloml.evaluate.reconstruction_inputs` and :func:`caloml.tasks.triforce.read_split`)::

    {"format": "caloml-triforce-split", "version": 1, "task": "gamma-vs-pi0",
     "particle": "chpi",                   # the baselines' regressions only
     "classes": [{"label": 0, "pdgID": 22, "particle": "photon"}, {"label": 1, "pdgID": 111, "particle": "pi0"}],
     "split": {"fractions": [0.6, 0.2, 0.2], "seed": 1, "rule": "...", "cuts": ["..."]},
     "index": "...",                       # what an event index is
     "resample": "none" | "atlas" | "cms", # the ECAL granularity the run trained on
     "sources": [{"path": "/abs/path", "format": "hdf5" | "tfrecords", "n_events": N,
                  "particle": "photon" | null, "label": 0 | null,  # when the kept events are all of one class
                  "test_indices": [sorted event indices in the test split that pass the cuts],
                  "n_test": len(test_indices)}, ...]}

  The **event index** of a source is the row of an HDF5 file, or the record number of a TFRecord directory read
  shard after shard in the order of its ``metadata.json``. ``particle`` and ``label`` describe the events a run
  kept (after the cuts), for the networks and the baselines alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from caloml.errors import CalomlError
from caloml.sim.particles import PDG_ID
from caloml.tasks.triforce_data import TASKS, ReconstructionTask, class_labels, filter_mask, split_indices

if TYPE_CHECKING:
    from caloml.sim.run import SimulationRequest

__all__ = [
    "INDEX_RULE",
    "MAX_SIMULATED_SHOWERS",
    "SPLITS",
    "SPLIT_FILE",
    "SPLIT_FORMAT",
    "DefaultDataSettings",
    "SourceSplit",
    "check_default_data_size",
    "check_split_fractions",
    "default_data_request",
    "default_showers",
    "describe_filters",
    "filter_counts_line",
    "single_class",
    "source_entry",
    "split_record",
    "split_source",
    "task_of_particle",
]

#: The test split of a run, in the run directory.
SPLIT_FILE = "test_events.json"
SPLIT_FORMAT = "caloml-triforce-split"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: What an event index is (recorded in ``test_events.json``).
INDEX_RULE = (
    "event position in its source: the row of an HDF5 file; for a TFRecord directory, the record number"
    " reading its shards in the order of metadata.json"
)
#: Default bound on the showers the default data may simulate per run (all particles together): the simulator makes
#: about 300 showers per second per core and an lcd-rec shower holds about 0.3 MB of cells before compression, so
#: 2,000,000 showers cost about 1.9 core-hours and up to 600 GB of cells.
MAX_SIMULATED_SHOWERS = 2_000_000


# ------------------------------------------------------------------------------------------------- default data
class DefaultDataSettings(Protocol):
    """The data-section fields the default data depends on (the networks' and the baselines' data sections)."""

    events_per_particle: int
    simulation_factor: dict[str, float]
    energy_range_gev: tuple[float, float]
    simulation_seed: int
    max_simulated_showers: int


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
    from caloml.sim.run import SimulationRequest

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


def source_entry(path: str, source_format: str, split: SourceSplit, task: ReconstructionTask) -> dict[str, Any]:
    """The ``sources`` entry of ``test_events.json`` of one source (module docstring)."""
    test = split.indices["test"]
    return {
        "path": path,
        "format": source_format,
        "n_events": split.n_events,
        **single_class(split.codes[split.keep], task),
        "test_indices": test.tolist(),
        "n_test": int(test.size),
    }


def describe_filters(task: ReconstructionTask) -> str:
    """The task filters in words (for the record and the messages)."""
    described = [f"pdgID {pdg}: {f!r}" for pdg, filters in task.filters.items() for f in filters]
    return ", ".join(described) or "none"


def split_record(
    task: ReconstructionTask,
    *,
    fractions: Sequence[float],
    seed: int,
    cuts: Sequence[str],
    sources: Sequence[Mapping[str, Any]],
    resample: str,
    particle: str | None = None,
) -> dict[str, Any]:
    """The content of ``RUN/test_events.json`` (module docstring); ``cuts``: what dropped events, in words."""
    return {
        "format": SPLIT_FORMAT,
        "version": 1,
        "task": task.name,
        **({"particle": particle} if particle else {}),
        "classes": [
            {"label": i, "pdgID": pdg, "particle": name}
            for i, (pdg, name) in enumerate(zip(task.classes, task.particles, strict=True))
        ],
        "split": {
            "fractions": [float(f) for f in fractions],
            "seed": seed,
            "rule": "source k of N events: caloml.tasks.triforce_data.split_indices(N, fractions, seed=seed*1000+k)"
            " gives train, validation, test; then " + "; ".join(cuts),
            "cuts": list(cuts),
        },
        "index": INDEX_RULE,
        "resample": resample,
        "sources": [dict(source) for source in sources],
    }


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
