"""Data of the baseline tasks: the scalars of their sources, split and filtered as the networks' ones.

:func:`load_split` reads the per-event scalars of each source (:mod:`caloml.data.reconstruction`), splits and filters
them with the networks' rule (:func:`caloml.data.reconstruction_split.split_source`) and, with ``--resample``,
recomputes the expert features from the resampled cells (:func:`resampled_features`). See ``docs/reconstruction.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from caloml.data.checks import check_values
from caloml.data.input_errors import pipeline_errors
from caloml.data.lcd import LCDReader
from caloml.data.lcd_features import EXPERT_FEATURE_KEYS
from caloml.data.reconstruction import Source, cell_shapes, ordered_records, read_scalars
from caloml.data.reconstruction_split import (
    SPLITS,
    ReconstructionData,
    SourceSplit,
    check_split_fractions,
    describe_filters,
    make_split_record,
    source_entry,
    split_source,
)
from caloml.data.reconstruction_tasks import ReconstructionTask
from caloml.data.resampling import check_resample, resample_events
from caloml.data.split_record import SplitRecord, SplitSource
from caloml.data.tfrecord import decode_batch, read_metadata
from caloml.errors import CalomlError, DataError
from caloml.models.baselines import raw_energy_mask
from caloml.particles import CHPI_MIN_RAW_FRACTION, PDG_ID, RAW_SUM_PER_GEV

__all__ = [
    "SplitEvents",
    "load_split",
    "read_source",
    "resampled_features",
    "split_events_record",
    "test_events_record",
]


def read_source(
    path: str | Path, keys: Sequence[str], optional: Sequence[str] = ()
) -> tuple[Source, dict[str, np.ndarray]]:
    """The source (:class:`caloml.data.reconstruction.Source`) and its per-event scalars ``keys`` (and those of
    ``optional`` it has), (N,) each in event-index order (the Triforce task's reader: HDF5 rows, or TFRecord
    records shard after shard); GeV.

    Only the scalars are read. A missing key or a non-finite value is a one-line DataError naming the file, the
    key and the event.
    """
    source = Source.open(path)
    scalars, _arrays = read_scalars(source, list(dict.fromkeys([*keys, *optional])))
    for key in keys:
        if key not in scalars:
            if key == "HCAL_E":
                raise DataError(
                    f"{path}: no 'HCAL_E' (nor HCAL cells): the baselines need the reconstruction files with the HCAL "
                    "(lcd-rec layout)"
                )
            raise DataError(
                f"{path}: no '{key}' in the data (the Triforce feature files and caloml's lcd-rec simulation have "
                "it; caloml.data.lcd_features.expert_features computes the expert features from the cells)"
            )
    for key, value in scalars.items():
        bad = np.flatnonzero(~np.isfinite(value.astype(np.float64)))
        if bad.size:
            raise DataError(f"{path}: '{key}' is not finite ({value[bad[0]]}) at event {bad[0]}")
    return source, scalars


@dataclass
class SplitEvents:
    """The events of the three splits, concatenated over the sources.

    Attributes:
        splits: per split name (``train``, ``validation``, ``test``), the scalars (N,) plus ``source_index``,
            ``event_index`` (the event's index in its source) and, for a classification, ``class_label``.
        entries: each source's entry of the split record (``test_events.json``).
        cuts: what was removed, in words.
        per_source: each source's :class:`~caloml.data.reconstruction_split.SourceSplit`.
    """

    splits: dict[str, dict[str, np.ndarray]]
    entries: list[SplitSource]
    cuts: list[str]
    per_source: list[SourceSplit] = field(default_factory=list)

    @property
    def sources(self) -> list[dict[str, Any]]:
        """The ``sources`` of ``test_events.json``, as JSON objects."""
        return [entry.to_json() for entry in self.entries]


def load_split(
    paths: Sequence[str | Path],
    keys: Sequence[str],
    *,
    task: ReconstructionTask,
    fractions: Sequence[float],
    seed: int,
    particle: str | None = None,
    source_numbers: Sequence[int] | None = None,
    chpi_min_raw_fraction: float = CHPI_MIN_RAW_FRACTION,
    resample: str = "none",
) -> SplitEvents:
    """Read, split and filter the sources (see the module docstring); ``particle`` set: a regression of that type.

    ``task`` gives the filters (and, for a classification, the labels); source ``k`` (``source_numbers[i]``,
    default ``i``) is split with seed ``1000 seed + k``. Raises CalomlError when a split is empty, a class is
    missing or an event has a pdgID outside the task. ``resample`` ``atlas`` or ``cms``: the expert features among
    ``keys`` are recomputed from the resampled cells of the kept events (:func:`resampled_features`); the split and
    the cuts are those without resampling.
    """
    check_resample(resample, where="resample")
    recomputed_keys = [k for k in dict.fromkeys(keys) if k in EXPERT_FEATURE_KEYS] if resample != "none" else []
    # with resampling, features other than the sums (the cuts read them) may be absent: they are computed
    required = [k for k in keys if k not in recomputed_keys or k in ("ECAL_E", "HCAL_E")]
    optional_keys = [k for k in recomputed_keys if k not in required]
    fractions = check_split_fractions(fractions)
    if not paths:
        raise CalomlError("no input files (data.files)")
    numbers = list(range(len(paths))) if source_numbers is None else list(source_numbers)
    parts: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in SPLITS}
    sources = []
    cuts = [f"the {task.name} task filters ({describe_filters(task)})"]
    if particle is not None:
        cuts.append(f"{particle} events only")
    if particle == "chpi":
        cuts.append(f"raw sum (ECAL_E + HCAL_E) x {RAW_SUM_PER_GEV:g} >= {chpi_min_raw_fraction:g} x the true energy")
    filter_keys = [k for filters in task.filters.values() for f in filters for k in f.required_keys]
    per_source: list[SourceSplit] = []
    for number, path in zip(numbers, paths, strict=True):
        source, scalars = read_source(path, [*required, "pdgID"], optional=[*optional_keys, *filter_keys])
        extra_keep = None
        if particle == "chpi":
            extra_keep = raw_energy_mask(scalars, chpi_min_raw_fraction)
        split = split_source(
            scalars,
            source.n_events,
            task,
            fractions=fractions,
            seed=seed,
            number=number,
            where=path,
            particle=particle,
            extra_keep=extra_keep,
        )
        per_source.append(split)
        if recomputed_keys:
            used = np.sort(np.concatenate([split.indices[name] for name in SPLITS]))
            for key, values in resampled_features(source, used, resample, recomputed_keys).items():
                column = np.zeros(source.n_events, np.float32)
                if key in scalars:
                    column[:] = scalars[key]
                column[used] = values
                scalars[key] = column
        for name in SPLITS:
            rows = split.indices[name]
            part = {key: value[rows] for key, value in scalars.items()}
            part["event_index"] = rows.astype(np.int64)
            part["source_index"] = np.full(rows.size, number, dtype=np.int64)
            if particle is None:
                part["class_label"] = split.labels[rows]
            parts[name].append(part)
        sources.append(source_entry(str(source.path), source.format, split, task))
    checked = sorted(
        {key for part in parts["train"] for key in part if key not in ("event_index", "source_index", "class_label")}
    )
    cells = "and the ECAL and HCAL cells it resamples" if recomputed_keys else "(it reads no cells)"
    print(f"checked for NaN and infinite values: the per-event keys {', '.join(checked)} {cells}")
    splits = {name: {key: np.concatenate([p[key] for p in parts[name]]) for key in parts[name][0]} for name in parts}
    if particle is not None and not sum(events["pdgID"].size for events in splits.values()):
        raise CalomlError(
            f"no {particle} event (pdgID {PDG_ID[particle]}) in the data after the cuts ({'; '.join(cuts)})"
        )
    for name, events in splits.items():
        if not events["pdgID"].size:
            raise CalomlError(f"the {name} split is empty after the cuts ({'; '.join(cuts)}); give more events")
        if particle is None:
            missing = [pdg for index, pdg in enumerate(task.classes) if not np.any(events["class_label"] == index)]
            if missing:
                raise CalomlError(
                    f"task {task.name}: no event of class pdgID {missing[0]} in the {name} split (after the "
                    "filters); give files of both classes and enough events"
                )
    return SplitEvents(splits, sources, cuts, per_source)


#: Events per read and resampling batch of :func:`resampled_features`.
_RESAMPLE_CHUNK = 256


def resampled_features(
    source: Source, indices: np.ndarray, resample: str, keys: Sequence[str]
) -> dict[str, np.ndarray]:
    """Expert features ``keys`` (:data:`caloml.data.lcd_features.EXPERT_FEATURE_KEYS`) of the events ``indices``
    (sorted event indices) of ``source`` (:class:`caloml.data.reconstruction.Source`), recomputed from its ECAL
    resampled to ``resample`` (``atlas``, ``cms``) and its HCAL by :func:`caloml.data.resampling.resample_events`:
    (len(indices),) float32 each, in the order of ``indices``.

    The source needs dense ECAL (51 x 51 x 25) and HCAL cells: a one-line DataError otherwise.
    """
    indices = np.asarray(indices, dtype=np.int64)
    shapes = cell_shapes(source)
    for key in ("ECAL", "HCAL"):
        if key not in shapes:
            raise DataError(
                f"{source.path}: no {key} cells: --resample {resample} recomputes the expert features from the ECAL "
                "and HCAL cells (the lcd-rec layout)"
            )
    if shapes["ECAL"][:2] != (51, 51):
        raise DataError(
            f"{source.path}: ECAL window {shapes['ECAL']}: --resample {resample} recomputes the expert features, "
            "which are defined on the full 51 x 51 x 25 window"
        )
    parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    for cells in _iter_cells(source, indices):
        features = resample_events(cells, resample)
        for key in keys:
            parts[key].append(np.asarray(features[key], np.float32))
    return {key: np.concatenate(values) if values else np.zeros(0, np.float32) for key, values in parts.items()}


def _iter_cells(source: Source, indices: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
    """Batches ``{"ECAL", "HCAL"}`` (GeV) of the events ``indices`` (sorted) of ``source``, in that order."""
    if source.format == "hdf5":
        with LCDReader(source.path, keys=["ECAL", "HCAL"], chunk_events=_RESAMPLE_CHUNK) as reader:
            for start in range(0, len(indices), _RESAMPLE_CHUNK):
                yield reader.read(indices[start : start + _RESAMPLE_CHUNK])
        return
    metadata = read_metadata(source.path)
    selected = {**metadata, "arrays": {k: metadata["arrays"][k] for k in ("ECAL", "HCAL")}, "scalars": {}}
    wanted = np.zeros(source.n_events, dtype=bool)
    wanted[indices] = True
    keep = tf.constant(wanted)
    records = (
        ordered_records(source.path, metadata)
        .enumerate()
        .filter(lambda index, record: tf.gather(keep, index))
        .map(lambda index, record: record)
        .batch(_RESAMPLE_CHUNK)
        .map(lambda serialized: decode_batch(serialized, selected))
    )
    position = 0
    with pipeline_errors([source.path], where=str(source.path)):  # a damaged shard: one line naming it
        for batch in records:
            cells = {key: value.numpy() for key, value in batch.items()}
            n_events = len(cells["ECAL"])
            rows = indices[position : position + n_events]
            check_values(cells, file=source.path, energy_keys=("ECAL", "HCAL"), offset=rows)  # NaN cells: one line
            position += n_events
            yield cells


def split_events_record(
    split: SplitEvents, task: ReconstructionTask, data: ReconstructionData, particle: str | None
) -> SplitRecord:
    """The split record (``RUN/test_events.json``) of a baseline run: the networks' format
    (:func:`caloml.data.reconstruction_split.make_split_record`), with a regression's particle."""
    return make_split_record(
        task,
        fractions=data.split_fractions,
        seed=data.split_seed,
        cuts=split.cuts,
        sources=split.entries,
        resample=data.resample,
        particle=particle,
    )


def test_events_record(
    split: SplitEvents, task: ReconstructionTask, data: ReconstructionData, particle: str | None
) -> dict[str, Any]:
    """The JSON content of ``RUN/test_events.json`` (:func:`split_events_record`'s)."""
    return split_events_record(split, task, data, particle).to_json()
