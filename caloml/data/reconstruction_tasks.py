"""The reconstruction tasks' classes, labels and event selections (filters and the charged-pion raw-sum cut).

Two classification tasks, each with its explicit class mapping (``abs(pdgID)`` -> class index): ``e-vs-pi``
(11 -> 0, 211 -> 1; charged pions must have HCAL / ECAL < 0.1) and ``gamma-vs-pi0`` (22 -> 0, 111 -> 1; neutral
pions must have an opening angle < 0.01 rad), as in "Calorimetry with deep learning: particle simulation and
reconstruction for collider physics", Belayneh et al., arXiv:1912.06794. A pdgID outside the task, or a class absent
from the data, is a one-line CalomlError. :func:`filter_mask` is the one filter rule of the networks, the baselines
and the evaluation; :func:`regression_subject` the one selection of the energy regressions. See
``docs/reconstruction.md``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from caloml.data.lcd import LCDReader
from caloml.data.transforms import CenterCrop, EventFilter, MaxHcalEcalRatio, MaxOpeningAngle
from caloml.errors import CalomlError, DataError
from caloml.particles import CHPI_MIN_RAW_FRACTION, CHPI_PDG, PDG_ID, RAW_SUM_PER_GEV

__all__ = [
    "INPUT_SHAPES",
    "REQUIRED_KEYS",
    "TASKS",
    "ReconstructionTask",
    "class_labels",
    "filter_mask",
    "get_task",
    "load_events",
    "prepare_events",
    "raw_energy_fraction",
    "regression_subject",
    "split_indices",
]

#: Keys every event needs (besides what a task's filters read).
REQUIRED_KEYS: tuple[str, ...] = ("ECAL", "HCAL", "recoEta", "recoPhi", "energy", "pdgID")
#: The Triforce networks' per-event input shapes, in input order (ECAL centre crop and HCAL window, GeV; the sums
#: ``ECAL_E``, ``HCAL_E`` (GeV) and the angles ``recoEta``, ``recoPhi`` (radians) are scalars).
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "ECAL": (25, 25, 25),
    "HCAL": (11, 11, 60),
    "ECAL_E": (),
    "HCAL_E": (),
    "recoEta": (),
    "recoPhi": (),
}
LABEL_KEY = "class_label"


@dataclass(frozen=True)
class ReconstructionTask:
    """A two-class reconstruction task.

    Attributes:
        name: ``e-vs-pi`` or ``gamma-vs-pi0``.
        classes: PDG codes (absolute values) in class-index order.
        particles: simulator particle names of the classes (for the default data).
        filters: per PDG code, the event filters its events must pass.
    """

    name: str
    classes: tuple[int, ...]
    particles: tuple[str, ...]
    filters: Mapping[int, tuple[EventFilter, ...]] = field(default_factory=dict)

    @property
    def label_of(self) -> dict[int, int]:
        """``abs(pdgID)`` -> class index."""
        return {pdg: index for index, pdg in enumerate(self.classes)}


def _task(name: str, particles: tuple[str, str], filters: Mapping[int, tuple[EventFilter, ...]]) -> ReconstructionTask:
    return ReconstructionTask(name, tuple(PDG_ID[p] for p in particles), particles, filters)


TASKS: dict[str, ReconstructionTask] = {
    "e-vs-pi": _task("e-vs-pi", ("electron", "chpi"), {PDG_ID["chpi"]: (MaxHcalEcalRatio(0.1),)}),
    "gamma-vs-pi0": _task("gamma-vs-pi0", ("photon", "pi0"), {PDG_ID["pi0"]: (MaxOpeningAngle(0.01),)}),
}


def get_task(name: str) -> ReconstructionTask:
    """The task called ``name`` (CalomlError for an unknown one)."""
    if name not in TASKS:
        raise CalomlError(f"unknown reconstruction task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def class_labels(pdg_ids: Any, task: ReconstructionTask, *, require_all: bool = True) -> np.ndarray:
    """Class indices (N,) int32 of the PDG codes (sign ignored) for ``task``.

    Raises CalomlError for a PDG code outside the task and, with ``require_all``, when a class has no event.
    """
    codes = np.abs(np.asarray(pdg_ids).reshape(-1).astype(np.int64))
    mapping = task.label_of
    unexpected = sorted(set(np.unique(codes).tolist()) - set(mapping))
    if unexpected:
        count = int(np.isin(codes, unexpected).sum())
        raise CalomlError(
            f"task {task.name} expects pdgID {' or '.join(map(str, task.classes))}, found {unexpected[0]} "
            f"({count} event(s) of unexpected type)"
        )
    labels = np.zeros(codes.shape, dtype=np.int32)
    for pdg, index in mapping.items():
        labels[codes == pdg] = index
    if require_all:
        missing = [pdg for pdg in task.classes if not np.any(codes == pdg)]
        if missing:
            raise CalomlError(f"task {task.name}: no event of class pdgID {missing[0]} in the data")
    return labels


def _check_keys(batch: Mapping[str, Any], task: ReconstructionTask, source: str) -> None:
    needed = list(REQUIRED_KEYS)
    for filters in task.filters.values():
        for event_filter in filters:
            needed += [k for k in event_filter.required_keys if k not in ("ECAL_E", "HCAL_E")]
    for key in needed:
        if key not in batch:
            hint = " (Triforce needs the reconstruction files with the 11 x 11 x 60 HCAL)" if key == "HCAL" else ""
            raise CalomlError(f"{source}: no '{key}' in the data{hint}")


def filter_mask(events: Mapping[str, Any], task: ReconstructionTask, where: Any = "data") -> np.ndarray:
    """(N,) bool: the events that pass the filters of their class in ``task`` (events of other classes pass).

    ``events`` needs ``pdgID`` and, when the data holds a filtered class, the keys its filters read (a one-line
    DataError naming ``where`` otherwise). The one filter rule of the networks, the baselines and the evaluation.
    """
    codes = np.abs(np.asarray(events["pdgID"]).astype(np.int64).reshape(-1))
    keep = np.ones(codes.shape, dtype=bool)
    for pdg, filters in task.filters.items():
        of_class = codes == pdg
        if not of_class.any():
            continue
        for event_filter in filters:
            missing = [key for key in event_filter.required_keys if key not in events]
            if missing:
                raise DataError(f"{where}: no '{missing[0]}' in the data (needed by {event_filter!r})")
            keep &= ~of_class | np.asarray(event_filter.keep(events), dtype=bool).reshape(-1)
    return keep


def prepare_events(
    batch: Mapping[str, np.ndarray], task: ReconstructionTask, *, source: str = "data", require_all: bool = True
) -> dict[str, np.ndarray]:
    """Filter, label and crop a NumPy batch of LCD events (GeV) for ``task``; see the module docstring.

    Adds ``class_label`` (N,) int32 and the window sums ``ECAL_E``/``HCAL_E`` (GeV) when absent; ``ECAL`` becomes
    (N, 25, 25, 25). ``source`` names the data in error messages.
    """
    _check_keys(batch, task, source)
    events = dict(batch)
    for key in ("ECAL", "HCAL"):
        if f"{key}_E" not in events:
            cells = np.asarray(events[key])
            events[f"{key}_E"] = cells.reshape(len(cells), -1).sum(axis=1, dtype=np.float64).astype(np.float32)
    labels = class_labels(events["pdgID"], task, require_all=False)
    keep = filter_mask(events, task, source)
    events = {key: np.asarray(value)[keep] for key, value in events.items()}
    events[LABEL_KEY] = labels[keep]
    if require_all:
        class_labels(events["pdgID"], task, require_all=True)
    if events["ECAL"].shape[1:3] != (25, 25):
        events = CenterCrop(25, 25, "ECAL").numpy(events)
        events["ECAL"] = np.ascontiguousarray(events["ECAL"])
    return events


def load_events(
    paths: Sequence[str | os.PathLike], task: ReconstructionTask, *, max_events_per_file: int | None = None
) -> dict[str, np.ndarray]:
    """Read LCD files into memory and :func:`prepare_events` them together (small data sets, tests, baselines)."""
    if not paths:
        raise CalomlError(f"task {task.name}: no input files")
    parts = []
    for path in paths:
        with LCDReader(Path(path)) as reader:
            n = len(reader) if max_events_per_file is None else min(len(reader), max_events_per_file)
            raw = reader.read(slice(0, n))
        parts.append(prepare_events(raw, task, source=str(path), require_all=False))
    keys = set(parts[0])
    for path, part in zip(paths, parts, strict=True):
        if set(part) != keys:
            raise CalomlError(f"{path}: its keys differ from those of {paths[0]}: {sorted(keys ^ set(part))[0]}")
    events = {key: np.concatenate([part[key] for part in parts]) for key in sorted(keys)}
    class_labels(events["pdgID"], task, require_all=True)
    return events


def split_indices(n_events: int, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0) -> list[np.ndarray]:
    """Seeded random disjoint index sets (train, validation, test...) of the given fractions of ``n_events``.

    The runs' split rule (every fraction > 0) is
    :func:`caloml.data.reconstruction_split.check_split_fractions`.
    """
    if any(f < 0 for f in fractions) or sum(fractions) > 1.0 + 1e-9:
        raise CalomlError(f"split fractions must be non-negative and sum to at most 1, got {list(fractions)}")
    order = np.random.default_rng(seed).permutation(n_events)
    bounds = np.round(np.cumsum([0.0, *fractions]) * n_events).astype(int)
    return [np.sort(order[start:stop]) for start, stop in itertools.pairwise(bounds)]


def raw_energy_fraction(events: Mapping[str, Any]) -> np.ndarray:
    """``RAW_SUM_PER_GEV (ECAL_E + HCAL_E) / energy`` (N,) float64: the raw sum over the true energy (sums in GeV).

    A missing key is a one-line CalomlError.
    """
    for key in ("ECAL_E", "HCAL_E", "energy"):
        if key not in events:
            raise CalomlError(f"the raw-energy cut needs key '{key}', which the data lacks")
    raw = RAW_SUM_PER_GEV * (np.asarray(events["ECAL_E"], np.float64) + np.asarray(events["HCAL_E"], np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(raw / np.asarray(events["energy"], np.float64), dtype=np.float64).reshape(-1)


def regression_subject(pdg: np.ndarray, raw_fraction: np.ndarray, particle_pdg: int) -> np.ndarray:
    """Which events (N,) bool a regression of ``particle_pdg`` is fitted and scored on: its particle type and, for
    charged pions, a raw sum of at least :data:`~caloml.particles.CHPI_MIN_RAW_FRACTION` of the true energy."""
    mask = np.abs(np.asarray(pdg)).reshape(-1) == particle_pdg
    if particle_pdg == CHPI_PDG:
        mask &= np.asarray(raw_fraction) >= CHPI_MIN_RAW_FRACTION
    return np.asarray(mask, dtype=bool)
