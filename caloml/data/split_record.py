"""The split record ``RUN/test_events.json``: one typed schema, one reader, one writer.

The reconstruction runs (the Triforce networks and the baselines) write it; the reconstruction evaluation reads it,
and also accepts a hand-written record listing ``files`` instead of ``sources``. A malformed record is a one-line
:class:`~caloml.errors.CalomlError` naming the file and the problem. Format: ``docs/reconstruction.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from caloml.atomic_files import atomic_write_json
from caloml.data.reconstruction_tasks import TASKS
from caloml.data.resampling import RESAMPLE_CHOICES
from caloml.errors import CalomlError
from caloml.json_values import json_plain
from caloml.particles import PARTICLE_PDG, PDG_PARTICLE

__all__ = [
    "INDEX_RULE",
    "SOURCE_FORMATS",
    "SPLIT_FILE",
    "SPLIT_FORMAT",
    "SplitRecord",
    "SplitSource",
    "read_split_record",
    "split_file",
    "write_split_record",
]

#: The test split of a run, in the run directory.
SPLIT_FILE = "test_events.json"
#: The ``format`` of the records the runs write (version 1).
SPLIT_FORMAT = "caloml-triforce-split"
SPLIT_VERSION = 1
#: Source formats: an LCD HDF5 file or a caloml TFRecord directory.
SOURCE_FORMATS: tuple[str, ...] = ("hdf5", "tfrecords")
#: What an event index is (recorded in every record the runs write).
INDEX_RULE = (
    "event position in its source: the row of an HDF5 file; for a TFRecord directory, the record number"
    " reading its shards in the order of metadata.json"
)


@dataclass
class SplitSource:
    """One source of a split record.

    Attributes:
        path: the LCD HDF5 file or TFRecord directory, as recorded.
        test_indices: sorted, unique event indices (int64) of the test split that pass the run's cuts.
        format: ``hdf5`` or ``tfrecords``.
        n_events: the source's event count (None: not recorded).
        particle: the particle of its kept events when they are all of one class (None: mixed or not recorded).
        label: the class of its kept events: a class index (0, 1), a PDG code or a particle name (None: unknown).
    """

    path: str
    test_indices: np.ndarray
    format: str = "hdf5"
    n_events: int | None = None
    particle: str | None = None
    label: int | str | None = None

    def __post_init__(self) -> None:
        self.test_indices = np.unique(np.asarray(self.test_indices, dtype=np.int64))

    def to_json(self) -> dict[str, Any]:
        """The record's ``sources`` entry (JSON-ready)."""
        return {
            "path": self.path,
            "format": self.format,
            "n_events": self.n_events,
            "particle": self.particle,
            "label": self.label,
            "test_indices": [int(i) for i in self.test_indices],
            "n_test": len(self.test_indices),
        }


@dataclass
class SplitRecord:
    """The content of ``test_events.json``.

    Attributes:
        sources: the sources and their test events.
        task: the reconstruction task (``e-vs-pi``, ``gamma-vs-pi0``) whose filters the run applied, or None.
        particle: the particle of a per-particle energy regression run (its test indices bound only that
            particle's events), else None.
        classes: ``{"label", "pdgID", "particle"}`` of the task's classes in label order.
        split: ``fractions``, ``seed``, ``rule`` and ``cuts`` (in words) of the split.
        resample: the ECAL granularity the run trained on (``none``, ``atlas``, ``cms``; None: not recorded).
        index: what an event index is.
        format: :data:`SPLIT_FORMAT` for the runs' records, None for a hand-written one.
    """

    sources: list[SplitSource]
    task: str | None = None
    particle: str | None = None
    classes: list[dict[str, Any]] = field(default_factory=list)
    split: dict[str, Any] = field(default_factory=dict)
    resample: str | None = None
    index: str = INDEX_RULE
    format: str | None = SPLIT_FORMAT

    def to_json(self) -> dict[str, Any]:
        """The file's JSON object (format version 1; non-finite floats become null)."""
        return json_plain(
            {
                "format": self.format or SPLIT_FORMAT,
                "version": SPLIT_VERSION,
                "task": self.task,
                **({"particle": self.particle} if self.particle else {}),
                "classes": [dict(c) for c in self.classes],
                "split": dict(self.split),
                "index": self.index,
                "resample": self.resample,
                "sources": [source.to_json() for source in self.sources],
            }
        )


def split_file(path: str | Path) -> Path:
    """``path/test_events.json`` for a run directory, ``path`` itself otherwise."""
    path = Path(path)
    return path / SPLIT_FILE if path.is_dir() else path


def write_split_record(path: str | Path, record: SplitRecord) -> Path:
    """Write ``record`` atomically to ``path`` (a file, or a run directory); returns the file."""
    file = Path(path) / SPLIT_FILE if Path(path).is_dir() else Path(path)
    return atomic_write_json(file, record.to_json())


def _optional_str(record: Mapping[str, Any], key: str, where: str) -> str | None:
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise CalomlError(f"{where}: '{key}' must be a string, got {value!r}")
    return value


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _source(entry: Any, where: str) -> SplitSource:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise CalomlError(f"{where}: malformed, needs 'path' (a string) and 'test_indices'")
    source_format = entry.get("format", "hdf5")
    if source_format not in SOURCE_FORMATS:
        raise CalomlError(f"{where}: unknown source format {source_format!r} (one of {', '.join(SOURCE_FORMATS)})")
    n_events = entry.get("n_events")
    if n_events is not None and (not _integer(n_events) or n_events < 0):
        raise CalomlError(f"{where}: 'n_events' must be a non-negative integer, got {n_events!r}")
    indices = entry.get("test_indices")
    if not isinstance(indices, list) or not all(_integer(i) for i in indices):
        raise CalomlError(f"{where}: 'test_indices' must be a list of integers")
    if any(i < 0 for i in indices):
        raise CalomlError(f"{where}: negative index in 'test_indices'")
    particle = entry.get("particle")
    if particle is not None and (not isinstance(particle, str) or particle not in PARTICLE_PDG):
        raise CalomlError(f"{where}: unknown particle {particle!r} (use one of {', '.join(PDG_PARTICLE.values())})")
    label = entry.get("label")
    if label is not None:
        if isinstance(label, str):
            if label not in PARTICLE_PDG:
                raise CalomlError(f"{where}: unknown particle {label!r} as 'label'")
        elif not _integer(label):
            raise CalomlError(f"{where}: 'label' must be a class index, a PDG code or a particle name, got {label!r}")
        elif abs(label) not in PDG_PARTICLE and label not in (0, 1):
            raise CalomlError(f"{where}: 'label' {label} is neither a class index (0, 1) nor a PDG code")
    return SplitSource(entry["path"], np.asarray(indices, dtype=np.int64), source_format, n_events, particle, label)


def read_split_record(path: str | Path) -> SplitRecord:
    """Read and check a ``test_events.json`` (``path``: the file or its run directory).

    Accepts the runs' records (``format`` :data:`SPLIT_FORMAT`, version 1, ``sources``) and hand-written ones
    (no ``format``; ``files`` or ``sources``). Raises a one-line CalomlError naming the file and the problem: no
    file, not JSON, a missing key, a value of the wrong type or an unknown task, particle, format or resample.
    """
    file = split_file(path)
    if not file.is_file():
        raise CalomlError(f"{file}: no such split file (written by python -m caloml.train)")
    try:
        record = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CalomlError(f"{file}: not readable JSON ({first})") from None
    if not isinstance(record, dict):
        raise CalomlError(f"{file}: malformed, not a JSON object")
    record_format = record.get("format")
    if record_format is not None and (record_format != SPLIT_FORMAT or record.get("version") != SPLIT_VERSION):
        raise CalomlError(f"{file}: not a {SPLIT_FORMAT} version {SPLIT_VERSION} file")
    entries = record.get("sources") if record_format is not None else record.get("files", record.get("sources"))
    if not isinstance(entries, list) or not entries:
        key = "sources" if record_format is not None else "files' (or 'sources"
        raise CalomlError(f"{file}: malformed, needs a non-empty list '{key}'")
    task = _optional_str(record, "task", str(file))
    if task is not None and task not in TASKS:
        raise CalomlError(f"{file}: unknown task {task!r}")
    resample = _optional_str(record, "resample", str(file))
    if resample is not None and resample not in RESAMPLE_CHOICES:
        raise CalomlError(f"{file}: unknown resample {resample!r} recorded (one of {', '.join(RESAMPLE_CHOICES)})")
    particle = _optional_str(record, "particle", str(file))
    if particle is not None and particle not in PARTICLE_PDG:
        raise CalomlError(f"{file}: unknown regression particle {particle!r}")
    classes = record.get("classes", [])
    split = record.get("split", {})
    if not isinstance(classes, list) or not isinstance(split, dict):
        raise CalomlError(f"{file}: malformed, 'classes' must be a list and 'split' an object")
    sources = [_source(entry, f"{file} sources[{number}]") for number, entry in enumerate(entries)]
    return SplitRecord(
        sources,
        task=task,
        particle=particle,
        classes=classes,
        split=split,
        resample=resample,
        index=str(record.get("index", INDEX_RULE)),
        format=record_format,
    )
