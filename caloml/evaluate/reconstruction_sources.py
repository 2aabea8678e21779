"""Test events of the reconstruction evaluation: the sources and event indices that ``--test`` names.

LCD HDF5 files (every event), caloml TFRecord directories (every record) and run directories, whose
``test_events.json`` (:mod:`caloml.data.split_record`) names the test events of each source by event index. A source
named several times is evaluated on the events common to all of them; a per-particle regression run restricts only
the events of its particle. See ``docs/reconstruction.md``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from caloml.data.lcd import LCDReader
from caloml.data.reconstruction import Source, read_scalars
from caloml.data.reconstruction_tasks import TASKS, ReconstructionTask, get_task
from caloml.data.resampling import RESAMPLE_CHOICES
from caloml.data.split_record import SPLIT_FILE, SplitSource, read_split_record
from caloml.data.tfrecord import METADATA_FILE
from caloml.errors import CalomlError
from caloml.particles import PARTICLE_PDG, PDG_PARTICLE

__all__ = [
    "TEST_EVENTS_NAME",
    "TestSource",
    "event_count",
    "infer_task",
    "open_records",
    "read_test_events",
    "resolve_resample",
    "resolve_test_sources",
]

#: A run directory's split record.
TEST_EVENTS_NAME = SPLIT_FILE


@dataclass
class TestSource:
    """The test events of one source.

    Attributes:
        path: the LCD HDF5 file or the TFRecord directory.
        indices: sorted event indices (HDF5 rows or TFRecord record numbers; None: every event).
        expected_pdg: the PDG code its events must have (from ``test_events.json``), or None.
        origins: the arguments that named it.
        task: the task named by its ``test_events.json``, or None.
        format: ``hdf5`` or ``tfrecords``.
        n_events: the source's event count recorded by its ``test_events.json`` (checked when read), or None.
        run_resample: the ECAL granularity recorded by the ``test_events.json`` files that name it,
            ``{test_events.json path: setting}`` (empty: none records it).
        regression_pdg: set when the ``test_events.json`` is a per-particle regression run's (its top-level
            ``particle``): ``indices`` then bound only the events of that particle (module docstring).
        restrictions: ``(pdg, allowed indices, origin)`` of the per-particle regression runs naming it: an event of
            that particle (charged pions: passing the raw-sum cut) is kept only if its index is allowed.
    """

    __test__ = False  # not a pytest test class

    path: Path
    indices: np.ndarray | None
    expected_pdg: int | None = None
    origins: list[str] = field(default_factory=list)
    task: str | None = None
    format: str = "hdf5"
    n_events: int | None = None
    run_resample: dict[str, str] = field(default_factory=dict)
    regression_pdg: int | None = None
    restrictions: list[tuple[int, np.ndarray, str]] = field(default_factory=list)

    def describe(self, n_rows: int) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "rows": int(n_rows),
            "all_rows": self.indices is None,
            "expected_particle": None if self.expected_pdg is None else PDG_PARTICLE.get(self.expected_pdg),
            "named_by": list(self.origins),
            "run_resample": sorted(set(self.run_resample.values())),
        }


def _expected_pdg(entry: SplitSource) -> int | None:
    """The PDG code a source's events must have: from its ``particle``, or its ``label`` (a particle name, a PDG code,
    or a class index ``c`` coded as ``-1 - c`` and resolved against the task later)."""
    if entry.particle is not None:
        return PARTICLE_PDG[entry.particle]
    label = entry.label
    if label is None:
        return None
    if isinstance(label, str):
        return PARTICLE_PDG[label]
    return abs(label) if abs(label) in PDG_PARTICLE else -1 - label


def read_test_events(directory: Path) -> list[TestSource]:
    """The test sources a run directory's ``test_events.json`` names (checked by
    :func:`caloml.data.split_record.read_split_record`); relative paths are taken from the working directory, else
    from the run directory."""
    path = directory / TEST_EVENTS_NAME
    if not path.is_file():
        raise CalomlError(f"{directory}: a directory without {TEST_EVENTS_NAME} (pass LCD files or a run directory)")
    record = read_split_record(path)
    run_resample = {} if record.resample is None else {str(path): record.resample}
    regression_pdg = None if record.particle is None else PARTICLE_PDG[record.particle]
    sources = []
    for entry in record.sources:
        file_path = Path(entry.path)
        if not file_path.is_absolute() and not file_path.exists() and (directory / file_path).exists():
            file_path = directory / file_path
        sources.append(
            TestSource(
                file_path,
                entry.test_indices,
                # a regression's entries describe the events it kept (its particle), not the whole source
                _expected_pdg(entry) if regression_pdg is None else None,
                [str(directory)],
                record.task,
                entry.format,
                entry.n_events,
                dict(run_resample),
                regression_pdg,
            )
        )
    return sources


def resolve_resample(requested: str | None, sources: Sequence[TestSource]) -> tuple[str, str]:
    """The ECAL granularity of the evaluation and where it comes from: ``(setting, "option" | "runs" | "default")``.

    ``requested`` (``--resample``) None: the setting the ``test_events.json`` files record (they must agree), else
    ``none`` (plain HDF5 files and TFRecord directories record nothing). Given: it must match every recorded
    setting. Disagreements are one-line CalomlErrors naming the files.
    """
    recorded: dict[str, str] = {}
    for source in sources:
        recorded.update(source.run_resample)
    first: dict[str, str] = {}  # setting -> the first file recording it
    for where, setting in recorded.items():
        first.setdefault(setting, where)
    if len(first) > 1:
        listed = "; ".join(f"{where} records resample {setting}" for setting, where in first.items())
        raise CalomlError(f"the --test runs were trained on different ECAL granularities ({listed}); evaluate apart")
    if requested is None:
        return (next(iter(first)), "runs") if first else ("none", "default")
    if requested not in RESAMPLE_CHOICES:
        raise CalomlError(f"unknown resample {requested!r}; choose one of {', '.join(RESAMPLE_CHOICES)}")
    for setting, where in first.items():
        if setting != requested:
            raise CalomlError(
                f"--resample {requested} contradicts {where}, which records resample {setting} (the run's model was"
                f" trained on that granularity); drop --resample or pass --resample {setting}"
            )
    return requested, "option"


def _is_records_dir(path: Path) -> bool:
    return path.is_dir() and (path / METADATA_FILE).is_file() and not (path / TEST_EVENTS_NAME).is_file()


def resolve_test_sources(paths: Sequence[str | os.PathLike]) -> list[TestSource]:
    """The test files and rows named by ``paths`` (files and run directories, see the module docstring)."""
    if not paths:
        raise CalomlError("no test events (--test)")
    merged: dict[Path, TestSource] = {}
    for item in paths:
        path = Path(item)
        if _is_records_dir(path):
            sources = [TestSource(path, None, None, [str(path)], format="tfrecords")]
        elif path.is_dir():
            sources = read_test_events(path)
        elif path.is_file():
            sources = [TestSource(path, None, None, [str(path)])]
        else:
            raise CalomlError(f"{path}: no such test file, TFRecord directory or run directory")
        for source in sources:
            if source.regression_pdg is not None:  # bounds only its particle's events: a restriction, kept apart
                assert source.indices is not None
                source.restrictions = [(source.regression_pdg, source.indices, source.origins[0])]
                source.indices = None
            key = source.path.resolve()
            if key not in merged:
                merged[key] = source
                continue
            old = merged[key]
            old.restrictions += source.restrictions
            if source.format != old.format:
                raise CalomlError(f"{source.path}: named as {old.format} and as {source.format}")
            if source.n_events is not None:
                if old.n_events is not None and old.n_events != source.n_events:
                    raise CalomlError(
                        f"{source.path}: the test_events.json files disagree on its event count"
                        f" ({old.n_events} and {source.n_events})"
                    )
                old.n_events = source.n_events
            old.run_resample.update(source.run_resample)
            if old.indices is None:
                old.indices = source.indices
            elif source.indices is not None:
                old.indices = np.intersect1d(old.indices, source.indices)
            if source.expected_pdg is not None:
                if old.expected_pdg is not None and old.expected_pdg != source.expected_pdg:
                    raise CalomlError(f"{source.path}: the test_events.json files disagree on its particle")
                old.expected_pdg = source.expected_pdg
            old.task = old.task or source.task
            old.origins += source.origins
    return list(merged.values())


def _file_pdg_codes(source: TestSource) -> set[int]:
    if source.format == "tfrecords":
        scalars, _arrays = read_scalars(open_records(source), ["pdgID"])
        if "pdgID" not in scalars:
            raise CalomlError(f"{source.path}: no pdgID in the records; the class is unknown")
        codes = scalars["pdgID"]
        if source.indices is not None:
            codes = codes[source.indices[source.indices < len(codes)]]
        return {int(c) for c in np.unique(np.abs(codes))}
    reader = LCDReader(source.path, keys=["ECAL", "energy"])
    try:
        pdg = reader.pdg_id
    finally:
        reader.close()
    if pdg is not None:
        return {abs(pdg)}
    with LCDReader(source.path) as full:
        if "pdgID" not in full.keys:
            raise CalomlError(f"{source.path}: no pdgID in the file and none in its name; the class is unknown")
        codes = full.read_key("pdgID")
    if source.indices is not None:
        codes = codes[source.indices[source.indices < len(codes)]]
    return {int(c) for c in np.unique(np.abs(codes))}


def infer_task(sources: Sequence[TestSource], task: str | None) -> ReconstructionTask:
    """The task: ``task`` when given, else the one named by the test_events.json files, else the one whose
    classes are the PDG codes of the files."""
    if task is not None:
        return get_task(task)
    named = {s.task for s in sources if s.task is not None}
    if len(named) > 1:
        raise CalomlError(f"the test_events.json files name different tasks ({', '.join(sorted(named))}); pass --task")
    if named:
        return get_task(named.pop())
    codes: set[int] = set()
    for source in sources:
        codes |= _file_pdg_codes(source)
    for candidate in TASKS.values():
        if codes <= set(candidate.classes):
            return candidate
    raise CalomlError(
        f"the test files hold pdgID {sorted(codes)}, which fit no task ("
        + "; ".join(f"{t.name}: {t.classes}" for t in TASKS.values())
        + ")"
    )


def open_records(source: TestSource) -> Source:
    """The TFRecord directory of ``source`` (a :class:`~caloml.data.reconstruction.Source`)."""
    if not source.path.is_dir():
        raise CalomlError(f"{source.path}: no such TFRecord directory (named by {', '.join(source.origins)})")
    return Source.open(source.path)


def event_count(source: TestSource) -> int:
    """The number of events a test source holds (checked against its test_events.json when it was read)."""
    if source.n_events is not None:
        return source.n_events
    if source.format == "tfrecords":
        return int(open_records(source).n_events)
    with LCDReader(source.path) as reader:
        return len(reader)
