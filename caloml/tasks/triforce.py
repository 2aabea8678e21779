"""The Triforce reconstruction training task (seed 004 section 5): data, split, pipeline, selection and export.

``python -m caloml.train triforce --arch {dnn,cnn,googlenet} --task {e-vs-pi,gamma-vs-pi0}`` binds
:class:`~caloml.models.triforce_nets.TriforceDNN`, :class:`~caloml.models.triforce_nets.TriforceCNN` or
:class:`~caloml.models.triforce_nets.TriforceGoogLeNet` to the shared trainer (config, checkpoints, resume,
TensorBoard, progress, selection, ``--init-from``, ``--export``)::

    python -m caloml.train triforce --arch dnn --task gamma-vs-pi0 --preset quick
    python -m caloml.train triforce --arch cnn --task e-vs-pi --preset paper --export
    python -m caloml.train triforce --arch googlenet --preset paper-googlenet --strategy mirrored

Data. Without ``--data`` the simulator's ``lcd-rec`` layout (ECAL 51 x 51 x 25, HCAL 11 x 11 x 60, the expert
features) is simulated once per particle of the task (electron + chpi, or photon + pi0), 10-510 GeV, and cached as
TFRecords under ``tf_records/`` (:func:`caloml.tasks.default_data.cached_simulation`). ``data.events_per_particle``
showers per particle, times ``data.simulation_factor[particle]``: the simulator's charged pions pass the
HCAL/ECAL < 0.1 filter rarely (0.4-0.75% measured), so the default simulates 20 times more of them, and the e-vs-pi
classes stay unbalanced (about 1 pion in 8 events); the run prints how many events of each class passed the filters.
A default data set of more than ``data.max_simulated_showers`` (2,000,000) showers in all is refused with a one-line
error (the ``paper`` preset's e-vs-pi would simulate 10,000,000 charged pions; see :data:`PRESETS`): give
``--events``, ``--data`` or raise the bound. The energy head is trained on both classes (true energies from
``energy``).
``--data PATH ...`` takes the user's own files instead: LCD reconstruction-layout HDF5 files or TFRecord
directories converted from them (``python -m caloml.data convert``), each holding either class or both.

Labels and filters (:mod:`caloml.tasks.triforce_data`): the class index comes from ``abs(pdgID)`` through the
task's explicit mapping (e-vs-pi: 11 -> 0, 211 -> 1; gamma-vs-pi0: 22 -> 0, 111 -> 1); a pdgID outside the task, or
a class without a training event, is a one-line error. The task filters (charged pions: HCAL_E < 0.1 ECAL_E; neutral
pions: openingAngle < 0.01 rad) drop events from every split.

Split (deterministic by ``data.split_seed``, independent of the training seed so that repeated trainings share
their test events; the rule, shared with the baselines, is :mod:`caloml.tasks.reco_split`): each source ``k`` with
``N`` events is split by
``caloml.tasks.triforce_data.split_indices(N, data.split_fractions, seed=data.split_seed * 1000 + k)`` into
train, validation and test index sets (each fraction > 0), then the task filters are applied. The **event index**
of a source is the HDF5 row of a file, or the record number of a TFRecord directory read shard after shard in the
order of its ``metadata.json`` (the conversion order). ``RUN/test_events.json`` records the test events (format
``caloml-triforce-split`` version 1, :func:`caloml.tasks.reco_split.split_record`)::

    {"format": "caloml-triforce-split", "version": 1, "task": "gamma-vs-pi0",
     "classes": [{"label": 0, "pdgID": 22, "particle": "photon"}, {"label": 1, "pdgID": 111, "particle": "pi0"}],
     "split": {"fractions": [0.6, 0.2, 0.2], "seed": 1, "rule": "...", "cuts": ["..."]},
     "index": "...",
     "resample": "none" | "atlas" | "cms",     # the ECAL granularity the run trained on (see Resampling)
     "sources": [{"path": "/abs/path", "format": "hdf5" | "tfrecords", "n_events": N,
                  "particle": "photon" | null, "label": 0 | null,   # when all its kept events are of one class
                  "test_indices": [sorted event indices that are in the test split AND pass the task filters],
                  "n_test": len(test_indices)}, ...]}

so an evaluation reads exactly ``test_indices`` of each source (:func:`read_split` gives them back;
:func:`split_dataset` gives the same prepared batches the networks train on). ``RUN/data_summary.json`` records
the per-split, per-class event counts and the fitted energy calibration.

Pipeline (``tf.data``): each source's events in order -> keep the split's indices (a boolean mask per source) ->
ECAL centre crop 25 x 25 (x 25 layers), HCAL 11 x 11 x 60, window sums ``ECAL_E``/``HCAL_E`` (computed from the
cells when a file lacks them), ``recoEta``, ``recoPhi`` -> ``class_label`` and ``energy`` (GeV) -> per source:
shard by input pipeline, shuffle (``data.shuffle_buffer``, seeded), repeat -> the sources interleaved by
``sample_from_datasets`` in proportion to their sizes (seeded) -> per-replica batches -> prefetch.

Resampling (seed 004 section 5.4): ``--resample {atlas,cms}`` (``data.resample``, default ``none``) trains and
validates on the ECAL resampled to an ATLAS-like or CMS-like granularity and spread back onto the CLIC grid
(:mod:`caloml.data.resampling`). The resampling acts on the ECAL window as read (51 x 51 x 25 for the lcd-rec files;
a cropped 25 x 25 ECAL is refused) **before** the 25 x 25 centre crop, so that its edge effects stay outside the
crop: TensorFlow (:class:`~caloml.data.resampling.Resample`) in the TFRecord pipeline, NumPy
(:func:`~caloml.data.resampling.resample_ecal`) for HDF5 files. It conserves each event's window energy, so
``ECAL_E`` is kept as it is (not recomputed); the energy inside the crop changes a little, as it would in the coarser
detector. The HCAL is neither resampled nor dropped: the paper resampled "only the ECAL 3D array" and "discards the
HCAL information" in the resampling, which we read as the HCAL being left out of the procedure, not out of the
networks' inputs (for gamma vs pi0, the paper's resampled comparison, the HCAL holds little energy anyway). The
split, the task filters and the energy calibration read scalars that the resampling does not change, so a
resampled run has exactly the test events of the CLIC run with the same data settings; ``test_events.json`` and
``data_summary.json`` record the setting as ``"resample"``, and the default run directory gets it as a suffix
(``runs/triforce-dnn-gamma-vs-pi0-atlas``).

Energy calibration: ``initial_energy_coefficients`` ``(a, b, c)`` of the networks' skip head are fitted by a linear
regression ``E = a ECAL_E + b HCAL_E + c`` on the training split (both classes), so that the untrained networks
already predict that calibration; they are written to ``RUN/data_summary.json`` and into the model's config.

Model selection: after every epoch, the validation split is classified; the selection metric is the
misclassification rate ``1 - accuracy`` (lower is better; the paper selects on gamma/pi0 accuracy); the accuracy
and the relative energy bias and resolution, mean and standard deviation of ``(E_true - E_pred) / E_true`` (the
evaluation's definition), are printed with it.

Learning rates and dropouts left at None (and ``micro_batch_size``) take the paper's per-architecture values
(:data:`PAPER_LEARNING_RATE`, :data:`PAPER_DROPOUT`, :data:`PAPER_MICRO_BATCH_SIZE`; GoogLeNet has no dropout).

GAN-train / GAN-test: :func:`train_classifier` is the classifier of :mod:`caloml.evaluate.gan_train_test`: a small
DNN on the ECAL only (the cropped 25 x 25 x 25 cells and their sum; its HCAL, HCAL sum and angles set to zero for
every file, since generated files have none),
trained on the evaluation's two files with their given labels, seeded (see its docstring).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.data.resampling import RESAMPLE_CHOICES, Resample, check_resample, resample_ecal
from caloml.errors import CalomlError, DataError
from caloml.tasks.reco_split import (
    MAX_SIMULATED_SHOWERS,
    SPLIT_FILE,
    SPLIT_FORMAT,
    SPLITS,
    SourceSplit,
    check_default_data_size,
    check_split_fractions,
    default_data_request,
    describe_filters,
    filter_counts_line,
    source_entry,
    split_source,
)
from caloml.tasks.reco_split import split_record as shared_split_record
from caloml.tasks.triforce_data import ReconstructionTask, get_task
from caloml.training.config import RuntimeConfig
from caloml.training.task import SelectionMetric, TrainerSection

__all__ = [
    "ARCHS",
    "PAPER_DROPOUT",
    "PAPER_LEARNING_RATE",
    "PAPER_MICRO_BATCH_SIZE",
    "PRESETS",
    "SPLIT_FILE",
    "TASK",
    "Source",
    "TriforceConfig",
    "TriforceInputs",
    "build_network",
    "read_split",
    "split_dataset",
    "train_classifier",
]

#: The three networks.
ARCHS: tuple[str, ...] = ("dnn", "cnn", "googlenet")
#: The paper's best learning rates (seed 004 section 5.2).
PAPER_LEARNING_RATE: dict[str, float] = {"dnn": 2e-4, "cnn": 4e-4, "googlenet": 1e-4}
#: The paper's best dropout probabilities (GoogLeNet has no dropout layer).
PAPER_DROPOUT: dict[str, float] = {"dnn": 0.04, "cnn": 0.12, "googlenet": 0.0}
#: The paper's micro-batches (gradient accumulation): GoogLeNet 10 events; None: off.
PAPER_MICRO_BATCH_SIZE: dict[str, int | None] = {"dnn": None, "cnn": None, "googlenet": 10}
#: Counts per split and class, and the fitted energy calibration, in the run directory.
SUMMARY_FILE = "data_summary.json"
#: Keys of the batches the pipeline yields (the networks' inputs, the class index and the true energy in GeV).
BATCH_KEYS = ("ECAL", "HCAL", "ECAL_E", "HCAL_E", "recoEta", "recoPhi", "class_label", "energy")
_ECAL_CROP = (25, 25, 25)
_HCAL_SHAPE = (11, 11, 60)
_READ_CHUNK = 64


# ----------------------------------------------------------------------------------------------- configuration
@dataclass
class TriforceData:
    """Data section.

    Attributes:
        files: the user's LCD reconstruction-layout HDF5 files or TFRecord directories (empty: the simulated
            default data).
        events_per_particle: showers per particle of the default data (before the split and the filters).
        simulation_factor: per particle, a factor on ``events_per_particle`` for the default data (charged pions:
            20, since few pass the HCAL/ECAL < 0.1 filter).
        energy_range_gev: primary energies of the default data, GeV.
        simulation_seed: seed of the default data (particle ``k`` of the task uses ``100 s + k``).
        split_fractions: train, validation and test fractions of every source (before the filters), each > 0.
        split_seed: seed of the split (independent of ``runtime.seed``).
        max_simulated_showers: the most showers the default data may simulate in all (a larger request is refused
            with a one-line error; see :func:`caloml.tasks.reco_split.check_default_data_size`).
        shuffle_buffer: events in each source's shuffle buffer.
        resample: ``none`` (the CLIC granularity), ``atlas`` or ``cms``: train and validate on the ECAL resampled
            to that detector's granularity (seed 004 section 5.4; see "Resampling" in the module docstring).
    """

    files: list[str] = field(default_factory=list)
    events_per_particle: int = 5000
    simulation_factor: dict[str, float] = field(default_factory=lambda: {"chpi": 20.0})
    energy_range_gev: tuple[float, float] = (10.0, 510.0)
    simulation_seed: int = 1
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split_seed: int = 1
    max_simulated_showers: int = MAX_SIMULATED_SHOWERS
    shuffle_buffer: int = 1024
    resample: str = "none"


@dataclass
class TriforceModelSection:
    """Model section (see :mod:`caloml.models.triforce_nets`); None means the arch's paper default.

    Attributes:
        arch: ``dnn``, ``cnn`` or ``googlenet``.
        task: ``e-vs-pi`` or ``gamma-vs-pi0``.
        n_hidden_layers, hidden_units: the dense stack of the DNN and CNN.
        dropout: dropout of the DNN and CNN dense stack (None: 0.04 DNN, 0.12 CNN).
        learning_rate: Adam learning rate (None: 2e-4 DNN, 4e-4 CNN, 1e-4 GoogLeNet).
        ecal_filters, ecal_kernel: the CNN's ECAL convolution (filters, cubic kernel edge).
        hcal_filters: the CNN's HCAL convolution filters (kernel 2 x 2 x 6).
        dense_units, width_multiplier: GoogLeNet's dense layer and convolution widths (x the paper's).
        energy_loss_weight: weight of the energy MSE in the loss (the paper's 200).
        micro_batch_size: gradient accumulation in micro-batches of this many events per replica (None: the arch
            default, 10 for GoogLeNet and off for the others; 0: off).
    """

    arch: str = "dnn"
    task: str = "gamma-vs-pi0"
    n_hidden_layers: int = 4
    hidden_units: int = 512
    dropout: float | None = None
    learning_rate: float | None = None
    ecal_filters: int = 6
    ecal_kernel: int = 6
    hcal_filters: int = 3
    dense_units: int = 1024
    width_multiplier: float = 1.0
    energy_loss_weight: float = 200.0
    micro_batch_size: int | None = None


@dataclass
class TriforceTrainer(TrainerSection):
    """Trainer section: the shared settings (the paper: batches of 1000 events)."""

    epochs: int = 3
    global_batch_size: int = 100
    selection_window: int = 3
    keep_checkpoints: int = 3


@dataclass
class TriforceConfig:
    """The whole Triforce run configuration."""

    data: TriforceData = field(default_factory=TriforceData)
    model: TriforceModelSection = field(default_factory=TriforceModelSection)
    trainer: TriforceTrainer = field(default_factory=TriforceTrainer)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


_SMALL_NETS = {
    "n_hidden_layers": 1,
    "hidden_units": 32,
    "ecal_filters": 2,
    "ecal_kernel": 3,
    "hcal_filters": 2,
    "dense_units": 32,
    "width_multiplier": 0.05,
}

PRESETS: dict[str, dict[str, Any]] = {
    # a 2-core CPU in well under a minute of training: the whole chain, not a converged network (small nets, a
    # learning rate above the paper's so that a few steps show learning, no micro-batches: GoogLeNet's accumulation
    # loop takes minutes to trace on a CPU)
    "quick": {
        "data": {"events_per_particle": 150, "shuffle_buffer": 256},
        "model": {**_SMALL_NETS, "learning_rate": 1e-3, "micro_batch_size": 0},
        "trainer": {"epochs": 3, "global_batch_size": 30, "selection_window": 3, "keep_checkpoints": 3},
    },
    # seed 004 section 5.2, DNN and CNN: 400,000 training and 400,000 test events (both classes), batches of 1000,
    # 3 epochs per scan point (the paper's networks at their best hyperparameters: the model defaults).
    # Cost of the default data: gamma-vs-pi0 simulates 500,000 photons + 500,000 pi0 (about 1 core-hour at 300
    # showers/s). e-vs-pi would simulate 500,000 electrons + 500,000 x 20 = 10,000,000 charged pions (about
    # 10 core-hours and some 3 TB of cells before compression; only 0.4-0.7% of the simulator's charged pions pass
    # HCAL/ECAL < 0.1, so about 50,000 pions would remain): above data.max_simulated_showers (2,000,000), so it is
    # refused unless --events, --data or a larger data.max_simulated_showers is given.
    "paper": {
        "data": {
            "events_per_particle": 500000,
            "simulation_factor": {"chpi": 20.0},
            "split_fractions": [0.4, 0.1, 0.4],
            "shuffle_buffer": 4096,
        },
        "trainer": {"epochs": 3, "global_batch_size": 1000},
    },
    # GoogLeNet: 100,000 training and 100,000 test events, one epoch, batches of 1000 in micro-batches of 10
    # (e-vs-pi: 125,000 x 20 = 2,500,000 charged pions, refused like "paper")
    "paper-googlenet": {
        "data": {
            "events_per_particle": 125000,
            "simulation_factor": {"chpi": 20.0},
            "split_fractions": [0.4, 0.1, 0.4],
            "shuffle_buffer": 4096,
        },
        "model": {"arch": "googlenet", "micro_batch_size": 10},
        "trainer": {"epochs": 1, "global_batch_size": 1000, "selection_window": 1},
    },
}


def learning_rate_of(model: TriforceModelSection) -> float:
    """The configured learning rate, or the arch's paper value."""
    return PAPER_LEARNING_RATE[model.arch] if model.learning_rate is None else float(model.learning_rate)


def dropout_of(model: TriforceModelSection) -> float:
    """The configured dropout, or the arch's paper value."""
    return PAPER_DROPOUT[model.arch] if model.dropout is None else float(model.dropout)


def micro_batch_size_of(model: TriforceModelSection) -> int | None:
    """The configured micro-batch size (None: off), or the arch's paper value."""
    if model.micro_batch_size is None:
        return PAPER_MICRO_BATCH_SIZE[model.arch]
    return int(model.micro_batch_size) or None


def check_config(config: TriforceConfig) -> ReconstructionTask:
    """Check the values the dataclass types do not; returns the reconstruction task."""
    m, d = config.model, config.data
    if m.arch not in ARCHS:
        raise CalomlError(f"model.arch must be one of {', '.join(ARCHS)}, got {m.arch!r}")
    task = get_task(m.task)
    positive = {
        "model.n_hidden_layers": m.n_hidden_layers,
        "model.hidden_units": m.hidden_units,
        "model.ecal_filters": m.ecal_filters,
        "model.hcal_filters": m.hcal_filters,
        "model.dense_units": m.dense_units,
        "data.events_per_particle": d.events_per_particle,
        "data.shuffle_buffer": d.shuffle_buffer,
    }
    for name, value in positive.items():
        if value < 1:
            raise CalomlError(f"configuration '{name}' must be at least 1, got {value}")
    if not 1 <= m.ecal_kernel <= 24:
        raise CalomlError(f"configuration 'model.ecal_kernel' must be in [1, 24], got {m.ecal_kernel}")
    if not m.width_multiplier > 0:
        raise CalomlError(f"configuration 'model.width_multiplier' must be positive, got {m.width_multiplier}")
    if m.dropout is not None and not 0.0 <= m.dropout < 1.0:
        raise CalomlError(f"configuration 'model.dropout' must be in [0, 1), got {m.dropout}")
    if m.learning_rate is not None and not m.learning_rate > 0:
        raise CalomlError(f"configuration 'model.learning_rate' must be positive, got {m.learning_rate}")
    if not (math.isfinite(m.energy_loss_weight) and m.energy_loss_weight >= 0):
        raise CalomlError(f"configuration 'model.energy_loss_weight' must be >= 0, got {m.energy_loss_weight}")
    if m.micro_batch_size is not None and m.micro_batch_size < 0:
        raise CalomlError(f"configuration 'model.micro_batch_size' must be >= 0 or null, got {m.micro_batch_size}")
    check_resample(d.resample)
    check_split_fractions(d.split_fractions)
    low, high = d.energy_range_gev
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise CalomlError(f"configuration 'data.energy_range_gev' must be 0 < low <= high, got {low:g} {high:g}")
    for particle, factor in d.simulation_factor.items():
        if not factor > 0:
            raise CalomlError(f"configuration 'data.simulation_factor.{particle}' must be positive, got {factor}")
    return task


# ------------------------------------------------------------------------------------------------------ sources
@dataclass(frozen=True)
class Source:
    """One input: an LCD HDF5 file (``hdf5``) or a TFRecord directory (``tfrecords``) of ``n_events`` events."""

    path: Path
    format: str
    n_events: int

    @classmethod
    def open(cls, path: str | Path) -> Source:
        """Identify ``path`` (DataError when it is neither an LCD HDF5 file nor a caloml TFRecord directory)."""
        path = Path(path)
        if path.is_dir():
            from caloml.data.tfrecord import read_metadata

            metadata = read_metadata(path)
            if metadata.get("layout") != "lcd":
                raise DataError(f"{path}: records of the {metadata.get('layout')} layout; Triforce needs LCD showers")
            return cls(path.resolve(), "tfrecords", int(metadata["n_events"]))
        if not path.is_file():
            raise DataError(f"{path}: no such HDF5 file or TFRecord directory")
        from caloml.data.lcd import LCDReader

        with LCDReader(path, keys=["energy"]) as reader:
            return cls(path.resolve(), "hdf5", len(reader))


def _scalars_hdf5(path: Path, wanted: Sequence[str]) -> tuple[dict[str, np.ndarray], set[str]]:
    """The per-event scalars of an HDF5 file (window sums computed from the cells when absent) and its arrays."""
    from caloml.data.lcd import LCDReader

    with LCDReader(path) as reader:
        keys = set(reader.keys)
        out = {key: reader.read_key(key) for key in wanted if key in keys}
        arrays = set(reader.array_keys)
        missing_sums = [k for k in ("ECAL", "HCAL") if f"{k}_E" not in keys and k in arrays and f"{k}_E" in wanted]
    for key in missing_sums:
        with LCDReader(path, keys=[key]) as reader:
            sums = [c[key].reshape(len(c[key]), -1).sum(axis=1, dtype=np.float64) for c in reader.iter_chunks()]
        out[f"{key}_E"] = np.concatenate(sums).astype(np.float32)
    return out, arrays


def _ordered_records(path: Path, metadata: Mapping[str, Any]) -> tf.data.Dataset:
    """The serialized records of a TFRecord directory in conversion order (shard after shard)."""
    from caloml.data.tfrecord import shard_paths

    compression = "" if metadata["encoding"].get("compression") == "NONE" else "GZIP"
    files = [str(p) for p in shard_paths(path, metadata)]
    return tf.data.TFRecordDataset(files, compression_type=compression)


def _scalars_tfrecords(path: Path, wanted: Sequence[str]) -> tuple[dict[str, np.ndarray], set[str]]:
    from caloml.data.tfrecord import feature_spec, read_metadata

    metadata = read_metadata(path)
    spec = feature_spec(metadata, scalars_only=True)
    columns: dict[str, list[np.ndarray]] = {}
    for batch in _ordered_records(path, metadata).batch(4096).map(lambda s: tf.io.parse_example(s, spec)):
        for key, value in batch.items():
            columns.setdefault(key, []).append(value.numpy().reshape(len(value), -1)[:, 0])
    arrays = set(metadata["arrays"])
    out: dict[str, np.ndarray] = {}
    for key in wanted:
        source = key if key in columns else (f"{key[:-2]}/sum" if key in ("ECAL_E", "HCAL_E") else "")
        if source in columns:
            value = np.concatenate(columns[source])
            out[key] = value.astype(np.int32 if key == "pdgID" else np.float32)
    return out, arrays


def read_scalars(source: Source, wanted: Sequence[str]) -> tuple[dict[str, np.ndarray], set[str]]:
    """The scalars ``wanted`` that ``source`` has (N,) in event-index order, and the names of its cell arrays."""
    if source.format == "hdf5":
        return _scalars_hdf5(source.path, wanted)
    return _scalars_tfrecords(source.path, wanted)


def cell_shapes(source: Source) -> dict[str, tuple[int, ...]]:
    """Event shapes of the ECAL and HCAL cell arrays that ``source`` holds (e.g. ``{"ECAL": (51, 51, 25)}``)."""
    if source.format == "hdf5":
        from caloml.data.lcd import LCDReader

        with LCDReader(source.path) as reader:
            return {k: tuple(reader.event_shapes[k]) for k in ("ECAL", "HCAL") if k in reader.array_keys}
    from caloml.data.tfrecord import read_metadata

    arrays = read_metadata(source.path)["arrays"]
    return {k: tuple(int(n) for n in arrays[k]["shape"]) for k in ("ECAL", "HCAL") if k in arrays}


# ----------------------------------------------------------------------------------------------------- the split
@dataclass
class TriforceInputs:
    """Located and split data.

    Attributes:
        task: the reconstruction task.
        sources: the inputs.
        masks: per split, per source, a boolean (N,) mask of the events of that split that pass the filters.
        labels: per source, the class index (N,) int32 of every event.
        counts: per split, the number of events of each class (label order).
        energy_coefficients: ``(a, b, c)`` of the linear calibration fitted on the training split.
        has_hcal: whether every source has HCAL cells (else the HCAL input is zero).
        resample: ``none``, ``atlas`` or ``cms``: the granularity the pipeline resamples the ECAL to (the split,
            the filters and the calibration do not depend on it).
        splits: per source, its :class:`~caloml.tasks.reco_split.SourceSplit` (the masks come from it).
    """

    task: ReconstructionTask
    sources: list[Source]
    masks: dict[str, list[np.ndarray]]
    labels: list[np.ndarray]
    counts: dict[str, list[int]]
    energy_coefficients: tuple[float, float, float]
    has_hcal: bool = True
    split_seed: int = 0
    split_fractions: tuple[float, ...] = ()
    run_dir: Path | None = None
    resample: str = "none"
    splits: list[SourceSplit] = field(default_factory=list)

    def n_events(self, split: str) -> int:
        """Events of ``split`` after the filters."""
        return int(sum(self.counts[split]))


def locate_and_split(
    paths: Sequence[str | Path],
    task: ReconstructionTask,
    *,
    fractions: Sequence[float],
    seed: int,
    resample: str = "none",
) -> TriforceInputs:
    """Identify the sources, label and filter their events, split them and fit the energy calibration.

    The split and the filters are :func:`caloml.tasks.reco_split.split_source`'s (the baselines' too); source ``k``
    is the ``k``-th path. ``resample`` (``none``, ``atlas``, ``cms``) only sets the granularity of the ECAL the
    datasets yield: the split, the task filters and the calibration read per-event scalars that the resampling
    leaves unchanged (it conserves ``ECAL_E`` and does not touch the HCAL), so they are the same for every setting.
    Resampling needs the full 51 x 51 ECAL window (a cropped ECAL is refused, as the baselines refuse it).
    """
    check_resample(resample, where="resample")
    from caloml.models.baselines import LinearEnergyRegression

    if not paths:
        raise CalomlError(f"task {task.name}: no input files")
    sources = [Source.open(p) for p in paths]
    wanted = ["pdgID", "energy", "ECAL_E", "HCAL_E", "recoEta", "recoPhi", "openingAngle"]
    masks: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    labels: list[np.ndarray] = []
    splits: list[SourceSplit] = []
    calibration: dict[str, list[np.ndarray]] = {"ECAL_E": [], "HCAL_E": [], "energy": []}
    has_hcal = True
    for k, source in enumerate(sources):
        scalars, arrays = read_scalars(source, wanted)
        for key in ("ECAL", "pdgID", "recoEta", "recoPhi", "HCAL"):
            if key not in scalars and key not in arrays:
                hint = " (Triforce needs the reconstruction files with the 11 x 11 x 60 HCAL)" if key == "HCAL" else ""
                hint += " (labels come from pdgID)" if key == "pdgID" else ""
                raise DataError(f"{source.path}: no '{key}' in the data{hint}")
        if resample != "none":
            window = cell_shapes(source).get("ECAL", ())[:2]
            if window != (51, 51):
                raise DataError(
                    f"{source.path}: ECAL window {window}: --resample {resample} needs the full 51 x 51 x 25 ECAL "
                    "(the resampling acts before the 25 x 25 crop)"
                )
        has_hcal &= "HCAL" in arrays
        if "HCAL_E" not in scalars:
            scalars["HCAL_E"] = np.zeros(source.n_events, np.float32)
        source_split = split_source(
            scalars, source.n_events, task, fractions=fractions, seed=seed, number=k, where=source.path
        )
        splits.append(source_split)
        for name in SPLITS:
            masks[name].append(source_split.mask(name))
        labels.append(source_split.labels)
        for key in calibration:
            calibration[key].append(scalars[key][source_split.indices["train"]].astype(np.float64))
    counts = {
        split: [
            sum(int(np.sum(m & (lab == c))) for m, lab in zip(masks[split], labels, strict=True))
            for c in range(len(task.classes))
        ]
        for split in SPLITS
    }
    for split in ("train", "validation"):
        for c, n in enumerate(counts[split]):
            if n == 0:
                raise CalomlError(
                    f"task {task.name}: no {split} event of class pdgID {task.classes[c]} ({task.particles[c]}) in "
                    f"the data after the split and the task filters"
                )
    batch = {key: np.concatenate(values) for key, values in calibration.items()}
    fit = LinearEnergyRegression().fit(batch)
    assert fit.coefficients is not None
    return TriforceInputs(
        task=task,
        sources=sources,
        masks=masks,
        labels=labels,
        counts=counts,
        energy_coefficients=fit.coefficients,
        has_hcal=has_hcal,
        split_seed=seed,
        split_fractions=tuple(float(f) for f in fractions),
        resample=resample,
        splits=splits,
    )


def split_record(inputs: TriforceInputs) -> dict[str, Any]:
    """The content of ``RUN/test_events.json`` (:func:`caloml.tasks.reco_split.split_record`)."""
    task = inputs.task
    return shared_split_record(
        task,
        fractions=inputs.split_fractions,
        seed=inputs.split_seed,
        cuts=[f"the {task.name} task filters ({describe_filters(task)})"],
        sources=[
            source_entry(str(source.path), source.format, split, task)
            for source, split in zip(inputs.sources, inputs.splits, strict=True)
        ],
        resample=inputs.resample,
    )


def read_split(path: str | Path) -> dict[str, Any]:
    """A run's ``test_events.json`` (``path`` is the run directory or the file), checked; see the module docstring.

    ``sources[i]["test_indices"]`` become sorted int64 arrays.
    """
    path = Path(path)
    file = path / SPLIT_FILE if path.is_dir() else path
    if not file.is_file():
        raise CalomlError(f"{file}: no such split file (written by python -m caloml.train triforce)")
    try:
        record = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CalomlError(f"{file}: unreadable split file ({type(error).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != SPLIT_FORMAT or record.get("version") != 1:
        raise CalomlError(f"{file}: not a {SPLIT_FORMAT} version 1 file")
    for source in record["sources"]:
        source["test_indices"] = np.asarray(source["test_indices"], dtype=np.int64)
    return dict(record)


# ------------------------------------------------------------------------------------------------------ pipeline
def _sum_cells(cells: np.ndarray) -> np.ndarray:
    return cells.reshape(len(cells), -1).sum(axis=1, dtype=np.float64).astype(np.float32)


def _finish_numpy(chunk: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Model inputs (ECAL cropped, HCAL or zeros, window sums) of a NumPy chunk of LCD events (GeV)."""
    ecal = np.asarray(chunk["ECAL"], dtype=np.float32)
    n = len(ecal)
    if "HCAL" in chunk:
        hcal = np.asarray(chunk["HCAL"], dtype=np.float32)
        hcal_sum = chunk["HCAL_E"] if "HCAL_E" in chunk else _sum_cells(hcal)
    else:
        hcal = np.zeros((n, *_HCAL_SHAPE), np.float32)
        hcal_sum = chunk.get("HCAL_E", np.zeros(n))
    x0, y0 = (ecal.shape[1] - _ECAL_CROP[0]) // 2, (ecal.shape[2] - _ECAL_CROP[1]) // 2
    out = {
        "ECAL": np.ascontiguousarray(ecal[:, x0 : x0 + _ECAL_CROP[0], y0 : y0 + _ECAL_CROP[1]]),
        "HCAL": hcal,
        "ECAL_E": np.asarray(chunk["ECAL_E"] if "ECAL_E" in chunk else _sum_cells(ecal), np.float32),
        "HCAL_E": np.asarray(hcal_sum, np.float32),
        "energy": np.asarray(chunk["energy"], np.float32),
    }
    for key in ("recoEta", "recoPhi"):
        out[key] = np.asarray(chunk[key], np.float32) if key in chunk else np.zeros(n, np.float32)
    return out


def _finish_tf(batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """:func:`_finish_numpy` for a decoded TFRecord batch."""
    ecal = batch["ECAL"]
    n = tf.shape(ecal)[0]
    out: dict[str, tf.Tensor] = {}
    out["ECAL_E"] = batch["ECAL_E"] if "ECAL_E" in batch else tf.reduce_sum(ecal, axis=(1, 2, 3))
    if "HCAL" in batch:
        hcal = batch["HCAL"]
        out["HCAL_E"] = batch["HCAL_E"] if "HCAL_E" in batch else tf.reduce_sum(hcal, axis=(1, 2, 3))
    else:
        hcal = tf.zeros(tf.concat([[n], _HCAL_SHAPE], axis=0), tf.float32)
        out["HCAL_E"] = batch["HCAL_E"] if "HCAL_E" in batch else tf.zeros([n], tf.float32)
    size_x, size_y = int(ecal.shape[1]), int(ecal.shape[2])
    x0, y0 = (size_x - _ECAL_CROP[0]) // 2, (size_y - _ECAL_CROP[1]) // 2
    out["ECAL"] = ecal[:, x0 : x0 + _ECAL_CROP[0], y0 : y0 + _ECAL_CROP[1]]
    out["HCAL"] = hcal
    for key in ("recoEta", "recoPhi"):
        out[key] = batch[key] if key in batch else tf.zeros([n], tf.float32)
    out["energy"] = batch["energy"]
    return {
        key: tf.cast(value if key in ("ECAL", "HCAL") else tf.reshape(value, [n]), tf.float32)
        for key, value in out.items()
    }


_EVENT_SIGNATURE = {
    "ECAL": tf.TensorSpec((None, *_ECAL_CROP), tf.float32),
    "HCAL": tf.TensorSpec((None, *_HCAL_SHAPE), tf.float32),
    **{key: tf.TensorSpec((None,), tf.float32) for key in ("ECAL_E", "HCAL_E", "recoEta", "recoPhi", "energy")},
}
_READ_KEYS = ("ECAL", "HCAL", "ECAL_E", "HCAL_E", "recoEta", "recoPhi", "energy")


def source_events(source: Source, resample: str = "none") -> tf.data.Dataset:
    """The events of ``source`` in event-index order, unbatched, as model inputs plus ``energy`` (GeV).

    ``resample`` ``atlas`` or ``cms``: the ECAL as read (the file's window, 51 x 51 x 25) is resampled
    (:class:`caloml.data.resampling.Resample`, TensorFlow for TFRecords, NumPy for HDF5) before the centre crop;
    ``ECAL_E`` (conserved), the HCAL and the other scalars are left as they are.
    """
    check_resample(resample, where="resample")
    if source.format == "tfrecords":
        from caloml.data.tfrecord import decode_batch, read_metadata

        metadata = read_metadata(source.path)
        known = {*metadata["arrays"], *metadata["scalars"]}
        keys = [k for k in _READ_KEYS if k in known]
        selected = {
            **metadata,
            "arrays": {k: v for k, v in metadata["arrays"].items() if k in keys},
            "scalars": {k: v for k, v in metadata["scalars"].items() if k in keys},
        }

        def decode(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
            batch = decode_batch(serialized, selected)
            if resample != "none":
                batch = Resample(resample).tf(batch)
            return _finish_tf(batch)

        records = _ordered_records(source.path, metadata).batch(_READ_CHUNK)
        return records.map(decode, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    path = str(source.path)

    def chunks() -> Iterator[dict[str, np.ndarray]]:
        from caloml.data.lcd import LCDReader

        with LCDReader(path) as probe:
            keys = [k for k in _READ_KEYS if k in probe.keys]
        with LCDReader(path, keys=keys, chunk_events=_READ_CHUNK) as reader:
            for chunk in reader.iter_chunks():
                if resample != "none":
                    chunk = {**chunk, "ECAL": resample_ecal(np.asarray(chunk["ECAL"], np.float32), resample)}
                yield _finish_numpy(chunk)

    return tf.data.Dataset.from_generator(chunks, output_signature=_EVENT_SIGNATURE).unbatch()


def _selected_events(source: Source, mask: np.ndarray, labels: np.ndarray, resample: str = "none") -> tf.data.Dataset:
    """The events of ``source`` where ``mask``, with their ``class_label`` (ECAL resampled to ``resample``)."""
    keep = tf.constant(mask)
    label = tf.constant(labels.astype(np.int32))

    def add_label(index: tf.Tensor, event: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {**event, "class_label": tf.gather(label, index)}

    return (
        source_events(source, resample)
        .enumerate()
        .filter(lambda index, event: tf.gather(keep, index))
        .map(add_label, num_parallel_calls=tf.data.AUTOTUNE)
    )


def split_dataset(inputs: TriforceInputs, split: str, *, batch_size: int = 256) -> tf.data.Dataset:
    """The events of ``split`` (train, validation or test), source after source in index order, batched.

    Batches are dicts with :data:`BATCH_KEYS` (GeV, radians; ``class_label`` int32). A split without events is a
    one-line CalomlError.
    """
    if split not in inputs.masks:
        raise CalomlError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    parts = [
        _selected_events(source, mask, labels, inputs.resample)
        for source, mask, labels in zip(inputs.sources, inputs.masks[split], inputs.labels, strict=True)
        if mask.any()
    ]
    if not parts:
        raise CalomlError(f"task {inputs.task.name}: the {split} split holds no event after the split and the filters")
    dataset = parts[0]
    for part in parts[1:]:
        dataset = dataset.concatenate(part)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def training_dataset(
    inputs: TriforceInputs,
    *,
    global_batch_size: int,
    seed: int,
    shuffle_buffer: int,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """The training split, shuffled and repeated per source, the sources interleaved, in per-replica batches."""
    from caloml.data.pipeline import per_replica_batch_size

    n_pipelines = input_context.num_input_pipelines if input_context is not None else 1
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    parts, weights = [], []
    for k, (source, mask, labels) in enumerate(zip(inputs.sources, inputs.masks["train"], inputs.labels, strict=True)):
        if not mask.any():
            continue
        events = _selected_events(source, mask, labels, inputs.resample)
        if n_pipelines > 1:
            events = events.shard(n_pipelines, pipeline_id)
        events = events.shuffle(shuffle_buffer, seed=seed + 7919 * k + pipeline_id, reshuffle_each_iteration=True)
        parts.append(events.repeat())
        weights.append(float(mask.sum()))
    total = sum(weights)
    dataset = tf.data.Dataset.sample_from_datasets(parts, weights=[w / total for w in weights], seed=seed + pipeline_id)
    batch = per_replica_batch_size(global_batch_size, input_context)
    return dataset.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------------------------------- network
def build_network(model: TriforceModelSection, *, energy_coefficients: Sequence[float], seed: int) -> Any:
    """The network of the model section (not compiled)."""
    from caloml.models.triforce_nets import TriforceCNN, TriforceDNN, TriforceGoogLeNet

    common: dict[str, Any] = {
        "n_classes": 2,
        "energy_loss_weight": float(model.energy_loss_weight),
        "initial_energy_coefficients": tuple(float(v) for v in energy_coefficients),
        "micro_batch_size": micro_batch_size_of(model),
        "seed": seed,
    }
    try:
        if model.arch == "dnn":
            return TriforceDNN(model.n_hidden_layers, model.hidden_units, dropout_of(model), **common)
        if model.arch == "cnn":
            kernel = int(model.ecal_kernel)
            return TriforceCNN(
                model.ecal_filters,
                (kernel, kernel, kernel),
                model.hcal_filters,
                (2, 2, 6),
                model.n_hidden_layers,
                model.hidden_units,
                dropout_of(model),
                **common,
            )
        return TriforceGoogLeNet(model.dense_units, model.width_multiplier, **common)
    except ValueError as error:
        raise CalomlError(f"model: {error}") from None


def _arch_class(arch: str) -> type:
    from caloml.models.triforce_nets import TriforceCNN, TriforceDNN, TriforceGoogLeNet

    return {"dnn": TriforceDNN, "cnn": TriforceCNN, "googlenet": TriforceGoogLeNet}[arch]


def _outputs_function(model: Any) -> Callable[[dict[str, tf.Tensor]], tuple[tf.Tensor, tf.Tensor]]:
    """A compiled ``batch -> (predicted class, energy GeV)`` of ``model`` (traced once per batch-shape kind)."""

    @tf.function(reduce_retracing=True)
    def outputs(batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        out = model(model.select_inputs(batch), training=False)
        return tf.argmax(out["class_probability"], axis=-1, output_type=tf.int32), out["energy"]

    return outputs


def validation_scores(
    model: Any,
    dataset: tf.data.Dataset,
    outputs: Callable[[dict[str, tf.Tensor]], tuple[tf.Tensor, tf.Tensor]] | None = None,
) -> dict[str, float]:
    """Classification accuracy, and the relative energy bias and resolution over ``dataset``.

    The relative error is ``(E_true - E_pred) / E_true``, as in the evaluation
    (:func:`caloml.evaluate.reconstruction_metrics.binned_response`): ``energy_bias`` is its mean (positive: the
    energy is underestimated) and ``energy_resolution`` its standard deviation (``ddof=1``).

    ``outputs``: a function made by :func:`_outputs_function` for ``model``, reused across calls to avoid retracing.
    """
    outputs = outputs or _outputs_function(model)
    correct, relative = [], []
    for batch in dataset:
        predicted, energy = outputs(batch)
        correct.append(predicted.numpy() == batch["class_label"].numpy())
        true = batch["energy"].numpy().astype(np.float64)
        relative.append((true - energy.numpy().astype(np.float64)) / true)
    accuracy = float(np.mean(np.concatenate(correct)))
    errors = np.concatenate(relative)
    resolution = float(np.std(errors, ddof=1)) if errors.size > 1 else math.nan
    return {"accuracy": accuracy, "energy_resolution": resolution, "energy_bias": float(np.mean(errors))}


# ---------------------------------------------------------------------------------------------------------- task
class TriforceTask:
    """Triforce end-to-end reconstruction (seed 004 section 5): classification and energy regression at once."""

    name = "triforce"
    config_class = TriforceConfig
    presets = PRESETS

    # -- command line
    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:  # type: ignore[override]
        parser.add_argument("--arch", choices=ARCHS, help="network (default: dnn)")
        parser.add_argument("--task", choices=("e-vs-pi", "gamma-vs-pi0"), help="classification task")
        parser.add_argument("--data", nargs="+", metavar="PATH", help="LCD HDF5 files or TFRecord directories")
        parser.add_argument("--events", type=int, help="showers per particle of the default data")
        parser.add_argument("--energy-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="GeV")
        parser.add_argument("--learning-rate", type=float, help="Adam learning rate (default: the paper's)")
        parser.add_argument(
            "--resample",
            choices=RESAMPLE_CHOICES,
            help="train on the ECAL resampled to an ATLAS- or CMS-like granularity (default: none, CLIC's)",
        )

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return {
            "model.arch": args.arch,
            "model.task": args.task,
            "data.files": args.data,
            "data.events_per_particle": args.events,
            "data.energy_range_gev": args.energy_range,
            "model.learning_rate": args.learning_rate,
            "data.resample": args.resample,
        }

    def default_run_dir(self, config: TriforceConfig) -> Path:
        """``runs/triforce-<arch>-<task>``, with ``-<resample>`` appended for resampled data."""
        suffix = "" if config.data.resample == "none" else f"-{config.data.resample}"
        return Path("runs") / f"triforce-{config.model.arch}-{config.model.task}{suffix}"

    # -- data
    def prepare_data(self, config: TriforceConfig, *, chief: bool) -> TriforceInputs:
        task = check_config(config)
        data = config.data
        paths: list[str | Path]
        if data.files:
            paths = list(data.files)
        else:
            from caloml.tasks.default_data import cached_simulation

            check_default_data_size(task.particles, data)
            paths = [
                cached_simulation(
                    default_data_request(particle, data), "triforce", progress=config.runtime.progress, create=chief
                )
                for particle in task.particles
            ]
        inputs = locate_and_split(
            paths, task, fractions=data.split_fractions, seed=data.split_seed, resample=data.resample
        )
        print(filter_counts_line(task, inputs.splits))
        counts = ", ".join(f"{split} " + "/".join(str(n) for n in inputs.counts[split]) for split in SPLITS)
        print(f"triforce {task.name} ({'/'.join(task.particles)}): {counts} events after the split and filters")
        a, b, c = inputs.energy_coefficients
        print(f"energy calibration fitted on the training split: E = {a:.4g} ECAL_E + {b:.4g} HCAL_E + {c:.4g} GeV")
        if data.resample != "none":
            print(f"the ECAL is resampled to {data.resample.upper()}-like granularity before the crop (HCAL as is)")
        if config.runtime.run_dir:
            inputs.run_dir = Path(config.runtime.run_dir)
            if chief:
                from caloml.atomic_files import atomic_write_json

                atomic_write_json(inputs.run_dir / SPLIT_FILE, split_record(inputs))
                atomic_write_json(inputs.run_dir / SUMMARY_FILE, _summary(inputs))
        return inputs

    def make_dataset(
        self, config: TriforceConfig, data: TriforceInputs, input_context: tf.distribute.InputContext
    ) -> tf.data.Dataset:
        return training_dataset(
            data,
            global_batch_size=config.trainer.global_batch_size,
            seed=config.runtime.seed,
            shuffle_buffer=config.data.shuffle_buffer,
            input_context=input_context,
        )

    def steps_per_epoch(self, config: TriforceConfig, data: TriforceInputs) -> int:
        return max(1, data.n_events("train") // config.trainer.global_batch_size)

    # -- model
    def build_model(self, config: TriforceConfig, data: TriforceInputs) -> keras.Model:
        model = build_network(config.model, energy_coefficients=data.energy_coefficients, seed=config.runtime.seed)
        model.compile(keras.optimizers.Adam(learning_rate_of(config.model)))
        return model

    def optimizers(self, model: keras.Model) -> dict[str, keras.optimizers.Optimizer]:
        return {"optimizer": model.optimizer}

    def check_init_source(self, config: TriforceConfig, source: keras.Model) -> None:
        expected = _arch_class(config.model.arch)
        if not isinstance(source, expected):
            raise CalomlError(f"--init-from: a {type(source).__name__}, this run trains a {expected.__name__}")

    # -- selection and export
    def selection_metric(self, config: TriforceConfig, data: TriforceInputs) -> SelectionMetric:
        dataset = split_dataset(data, "validation", batch_size=max(1, min(256, config.trainer.global_batch_size)))

        compiled: dict[int, Callable[[dict[str, tf.Tensor]], tuple[tf.Tensor, tf.Tensor]]] = {}

        def compute(model: keras.Model) -> float:
            if id(model) not in compiled:
                compiled.clear()
                compiled[id(model)] = _outputs_function(model)
            scores = validation_scores(model, dataset, compiled[id(model)])
            print(
                f"validation: accuracy {scores['accuracy']:.4f}, relative energy resolution "
                f"{scores['energy_resolution']:.4f}, bias {scores['energy_bias']:+.4f}"
            )
            return 1.0 - scores["accuracy"]

        return SelectionMetric(
            "misclassification",
            compute,
            "1 - classification accuracy on the validation split (the energy resolution is printed with it)",
        )

    def export(self, model: keras.Model, config: TriforceConfig, run_dir: Path) -> Path | None:
        from caloml.export.triforce import export_triforce
        from caloml.training.config import config_to_dict

        provenance = {
            "source": str(run_dir),
            "seed": config.runtime.seed,
            "resample": config.data.resample,
            "training_config": config_to_dict(config),
        }
        return Path(export_triforce(model, config.model.task, provenance=provenance))


def _summary(inputs: TriforceInputs) -> dict[str, Any]:
    a, b, c = inputs.energy_coefficients
    return {
        "task": inputs.task.name,
        "classes": list(inputs.task.particles),
        "pdgID": list(inputs.task.classes),
        "events_per_class": {split: inputs.counts[split] for split in SPLITS},
        "energy_calibration": {
            "formula": "E_GeV = a * ECAL_E + b * HCAL_E + c (least squares on the training split)",
            "a": a,
            "b": b,
            "c": c,
        },
        "has_hcal": inputs.has_hcal,
        "resample": inputs.resample,
        "sources": [{"path": str(s.path), "format": s.format, "n_events": s.n_events} for s in inputs.sources],
    }


TASK = TriforceTask()


# ------------------------------------------------------------------------------------------ GAN-train / GAN-test
#: Training of :func:`train_classifier`: a small DNN, a few epochs (it runs inside the generator evaluation).
CLASSIFIER_SETTINGS: dict[str, Any] = {
    "n_hidden_layers": 2,
    "hidden_units": 64,
    "dropout": 0.04,
    "learning_rate": 1e-3,
    "epochs": 6,
    "batch_size": 64,
}


def _ecal_only_inputs(path: Path, indices: np.ndarray) -> dict[str, np.ndarray]:
    """ECAL-only classifier inputs of the events ``indices`` of an LCD file: the ECAL centre-cropped to 25 x 25 x 25
    and ``ECAL_E``, the sum of the **cropped** cells (GeV), so that every file gets the same definition whatever
    window it stores (51 x 51 x 25 or 25 x 25 x 25); any stored ``ECAL_E`` is ignored."""
    from caloml.data.lcd import LCDReader

    indices = np.asarray(indices, dtype=np.int64)
    with LCDReader(path, keys=["ECAL", "energy"], chunk_events=_READ_CHUNK) as reader:
        parts = [_finish_numpy(reader.read(indices[i : i + 256])) for i in range(0, len(indices), 256)]
    if not parts:
        return {key: np.zeros((0, *spec.shape[1:]), np.float32) for key, spec in _EVENT_SIGNATURE.items()}
    events = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    # the same inputs for every file, whatever it holds: no HCAL, no reconstructed angles (a generator's files
    # have neither), the ECAL sum of the cropped window (the same cells in every file)
    n = len(indices)
    events["ECAL_E"] = _sum_cells(events["ECAL"])
    events["HCAL"] = np.zeros((n, *_HCAL_SHAPE), np.float32)
    events["HCAL_E"] = np.zeros(n, np.float32)
    events["recoEta"] = np.zeros(n, np.float32)
    events["recoPhi"] = np.zeros(n, np.float32)
    return events


def train_classifier(
    samples: Sequence[tuple[Path, np.ndarray, int]], *, seed: int, epochs: int | None = None
) -> Callable[[Path, np.ndarray], np.ndarray]:
    """Train the GAN-train / GAN-test classifier (contract in :mod:`caloml.evaluate.gan_train_test`).

    ``samples``: ``(path, indices, label)`` with label 1 (signal) or 0 (background), events of LCD-layout HDF5
    files (``lcd-gen`` or ``lcd-rec``, full or cropped ECAL). The network is a small
    :class:`~caloml.models.triforce_nets.TriforceDNN` (:data:`CLASSIFIER_SETTINGS`) on the **ECAL only**: the
    centre-cropped 25 x 25 x 25 cells and their sum (of the cropped cells, the same definition for a 51 x 51 x 25 and a
    25 x 25 x 25 file); the HCAL, its sum and the reconstructed angles are set to
    zero for every file, because generated files (the 3DGAN's) have none of them and a classifier must see the same
    inputs in all its files. The class comes from the sample's label, not from ``pdgID``, and no task filter is
    applied (the files are the evaluation's). Classification only (energy-loss weight 0). Seeded: initializers,
    dropout and the event order follow ``seed``.

    Returns ``predict(path, indices) -> (len(indices),)`` float64 probabilities of the signal class.
    """
    from caloml.models.triforce_nets import TriforceDNN

    settings = CLASSIFIER_SETTINGS
    if not samples:
        raise CalomlError("train_classifier: no training samples")
    labels_seen = {int(label) for _, _, label in samples}
    if labels_seen != {0, 1}:
        raise CalomlError(f"train_classifier: needs samples of both labels 0 and 1, got {sorted(labels_seen)}")
    parts = []
    for path, indices, label in samples:
        events = _ecal_only_inputs(Path(path), indices)
        events["class_label"] = np.full(len(indices), int(label), np.int32)
        parts.append(events)
    data = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    n = len(data["class_label"])
    model = TriforceDNN(
        settings["n_hidden_layers"],
        settings["hidden_units"],
        settings["dropout"],
        energy_loss_weight=0.0,
        seed=seed,
    )
    model.compile(keras.optimizers.Adam(settings["learning_rate"]))
    dataset = (
        tf.data.Dataset.from_tensor_slices(data)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(settings["batch_size"])
    )
    model.fit(dataset, epochs=int(epochs or settings["epochs"]), verbose=0, shuffle=False)

    @tf.function(reduce_retracing=True)
    def probability(batch: dict[str, tf.Tensor]) -> tf.Tensor:
        return model(model.select_inputs(batch), training=False)["class_probability"][:, 1]

    def predict(path: Path, indices: np.ndarray) -> np.ndarray:
        events = _ecal_only_inputs(Path(path), indices)
        out = [
            probability({k: v[i : i + 256] for k, v in events.items()}).numpy()
            for i in range(0, len(events["ECAL"]), 256)
        ]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    return predict
