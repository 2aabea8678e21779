"""Data of the Triforce reconstruction task: the split of its sources and the ``tf.data`` pipeline of its networks.

:func:`locate_and_split` identifies the sources (:mod:`caloml.data.reconstruction`), labels, filters and splits
their events (:mod:`caloml.data.reconstruction_split`, shared with the baselines) and fits the energy calibration;
:func:`split_dataset` and :func:`training_dataset` give the batches the networks see (ECAL centre crop 25 x 25 x 25,
HCAL 11 x 11 x 60, window sums, angles, ``class_label`` and ``energy`` in GeV). See ``docs/reconstruction.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from caloml.data.input_errors import guarded_generator
from caloml.data.lcd import LCDReader
from caloml.data.pipeline import per_replica_batch_size
from caloml.data.reconstruction import Source, cell_shapes, ordered_records, read_scalars, sum_cells
from caloml.data.reconstruction_split import (
    SPLITS,
    SourceSplit,
    describe_filters,
    make_split_record,
    source_entry,
    split_source,
)
from caloml.data.reconstruction_tasks import ReconstructionTask
from caloml.data.resampling import Resample, check_resample, resample_ecal
from caloml.data.split_record import SPLIT_FORMAT, SplitRecord, read_split_record
from caloml.data.tfrecord import decode_batch, read_metadata
from caloml.errors import CalomlError, DataError
from caloml.models.baselines import LinearEnergyRegression

__all__ = [
    "BATCH_KEYS",
    "ECAL_CROP",
    "EVENT_SIGNATURE",
    "HCAL_SHAPE",
    "TriforceInputs",
    "locate_and_split",
    "model_inputs_numpy",
    "read_split",
    "source_events",
    "split_dataset",
    "split_record",
    "split_record_of",
    "training_dataset",
]

#: Keys of the batches the pipeline yields (the networks' inputs, the class index and the true energy in GeV).
BATCH_KEYS = ("ECAL", "HCAL", "ECAL_E", "HCAL_E", "recoEta", "recoPhi", "class_label", "energy")
#: The networks' ECAL window (cells): the centre crop of the stored window.
ECAL_CROP = (25, 25, 25)
#: The networks' HCAL window (cells).
HCAL_SHAPE = (11, 11, 60)
#: Events per read of the pipeline.
READ_CHUNK = 64


# ----------------------------------------------------------------------------------------------------- the split
@dataclass
class TriforceInputs:
    """Located and split data (one per run; :func:`locate_and_split`).

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
        splits: per source, its :class:`~caloml.data.reconstruction_split.SourceSplit` (the masks come from it).
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

    The split and the filters are :func:`caloml.data.reconstruction_split.split_source`'s (the baselines' too);
    source ``k`` is the ``k``-th path. ``resample`` (``none``, ``atlas``, ``cms``) only sets the granularity of the
    ECAL the datasets yield: the split, the task filters and the calibration read per-event scalars that the resampling
    leaves unchanged (it conserves ``ECAL_E`` and does not touch the HCAL), so they are the same for every setting.
    Resampling needs the full 51 x 51 ECAL window (a cropped ECAL is refused, as the baselines refuse it).
    """
    check_resample(resample, where="resample")
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


def split_record_of(inputs: TriforceInputs) -> SplitRecord:
    """The run's split record, ``RUN/test_events.json`` (:func:`caloml.data.reconstruction_split.make_split_record`)."""
    task = inputs.task
    return make_split_record(
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


def split_record(inputs: TriforceInputs) -> dict[str, Any]:
    """The JSON content of ``RUN/test_events.json`` (:func:`split_record_of`'s)."""
    return split_record_of(inputs).to_json()


def read_split(path: str | Path) -> dict[str, Any]:
    """A run's ``test_events.json`` (``path`` is the run directory or the file), checked
    (:func:`caloml.data.split_record.read_split_record`), as its JSON object with ``sources[i]["test_indices"]`` as
    sorted int64 arrays."""
    record = read_split_record(path)
    if record.format != SPLIT_FORMAT:
        raise CalomlError(f"{path}: not a {SPLIT_FORMAT} version 1 file")
    content = record.to_json()
    for entry, source in zip(content["sources"], record.sources, strict=True):
        entry["test_indices"] = source.test_indices
    return content


# ------------------------------------------------------------------------------------------------------ pipeline
def model_inputs_numpy(chunk: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Model inputs (ECAL centre-cropped to :data:`ECAL_CROP`, HCAL or zeros, window sums, angles, ``energy``; GeV)
    of a NumPy chunk of LCD events (N events each), as :data:`EVENT_SIGNATURE`."""
    ecal = np.asarray(chunk["ECAL"], dtype=np.float32)
    n = len(ecal)
    if "HCAL" in chunk:
        hcal = np.asarray(chunk["HCAL"], dtype=np.float32)
        hcal_sum = chunk["HCAL_E"] if "HCAL_E" in chunk else sum_cells(hcal)
    else:
        hcal = np.zeros((n, *HCAL_SHAPE), np.float32)
        hcal_sum = chunk.get("HCAL_E", np.zeros(n))
    x0, y0 = (ecal.shape[1] - ECAL_CROP[0]) // 2, (ecal.shape[2] - ECAL_CROP[1]) // 2
    out = {
        "ECAL": np.ascontiguousarray(ecal[:, x0 : x0 + ECAL_CROP[0], y0 : y0 + ECAL_CROP[1]]),
        "HCAL": hcal,
        "ECAL_E": np.asarray(chunk["ECAL_E"] if "ECAL_E" in chunk else sum_cells(ecal), np.float32),
        "HCAL_E": np.asarray(hcal_sum, np.float32),
        "energy": np.asarray(chunk["energy"], np.float32),
    }
    for key in ("recoEta", "recoPhi"):
        out[key] = np.asarray(chunk[key], np.float32) if key in chunk else np.zeros(n, np.float32)
    return out


def _model_inputs_tf(batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """:func:`model_inputs_numpy` for a decoded TFRecord batch."""
    ecal = batch["ECAL"]
    n = tf.shape(ecal)[0]
    out: dict[str, tf.Tensor] = {}
    out["ECAL_E"] = batch["ECAL_E"] if "ECAL_E" in batch else tf.reduce_sum(ecal, axis=(1, 2, 3))
    if "HCAL" in batch:
        hcal = batch["HCAL"]
        out["HCAL_E"] = batch["HCAL_E"] if "HCAL_E" in batch else tf.reduce_sum(hcal, axis=(1, 2, 3))
    else:
        hcal = tf.zeros(tf.concat([[n], HCAL_SHAPE], axis=0), tf.float32)
        out["HCAL_E"] = batch["HCAL_E"] if "HCAL_E" in batch else tf.zeros([n], tf.float32)
    size_x, size_y = int(ecal.shape[1]), int(ecal.shape[2])
    x0, y0 = (size_x - ECAL_CROP[0]) // 2, (size_y - ECAL_CROP[1]) // 2
    out["ECAL"] = ecal[:, x0 : x0 + ECAL_CROP[0], y0 : y0 + ECAL_CROP[1]]
    out["HCAL"] = hcal
    for key in ("recoEta", "recoPhi"):
        out[key] = batch[key] if key in batch else tf.zeros([n], tf.float32)
    out["energy"] = batch["energy"]
    return {
        key: tf.cast(value if key in ("ECAL", "HCAL") else tf.reshape(value, [n]), tf.float32)
        for key, value in out.items()
    }


#: The spec of the model inputs of one chunk of events (GeV, radians).
EVENT_SIGNATURE = {
    "ECAL": tf.TensorSpec((None, *ECAL_CROP), tf.float32),
    "HCAL": tf.TensorSpec((None, *HCAL_SHAPE), tf.float32),
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
            return _model_inputs_tf(batch)

        records = ordered_records(source.path, metadata).batch(READ_CHUNK)
        return records.map(decode, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    path = str(source.path)

    def chunks() -> Iterator[dict[str, np.ndarray]]:
        with LCDReader(path) as probe:
            keys = [k for k in _READ_KEYS if k in probe.keys]
        with LCDReader(path, keys=keys, chunk_events=READ_CHUNK) as reader:
            for chunk in reader.iter_chunks():
                if resample != "none":
                    chunk = {**chunk, "ECAL": resample_ecal(np.asarray(chunk["ECAL"], np.float32), resample)}
                yield model_inputs_numpy(chunk)

    # guarded: a DataError of the reader (a NaN cell) reaches the user as itself, not wrapped by TensorFlow
    return tf.data.Dataset.from_generator(guarded_generator(chunks), output_signature=EVENT_SIGNATURE).unbatch()


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
