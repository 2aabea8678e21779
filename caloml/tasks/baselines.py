"""The Triforce baselines as training tasks: ``python -m caloml.train {bdt,linreg,xgb}`` (models.md section 2).

* ``bdt --task {e-vs-pi,gamma-vs-pi0}``: :class:`~caloml.models.baselines.BDTClassifier`, gradient-boosted trees
  (XGBoost) on every expert feature of the LCD feature files, R9 included; tuned on the validation split by a
  seeded search: ``trainer.search_points`` points drawn without replacement from the grid ``model.max_depth`` x
  ``model.learning_rate`` x ``model.n_estimators``, each with early stopping on the validation split; the point of
  lowest validation log-loss is kept. The test split is never seen by the fit or the search.
* ``linreg --particle {electron,photon,pi0,chpi}``: ``E = a ECAL_E + b HCAL_E + c`` by least squares (GeV).
* ``xgb --particle ...``: XGBoost energy regression, depth 3, learning rate 0.3, up to 1000 rounds, early stopping
  after 10 rounds without improvement of the validation RMSE; the paper's features per particle type
  (:func:`~caloml.models.baselines.regression_feature_names`) unless ``model.features`` names others.

These models are not Keras models: each task fits itself (``task.fit(config, overwrite)``, which
:mod:`caloml.train` calls instead of the Keras trainer). They share the other conventions of ``caloml.train``:
the configuration tree ``{data, model, trainer, runtime}`` (presets ``quick`` and ``paper``, ``--config``,
``--set``), ``--seed``, ``--print-config``, the run directory and a JSON summary at the end. The Keras trainer's
``--strategy``, ``--cpu-replicas``, ``--epochs``, ``--batch-size``, ``--steps-per-epoch``, ``--init-from`` and
``--export`` are refused with a one-line error.

Data
----
The data section and its rules are those of the Triforce network task (:mod:`caloml.tasks.triforce`), so that the
same settings give the same files and the same test events, and baselines and networks are compared on them: the
default data request, the task filters, the split and ``test_events.json`` come from one implementation,
:mod:`caloml.tasks.reco_split` (and :func:`caloml.tasks.triforce_data.filter_mask`), used by both.

Without ``--data``, the simulator's ``lcd-rec`` layout (ECAL 51 x 51 x 25, HCAL 11 x 11 x 60, expert features) for
each particle type of the run (the BDT task's two, or the regression's one): ``data.events_per_particle`` showers
times ``data.simulation_factor[particle]`` (charged pions 20: few of the simulator's pass HCAL/ECAL < 0.1, about
0.7% over 10-510 GeV), primary energies ``data.energy_range_gev`` (10-510 GeV), seed ``100 data.simulation_seed +
k`` for the particle's position ``k`` in its task (electron, chpi; photon, pi0), simulated once and cached as
TFRecords under ``tf_records/`` (:func:`caloml.tasks.default_data.cached_simulation`, role ``triforce``; see
:func:`caloml.tasks.reco_split.default_data_request`). More than ``data.max_simulated_showers`` (2,000,000)
showers in all is refused with a one-line error (the ``paper`` preset's charged pions: 10,000,000); the run prints
how many events of each class passed the cuts. ``--data`` takes the user's files instead: LCD HDF5 files (e.g. the
Triforce feature files) or caloml TFRecord directories holding the expert features, ``ECAL_E``, ``HCAL_E``,
``energy`` and ``pdgID`` (``openingAngle`` for neutral pions). Only these scalars are read (with the Triforce
task's reader, :func:`caloml.tasks.triforce.read_scalars`), never the cell arrays, unless the data is resampled
(below).

Resampling (seed 004 section 5.4): ``--resample {atlas,cms}`` (``data.resample``, default ``none``) fits the
baseline on the ECAL resampled to an ATLAS-like or CMS-like granularity, as the Triforce network task trains on it
(:mod:`caloml.data.resampling`). The expert features depend on the ECAL cell pattern (R9, hit counts, layer ratios,
moments), so they are recomputed: the ECAL and HCAL cells of the events kept in a split are read (HDF5 rows, or the
TFRecord records, decoded), the ECAL (the full 51 x 51 x 25 window; a cropped ECAL is refused) is resampled and
every expert feature the model uses is recomputed from the cells by
:func:`caloml.data.resampling.resample_events` (:func:`caloml.data.lcd_features.expert_features`), the function the
reconstruction evaluation applies to its test events. A file lacking stored expert features is then accepted. The
split and the cuts read the stored scalars, which the resampling does not change (it conserves ``ECAL_E`` and leaves
the HCAL as it is), so the test events are those of the run without resampling. ``linreg``'s ``ECAL_E`` and
``HCAL_E`` are recomputed too (the sums of the cells, equal to the stored sums up to float rounding).

Source ``k`` (the k-th path of ``--data``; for the default data the particle's position in its task) of ``N``
events:

1. the split: ``caloml.tasks.triforce_data.split_indices(N, data.split_fractions, seed=1000 data.split_seed + k)``
   gives the training, validation and test events (0.6 / 0.2 / 0.2; each fraction must be > 0);
2. the task filters of :mod:`caloml.tasks.triforce_data` drop events from every split (charged pions
   HCAL/ECAL < 0.1, neutral pions opening angle < 0.01 rad; a regression uses the filters of the task its particle
   belongs to, as the paper regressed on the classification data sets); a pdgID outside the BDT's task is an
   error; a regression keeps the events of its particle type and skips the others (so a network run's file list
   gives the network run's test events);
3. charged-pion regression only: events whose raw sum ``(ECAL_E + HCAL_E) x 50`` is below
   ``data.chpi_min_raw_fraction`` (30%) of the true energy are dropped from every split (the regression's test
   events are then a subset of the networks' ones).

Every split must hold events (and, for the BDT, both classes): a one-line CalomlError otherwise. Non-finite
values are refused with the file, key and event named.

Run directory
-------------
::

    RUN/config.yaml          the resolved configuration, seed included
    RUN/baseline.json        the fitted model (kind, features, coefficients or settings): load_baseline(RUN)
    RUN/model.json           bdt and xgb: the XGBoost model in XGBoost's JSON format (no pickle)
    RUN/search.json          bdt: every point of the search with its validation log-loss, and the chosen one
    RUN/test_events.json     the split (format below)
    RUN/test_predictions.npz source_index, event_index, truth (class or GeV), prediction (P(class 1) or GeV)
    RUN/summary.json         data sizes, validation and test metrics, time; written last: the run is complete

A rerun with the same configuration (up to ``runtime.run_dir`` and ``runtime.progress``) of a complete run
reuses it and prints its summary; a different configuration is refused unless ``--overwrite`` moves the old
directory aside (:class:`caloml.training.run_directory.RunDirectory`); an incomplete run (no ``summary.json``) is
fitted again. Every file is written atomically.

``test_events.json`` is the Triforce network task's format (``caloml-triforce-split`` version 1, written by
:func:`caloml.tasks.reco_split.split_record`, read back by :func:`caloml.tasks.triforce.read_split`), with the
regression's particle type added::

    {"format": "caloml-triforce-split", "version": 1,
     "task": "e-vs-pi",                   # the BDT's task, or the task whose filters a regression applied
     "particle": "chpi",                  # regressions only
     "classes": [{"label": 0, "pdgID": 11, "particle": "electron"}, {"label": 1, "pdgID": 211, ...}],
     "split": {"fractions": [0.6, 0.2, 0.2], "seed": 1, "rule": "...", "cuts": [...]},  # the steps above
     "index": "...",                      # what an event index is
     "sources": [{"path": "/abs/path", "format": "hdf5" | "tfrecords", "n_events": N,
                  "particle": "electron", # when the kept events are of one type (else null)
                  "label": 0,             # its class index in the task, likewise
                  "test_indices": [3, 7, ...],   # sorted event indices of the source: test split, after the cuts
                  "n_test": 2}, ...],
     "resample": "none"}                  # the ECAL granularity the baseline was fitted on: none, atlas or cms

An event index is the row of an HDF5 file, or the record number of a TFRecord directory read shard after shard
in the order of its ``metadata.json``.

Metrics (``summary.json``, ``test_metrics``): the BDT's AUC of P(class 1) (class 1: the task's second PDG code,
pi+- or pi0), its accuracy (the most probable class) and events per class; the regressions' relative bias and
resolution, mean and standard deviation (``ddof=1``) of ``(E_true - E_pred) / E_true``, overall and in the
evaluation's 25 GeV bins of the true energy (10-35, 35-60, ... GeV; :func:`regression_metrics`, with
:func:`caloml.evaluate.reconstruction_metrics.binned_response`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

import caloml
from caloml.atomic_files import atomic_write_json
from caloml.data.resampling import RESAMPLE_CHOICES, check_resample
from caloml.errors import CalomlError, DataError
from caloml.sim.particles import PDG_ID
from caloml.tasks.reco_split import (
    MAX_SIMULATED_SHOWERS,
    SPLIT_FILE,
    SourceSplit,
    check_default_data_size,
    check_split_fractions,
    default_data_request,
    describe_filters,
    filter_counts_line,
    source_entry,
    split_record,
    split_source,
    task_of_particle,
)
from caloml.tasks.triforce_data import TASKS as RECO_TASKS
from caloml.tasks.triforce_data import ReconstructionTask, get_task
from caloml.training.config import config_to_dict, write_config
from caloml.training.run_directory import RunDirectory

__all__ = [
    "BDT_TASK",
    "LINREG_TASK",
    "XGB_TASK",
    "BaselineRunDirectory",
    "SplitEvents",
    "default_data_request",
    "load_split",
    "read_source",
    "resampled_features",
    "test_events_record",
]

#: Role of the cached default data (shared with the Triforce network task).
DEFAULT_DATA_ROLE = "triforce"
#: Width of the true-energy bins of the regression metrics (GeV).
ENERGY_BIN_GEV = 25.0
SPLIT_NAMES = ("train", "validation", "test")


# -- configuration -----------------------------------------------------------------------------------------------------
@dataclass
class BaselineData:
    """Data section shared by the baselines: the Triforce network task's data section, so that the same settings
    give the same default data and the same test events (see the module docstring).

    Attributes:
        files: LCD HDF5 files or TFRecord directories; empty: simulate (once, cached) the default data.
        events_per_particle: showers per particle type of the default data (before the split and the filters).
        simulation_factor: per particle type, a factor on ``events_per_particle`` for the default data (charged
            pions 20: few of the simulator's pass the HCAL/ECAL < 0.1 cut, about 0.7% over 10-510 GeV).
        energy_range_gev: primary energies of the default data, GeV.
        simulation_seed: seed of the default data (particle ``k`` of the task uses ``100 s + k``).
        split_fractions: training, validation and test fractions of every source (before the filters), each > 0.
        split_seed: seed of the split (source ``k`` uses ``1000 split_seed + k``), independent of ``runtime.seed``.
        max_simulated_showers: the most showers the default data may simulate in all (a larger request is refused
            with a one-line error; see :func:`caloml.tasks.reco_split.check_default_data_size`).
        resample: ``none`` (CLIC granularity), ``atlas`` or ``cms``: the expert features recomputed from the ECAL
            resampled to that granularity (see the module docstring).
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


@dataclass
class ClassificationData(BaselineData):
    """Data section of the BDT: ``task`` is ``e-vs-pi`` or ``gamma-vs-pi0``."""

    task: str = "e-vs-pi"


@dataclass
class RegressionData(BaselineData):
    """Data section of the energy regressions.

    Attributes:
        particle: ``electron``, ``photon``, ``pi0`` or ``chpi`` (one model per particle type).
        chpi_min_raw_fraction: charged pions whose raw sum is below this fraction of the true energy are removed.
    """

    particle: str = "electron"
    chpi_min_raw_fraction: float = 0.3


@dataclass
class BaselineRuntime:
    """Runtime section of the baselines.

    Attributes:
        run_dir: the run directory (default ``runs/<model>-<task or particle>``).
        seed: seed of the model fits and of the BDT's search.
        progress: progress bars while simulating the default data.
        threads: XGBoost threads (0: every core); the fitted model does not depend on it.
    """

    run_dir: str = ""
    seed: int = 1
    progress: bool = True
    threads: int = 0


@dataclass
class BDTModel:
    """The BDT's search space (see :class:`caloml.models.baselines.BDTClassifier`).

    Attributes:
        features: input features (empty: every expert feature, R9 included).
        max_depth, learning_rate, n_estimators: the grid; ``n_estimators`` is the maximum number of trees, early
            stopping picks the number used.
    """

    features: list[str] = field(default_factory=list)
    max_depth: list[int] = field(default_factory=lambda: [3, 5, 7])
    learning_rate: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.3])
    n_estimators: list[int] = field(default_factory=lambda: [300, 1000])


@dataclass
class BDTTrainer:
    """The BDT's search: ``search_points`` grid points drawn with ``runtime.seed``, early stopping on validation."""

    search_points: int = 6
    early_stopping_rounds: int = 20


@dataclass
class BDTConfig:
    """The BDT run configuration."""

    data: ClassificationData = field(default_factory=ClassificationData)
    model: BDTModel = field(default_factory=BDTModel)
    trainer: BDTTrainer = field(default_factory=BDTTrainer)
    runtime: BaselineRuntime = field(default_factory=BaselineRuntime)


@dataclass
class LinRegModel:
    """The linear regression has no settings: ``E = a ECAL_E + b HCAL_E + c``."""


@dataclass
class LinRegTrainer:
    """Least squares has no training settings."""


@dataclass
class LinRegConfig:
    """The linear-regression run configuration."""

    data: RegressionData = field(default_factory=RegressionData)
    model: LinRegModel = field(default_factory=LinRegModel)
    trainer: LinRegTrainer = field(default_factory=LinRegTrainer)
    runtime: BaselineRuntime = field(default_factory=BaselineRuntime)


@dataclass
class XGBModel:
    """XGBoost regression settings (seed 004 appendix D).

    Attributes:
        features: input features (empty: the paper's set of the particle type).
        max_depth, learning_rate, min_child_weight: the trees.
    """

    features: list[str] = field(default_factory=list)
    max_depth: int = 3
    learning_rate: float = 0.3
    min_child_weight: float = 1.0


@dataclass
class XGBTrainer:
    """Boosting rounds: up to ``max_rounds``, stopped after ``early_stopping_rounds`` without validation gain."""

    max_rounds: int = 1000
    early_stopping_rounds: int = 10


@dataclass
class XGBConfig:
    """The XGBoost regression run configuration."""

    data: RegressionData = field(default_factory=RegressionData)
    model: XGBModel = field(default_factory=XGBModel)
    trainer: XGBTrainer = field(default_factory=XGBTrainer)
    runtime: BaselineRuntime = field(default_factory=BaselineRuntime)


#: The Triforce network task's quick data (150 showers per particle type, 3,000 charged pions of which about 20
#: pass the e-vs-pi cut): the same cached files and test events; seconds once simulated.
_QUICK_DATA: dict[str, Any] = {"events_per_particle": 150}
#: The Triforce network task's paper data (seed 004 section 5.2: 400,000 training and 400,000 test events). Its cost
#: (see caloml.tasks.triforce.PRESETS): e-vs-pi and chpi would simulate 500,000 x 20 = 10,000,000 charged pions,
#: above data.max_simulated_showers, and are refused unless --events, --data or a larger bound is given.
_PAPER_DATA: dict[str, Any] = {
    "events_per_particle": 500000,
    "simulation_factor": {"chpi": 20.0},
    "split_fractions": [0.4, 0.1, 0.4],
}

BDT_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"data": _QUICK_DATA, "model": {"n_estimators": [100, 300]}, "trainer": {"search_points": 3}},
    "paper": {"data": _PAPER_DATA, "trainer": {"search_points": 12}},
}
REGRESSION_PRESETS: dict[str, dict[str, Any]] = {"quick": {"data": _QUICK_DATA}, "paper": {"data": _PAPER_DATA}}


# -- data ----------------------------------------------------------------------------------------------------------
def read_source(
    path: str | Path, keys: Sequence[str], optional: Sequence[str] = ()
) -> tuple[Any, dict[str, np.ndarray]]:
    """The source (:class:`caloml.tasks.triforce.Source`) and its per-event scalars ``keys`` (and those of
    ``optional`` it has), (N,) each in event-index order (the Triforce task's reader: HDF5 rows, or TFRecord
    records shard after shard); GeV.

    Only the scalars are read. A missing key or a non-finite value is a one-line DataError naming the file, the
    key and the event.
    """
    from caloml.tasks.triforce import Source
    from caloml.tasks.triforce import read_scalars as read_source_scalars

    source = Source.open(path)
    scalars, _arrays = read_source_scalars(source, list(dict.fromkeys([*keys, *optional])))
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
        sources: the ``sources`` entries of ``test_events.json``.
        cuts: what was removed, in words.
        per_source: each source's :class:`~caloml.tasks.reco_split.SourceSplit`.
    """

    splits: dict[str, dict[str, np.ndarray]]
    sources: list[dict[str, Any]]
    cuts: list[str]
    per_source: list[SourceSplit] = field(default_factory=list)


def load_split(
    paths: Sequence[str | Path],
    keys: Sequence[str],
    *,
    task: ReconstructionTask,
    fractions: Sequence[float],
    seed: int,
    particle: str | None = None,
    source_numbers: Sequence[int] | None = None,
    chpi_min_raw_fraction: float = 0.3,
    resample: str = "none",
) -> SplitEvents:
    """Read, split and filter the sources (see the module docstring); ``particle`` set: a regression of that type.

    ``task`` gives the filters (and, for a classification, the labels); source ``k`` (``source_numbers[i]``,
    default ``i``) is split with seed ``1000 seed + k``. Raises CalomlError when a split is empty, a class is
    missing or an event has a pdgID outside the task. ``resample`` ``atlas`` or ``cms``: the expert features among
    ``keys`` are recomputed from the resampled cells of the kept events (:func:`resampled_features`); the split and
    the cuts are those without resampling.
    """
    from caloml.data.lcd_features import EXPERT_FEATURE_KEYS

    check_resample(resample, where="resample")
    recomputed_keys = [k for k in dict.fromkeys(keys) if k in EXPERT_FEATURE_KEYS] if resample != "none" else []
    # with resampling, features other than the sums (the cuts read them) may be absent: they are computed
    required = [k for k in keys if k not in recomputed_keys or k in ("ECAL_E", "HCAL_E")]
    optional_keys = [k for k in recomputed_keys if k not in required]
    fractions = check_split_fractions(fractions)
    if not paths:
        raise CalomlError("no input files (data.files)")
    numbers = list(range(len(paths))) if source_numbers is None else list(source_numbers)
    parts: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in SPLIT_NAMES}
    sources = []
    cuts = [f"the {task.name} task filters ({describe_filters(task)})"]
    if particle is not None:
        cuts.append(f"{particle} events only")
    if particle == "chpi":
        cuts.append(f"raw sum (ECAL_E + HCAL_E) x 50 >= {chpi_min_raw_fraction:g} x the true energy")
    filter_keys = [k for filters in task.filters.values() for f in filters for k in f.required_keys]
    per_source: list[SourceSplit] = []
    for number, path in zip(numbers, paths, strict=True):
        source, scalars = read_source(path, [*required, "pdgID"], optional=[*optional_keys, *filter_keys])
        extra_keep = None
        if particle == "chpi":
            from caloml.models.baselines import raw_energy_mask

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
            used = np.sort(np.concatenate([split.indices[name] for name in SPLIT_NAMES]))
            for key, values in resampled_features(source, used, resample, recomputed_keys).items():
                column = np.zeros(source.n_events, np.float32)
                if key in scalars:
                    column[:] = scalars[key]
                column[used] = values
                scalars[key] = column
        for name in SPLIT_NAMES:
            rows = split.indices[name]
            part = {key: value[rows] for key, value in scalars.items()}
            part["event_index"] = rows.astype(np.int64)
            part["source_index"] = np.full(rows.size, number, dtype=np.int64)
            if particle is None:
                part["class_label"] = split.labels[rows]
            parts[name].append(part)
        sources.append(source_entry(str(source.path), source.format, split, task))
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


def resampled_features(source: Any, indices: np.ndarray, resample: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Expert features ``keys`` (:data:`caloml.data.lcd_features.EXPERT_FEATURE_KEYS`) of the events ``indices``
    (sorted event indices) of ``source`` (:class:`caloml.tasks.triforce.Source`), recomputed from its ECAL resampled
    to ``resample`` (``atlas``, ``cms``) and its HCAL by :func:`caloml.data.resampling.resample_events`: (len(indices),)
    float32 each, in the order of ``indices``.

    The source needs dense ECAL (51 x 51 x 25) and HCAL cells: a one-line DataError otherwise.
    """
    from caloml.data.resampling import resample_events
    from caloml.tasks.triforce import cell_shapes

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


def _iter_cells(source: Any, indices: np.ndarray) -> Any:
    """Batches ``{"ECAL", "HCAL"}`` (GeV) of the events ``indices`` (sorted) of ``source``, in that order."""
    if source.format == "hdf5":
        from caloml.data.lcd import LCDReader

        with LCDReader(source.path, keys=["ECAL", "HCAL"], chunk_events=_RESAMPLE_CHUNK) as reader:
            for start in range(0, len(indices), _RESAMPLE_CHUNK):
                yield reader.read(indices[start : start + _RESAMPLE_CHUNK])
        return
    import tensorflow as tf

    from caloml.data.tfrecord import decode_batch, read_metadata
    from caloml.tasks.triforce import _ordered_records

    metadata = read_metadata(source.path)
    selected = {**metadata, "arrays": {k: metadata["arrays"][k] for k in ("ECAL", "HCAL")}, "scalars": {}}
    wanted = np.zeros(source.n_events, dtype=bool)
    wanted[indices] = True
    keep = tf.constant(wanted)
    records = (
        _ordered_records(source.path, metadata)
        .enumerate()
        .filter(lambda index, record: tf.gather(keep, index))
        .map(lambda index, record: record)
        .batch(_RESAMPLE_CHUNK)
        .map(lambda serialized: decode_batch(serialized, selected))
    )
    for batch in records:
        yield {key: value.numpy() for key, value in batch.items()}


def test_events_record(
    split: SplitEvents, task: ReconstructionTask, data: BaselineData, particle: str | None
) -> dict[str, Any]:
    """The content of ``RUN/test_events.json``: :func:`caloml.tasks.reco_split.split_record`, the networks' format."""
    return split_record(
        task,
        fractions=data.split_fractions,
        seed=data.split_seed,
        cuts=split.cuts,
        sources=split.sources,
        resample=data.resample,
        particle=particle,
    )


# -- metrics -------------------------------------------------------------------------------------------------------
def classification_metrics(labels: np.ndarray, probability: np.ndarray) -> dict[str, Any]:
    """AUC of P(class 1), accuracy of the most probable class and events per class; ``probability`` (N, 2)."""
    from sklearn.metrics import roc_auc_score

    return {
        "auc": float(roc_auc_score(labels, probability[:, 1])),
        "accuracy": float(np.mean(probability.argmax(axis=1) == labels)),
        "events_per_class": [int(np.sum(labels == c)) for c in range(probability.shape[1])],
    }


def regression_edges(true_gev: np.ndarray, bin_gev: float = ENERGY_BIN_GEV) -> np.ndarray:
    """Bins of the true energy (GeV): the evaluation's, ``bin_gev`` wide from 10 to 510 GeV
    (:func:`caloml.evaluate.reconstruction_metrics.energy_edges`), extended by whole bins below and above to hold
    every event of ``true_gev``."""
    from caloml.evaluate.reconstruction_metrics import energy_edges

    low, high = 10.0, 510.0
    if true_gev.size:
        if float(true_gev.min()) < low:
            low -= bin_gev * math.ceil((low - float(true_gev.min())) / bin_gev)
        if float(true_gev.max()) > high:
            high += bin_gev * math.ceil((float(true_gev.max()) - high) / bin_gev)
    return energy_edges(bin_gev, low, high)


def regression_metrics(true_gev: np.ndarray, predicted_gev: np.ndarray, bin_gev: float = ENERGY_BIN_GEV) -> dict:
    """Relative bias and resolution of ``(E_true - E_pred) / E_true``, overall and in ``bin_gev`` bins of E_true.

    The evaluation's definitions (:func:`caloml.evaluate.reconstruction_metrics.binned_response`): the bias is the
    mean, the resolution the standard deviation (``ddof=1``); the bins are :func:`regression_edges`. ``bins`` lists
    the non-empty bins (``energy_gev`` [low, high), ``n``, ``bias``, ``resolution``, their errors and the robust
    ``resolution_iqr68``; None where a bin has fewer than 2 events).
    """
    from caloml.evaluate.reconstruction_metrics import binned_response

    true_gev = np.asarray(true_gev, dtype=np.float64).reshape(-1)
    predicted_gev = np.asarray(predicted_gev, dtype=np.float64).reshape(-1)
    relative = (true_gev - predicted_gev) / true_gev
    binned = binned_response(true_gev, predicted_gev, regression_edges(true_gev, bin_gev))
    edges = binned["edges"]

    def number(value: float) -> float | None:
        return float(value) if math.isfinite(value) else None

    bins = [
        {
            "energy_gev": [float(edges[b]), float(edges[b + 1])],
            "n": int(binned["counts"][b]),
            **{key: number(binned[key][b]) for key in ("bias", "bias_error", "resolution", "resolution_error")},
            "resolution_iqr68": number(binned["resolution_iqr68"][b]),
        }
        for b in range(len(edges) - 1)
        if binned["counts"][b] > 0
    ]
    return {
        "relative_bias": float(relative.mean()),
        "relative_resolution": float(relative.std(ddof=1)) if relative.size > 1 else math.nan,
        "n": int(relative.size),
        "bins": bins,
    }


# -- run directory -------------------------------------------------------------------------------------------------
class BaselineRunDirectory(RunDirectory):
    """A baseline's run directory: complete once ``summary.json`` is written (it plays the checkpoint's part)."""

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    def has_checkpoint(self) -> bool:
        """Whether a complete fit is stored."""
        return self.summary.is_file()


def _atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **dict[str, Any](arrays))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the tasks -----------------------------------------------------------------------------------------------------
class _BaselineTask:
    """What the three baselines share: flags, data, run directory, saving and the summary."""

    name = ""
    config_class: type = object
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:
        parser.add_argument("--data", nargs="+", metavar="PATH", help="LCD HDF5 files or TFRecord dirs (default: "
                            "simulate lcd-rec data and cache it under tf_records/)")  # fmt: skip
        parser.add_argument("--events", type=int, help="showers per particle type of the default data")
        parser.add_argument("--energy-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="GeV")
        parser.add_argument(
            "--resample",
            choices=RESAMPLE_CHOICES,
            help="fit on expert features recomputed from the ECAL resampled to an ATLAS- or CMS-like granularity"
            " (default: none, CLIC's)",
        )

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return {
            "data.files": args.data,
            "data.events_per_particle": args.events,
            "data.energy_range_gev": args.energy_range,
            "data.resample": args.resample,
        }

    def default_run_dir(self, config: Any) -> Path:
        """``runs/<model>-<task or particle>``, with ``-<resample>`` appended for resampled data."""
        suffix = "" if config.data.resample == "none" else f"-{config.data.resample}"
        return Path("runs") / f"{self.name}-{self._subject(config)}{suffix}"

    def _subject(self, config: Any) -> str:
        raise NotImplementedError

    def _particles(self, config: Any) -> tuple[str, ...]:
        raise NotImplementedError

    def _sources(self, config: Any) -> tuple[list[str], list[int]]:
        """The input paths and their source numbers ``k`` (the split seed is ``1000 split_seed + k``)."""
        data = config.data
        if data.files:
            return list(data.files), list(range(len(data.files)))
        from caloml.tasks.default_data import cached_simulation

        check_default_data_size(self._particles(config), data)
        paths, numbers = [], []
        for particle in self._particles(config):
            request = default_data_request(particle, data)
            paths.append(str(cached_simulation(request, DEFAULT_DATA_ROLE, progress=config.runtime.progress)))
            numbers.append(task_of_particle(particle).particles.index(particle))  # its number in the network task
        return paths, numbers

    def _threads(self, config: Any) -> int | None:
        if config.runtime.threads < 0:
            raise CalomlError(f"runtime.threads must be 0 (every core) or positive, got {config.runtime.threads}")
        return config.runtime.threads or None

    def _check(self, config: Any) -> None:
        """Refuse bad settings before any data is read."""

    def _fit(self, config: Any, split: SplitEvents, run_path: Path) -> tuple[Any, dict[str, Any]]:
        """Fit, save into ``run_path``; returns (model, summary fields)."""
        raise NotImplementedError

    def fit(self, config: Any, *, overwrite: bool = False) -> dict[str, Any]:
        """Fit the baseline with the resolved ``config``; returns the JSON summary (see the module docstring)."""
        start = time.perf_counter()
        check_resample(config.data.resample)
        check_split_fractions(config.data.split_fractions)
        self._check(config)
        self._threads(config)  # checked before anything is written
        run_path = Path(config.runtime.run_dir) if config.runtime.run_dir else self.default_run_dir(config)
        config = replace(config, runtime=replace(config.runtime, run_dir=str(run_path)))
        run = BaselineRunDirectory(run_path)
        if run.prepare(config_to_dict(config), overwrite=overwrite):
            summary = json.loads(run.summary.read_text())
            print(f"{run_path}: already fitted with this configuration; reusing it (--overwrite to refit)")
            return {**summary, "reused": True}
        keys, task, particle = self._data_spec(config)
        paths, numbers = self._sources(config)
        split = load_split(
            paths,
            keys,
            task=task,
            fractions=config.data.split_fractions,
            seed=config.data.split_seed,
            particle=particle,
            source_numbers=numbers,
            chpi_min_raw_fraction=float(getattr(config.data, "chpi_min_raw_fraction", 0.0)),
            resample=config.data.resample,
        )
        run_path.mkdir(parents=True, exist_ok=True)
        write_config(config, run.config)
        print(filter_counts_line(task, split.per_source))
        atomic_write_json(run_path / SPLIT_FILE, test_events_record(split, task, config.data, particle))
        fit_start = time.perf_counter()
        _model, fields = self._fit(config, split, run_path)
        summary = {
            "model": self.name,
            "run_dir": str(run_path),
            "load_with": f"caloml.models.baselines.load_baseline({str(run_path)!r})",
            "seed": config.runtime.seed,
            "resample": config.data.resample,
            "sources": [source["path"] for source in split.sources],
            "events": {name: int(events["pdgID"].size) for name, events in split.splits.items()},
            **fields,
            "fit_seconds": round(time.perf_counter() - fit_start, 2),
            "seconds": round(time.perf_counter() - start, 2),
            "caloml_version": caloml.__version__,
        }
        atomic_write_json(run.summary, summary)
        return {**summary, "reused": False}

    def _data_spec(self, config: Any) -> tuple[list[str], ReconstructionTask, str | None]:
        raise NotImplementedError


class BDTTask(_BaselineTask):
    """Classification BDT (XGBoost) on every expert feature, R9 included, tuned on a validation split."""

    name = "bdt"
    config_class = BDTConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = BDT_PRESETS

    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:
        parser.add_argument("--task", choices=sorted(RECO_TASKS), help="classification task (default e-vs-pi)")
        super().add_arguments(parser)

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return {**super().flags(args), "data.task": args.task}

    def _subject(self, config: BDTConfig) -> str:
        return config.data.task

    def _particles(self, config: BDTConfig) -> tuple[str, ...]:
        return get_task(config.data.task).particles

    def _features(self, config: BDTConfig) -> list[str]:
        from caloml.data.lcd_features import EXPERT_FEATURE_KEYS

        return list(config.model.features) or list(EXPERT_FEATURE_KEYS)

    def _check(self, config: BDTConfig) -> None:
        get_task(config.data.task)
        m, t = config.model, config.trainer
        if not (m.max_depth and m.learning_rate and m.n_estimators) or t.search_points < 1:
            raise CalomlError(
                "the BDT search needs model.max_depth, learning_rate, n_estimators and search_points >= 1"
            )
        if min(m.max_depth) < 1 or min(m.learning_rate) <= 0 or min(m.n_estimators) < 1:
            raise CalomlError("model.max_depth and n_estimators must be >= 1 and model.learning_rate > 0")

    def _data_spec(self, config: BDTConfig) -> tuple[list[str], ReconstructionTask, str | None]:
        from caloml.models.baselines import feature_source_keys

        return [*feature_source_keys(self._features(config)), "energy"], get_task(config.data.task), None

    def search_grid(self, config: BDTConfig) -> list[dict[str, float]]:
        """The ``trainer.search_points`` grid points tried, drawn without replacement with ``runtime.seed``."""
        m = config.model
        grid = [
            {"max_depth": d, "learning_rate": r, "n_estimators": n}
            for d, r, n in itertools.product(m.max_depth, m.learning_rate, m.n_estimators)
        ]
        rng = np.random.default_rng(config.runtime.seed)
        chosen = rng.choice(len(grid), size=min(config.trainer.search_points, len(grid)), replace=False)
        return [grid[int(i)] for i in chosen]

    def _fit(self, config: BDTConfig, split: SplitEvents, run_path: Path) -> tuple[Any, dict[str, Any]]:
        from caloml.models.baselines import BDTClassifier

        train, validation, test = (split.splits[name] for name in SPLIT_NAMES)
        bdt = BDTClassifier(
            self._features(config),
            seed=config.runtime.seed,
            grid=self.search_grid(config),
            early_stopping_rounds=config.trainer.early_stopping_rounds,
            threads=self._threads(config),
        )
        bdt.fit(train, train["class_label"], validation, validation["class_label"])
        bdt.save(run_path, overwrite=True)
        chosen = {k: bdt.settings[k] for k in ("max_depth", "learning_rate", "n_estimators", "best_iteration")}
        chosen["validation_logloss"] = bdt.settings["validation_logloss"]
        atomic_write_json(
            run_path / "search.json",
            {
                "criterion": "lowest validation log-loss, each point early-stopped on the validation split",
                "space": {k: getattr(config.model, k) for k in ("max_depth", "learning_rate", "n_estimators")},
                "seed": config.runtime.seed,
                "points": bdt.settings["search"],
                "chosen": chosen,
            },
        )
        probability = bdt.predict_proba(test)
        _atomic_savez(
            run_path / "test_predictions.npz",
            {"source_index": test["source_index"], "event_index": test["event_index"], "truth": test["class_label"],
             "prediction": probability[:, 1]},
        )  # fmt: skip
        task = get_task(config.data.task)
        return bdt, {
            "task": task.name,
            "classes_pdg_id": list(task.classes),
            "chosen": chosen,
            "validation_metrics": classification_metrics(validation["class_label"], bdt.predict_proba(validation)),
            "test_metrics": classification_metrics(test["class_label"], probability),
        }


class _RegressionTask(_BaselineTask):
    presets: ClassVar[dict[str, dict[str, Any]]] = REGRESSION_PRESETS

    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:
        parser.add_argument("--particle", choices=list(PDG_ID), help="particle type (default electron)")
        super().add_arguments(parser)

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return {**super().flags(args), "data.particle": args.particle}

    def _subject(self, config: Any) -> str:
        return str(config.data.particle)

    def _particles(self, config: Any) -> tuple[str, ...]:
        return (config.data.particle,)

    def _check(self, config: Any) -> None:
        if config.data.particle not in PDG_ID:
            raise CalomlError(f"unknown particle {config.data.particle!r}; choose one of {', '.join(PDG_ID)}")

    def _features(self, config: Any) -> list[str]:
        return ["ECAL_E", "HCAL_E"]

    def _data_spec(self, config: Any) -> tuple[list[str], ReconstructionTask, str | None]:
        from caloml.models.baselines import feature_source_keys

        keys = [*feature_source_keys(self._features(config)), "ECAL_E", "HCAL_E", "energy"]
        particle = config.data.particle
        return list(dict.fromkeys(keys)), task_of_particle(particle), particle

    def _finish(self, model: Any, split: SplitEvents, run_path: Path) -> dict[str, Any]:
        model.save(run_path, overwrite=True)
        test = split.splits["test"]
        predicted = model.predict(test)
        _atomic_savez(
            run_path / "test_predictions.npz",
            {"source_index": test["source_index"], "event_index": test["event_index"], "truth": test["energy"],
             "prediction": predicted},
        )  # fmt: skip
        validation = split.splits["validation"]
        return {
            "validation_metrics": regression_metrics(validation["energy"], model.predict(validation)),
            "test_metrics": regression_metrics(test["energy"], predicted),
        }


class LinRegTask(_RegressionTask):
    """Linear energy regression ``E = a ECAL_E + b HCAL_E + c`` (GeV) per particle type."""

    name = "linreg"
    config_class = LinRegConfig

    def _fit(self, config: LinRegConfig, split: SplitEvents, run_path: Path) -> tuple[Any, dict[str, Any]]:
        from caloml.models.baselines import LinearEnergyRegression

        model = LinearEnergyRegression().fit(split.splits["train"])
        a, b, c = model.coefficients or (math.nan,) * 3
        fields = {"particle": config.data.particle, "coefficients": {"a": a, "b": b, "c_gev": c}}
        return model, {**fields, **self._finish(model, split, run_path)}


class XGBTask(_RegressionTask):
    """XGBoost energy regression per particle type: depth 3, learning rate 0.3, early stopping on validation."""

    name = "xgb"
    config_class = XGBConfig

    def _features(self, config: XGBConfig) -> list[str]:
        from caloml.models.baselines import regression_feature_names

        return list(config.model.features) or list(regression_feature_names(config.data.particle))

    def _fit(self, config: XGBConfig, split: SplitEvents, run_path: Path) -> tuple[Any, dict[str, Any]]:
        from caloml.models.baselines import XGBoostEnergyRegression

        m, t = config.model, config.trainer
        model = XGBoostEnergyRegression(
            self._features(config),
            seed=config.runtime.seed,
            max_depth=m.max_depth,
            learning_rate=m.learning_rate,
            min_child_weight=m.min_child_weight,
            max_rounds=t.max_rounds,
            early_stopping_rounds=t.early_stopping_rounds,
            threads=self._threads(config),
        )
        model.fit(split.splits["train"], split.splits["validation"])
        fields = {
            "particle": config.data.particle,
            "features": list(model.feature_names),
            "early_stopping": {
                k: model.settings[k] for k in ("best_iteration", "rounds_trained", "validation_rmse_gev")
            },
        }
        return model, {**fields, **self._finish(model, split, run_path)}


BDT_TASK = BDTTask()
LINREG_TASK = LinRegTask()
XGB_TASK = XGBTask()
