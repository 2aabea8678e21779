"""Data: readers and writers of the calorimeter file layouts, TFRecords and tf.data pipelines.

The flow is one way: HDF5 files in the real layouts (:mod:`~caloml.data.lcd`, :mod:`~caloml.data.calochallenge`,
:mod:`~caloml.data.crystal`; events in GeV inside caloml, stored units at the edges) -> sharded TFRecords with metadata
(:mod:`~caloml.data.tfrecord`) -> ``tf.data`` input functions (:mod:`~caloml.data.pipeline`) with composable
transforms (:mod:`~caloml.data.transforms`). ``python -m caloml.data`` is the command line.

Importing this package does not import TensorFlow (command lines import it to parse their arguments):
:func:`make_dataset`, :func:`make_distributed_dataset` and :func:`dataset_from_events` (events in memory, the same
transforms) are loaded on first use. The layout modules register
their readers here, on import, for :func:`open_reader`. See ``docs/data.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from caloml.data.calochallenge import CaloChallengeReader, CaloChallengeWriter
from caloml.data.checks import check_event_shape, check_finite, check_non_negative, check_values
from caloml.data.crystal import CrystalReader, CrystalWriter
from caloml.data.hdf5 import HDF5EventReader, HDF5EventWriter, detect_layout, open_reader, provenance_attrs, read_attrs
from caloml.data.inspect import inspect_path
from caloml.data.lcd import LCDReader, LCDWriter, particle_from_filename, pdg_id_from_filename
from caloml.data.lcd_features import expert_features
from caloml.data.tfrecord import (
    convert_to_tfrecords,
    measure_encoding_sizes,
    read_metadata,
    verify,
)
from caloml.data.transforms import (
    CenterCrop,
    Compose,
    MaxHcalEcalRatio,
    MaxOpeningAngle,
    MinTotalDeposit,
    PowerTransform,
    ScaleEnergy,
    ToPointCloud,
)

if TYPE_CHECKING:
    from caloml.data.in_memory import dataset_from_events
    from caloml.data.pipeline import make_dataset, make_distributed_dataset

__all__ = [
    "CaloChallengeReader",
    "CaloChallengeWriter",
    "CenterCrop",
    "Compose",
    "CrystalReader",
    "CrystalWriter",
    "HDF5EventReader",
    "HDF5EventWriter",
    "LCDReader",
    "LCDWriter",
    "MaxHcalEcalRatio",
    "MaxOpeningAngle",
    "MinTotalDeposit",
    "PowerTransform",
    "ScaleEnergy",
    "ToPointCloud",
    "check_event_shape",
    "check_finite",
    "check_non_negative",
    "check_values",
    "convert_to_tfrecords",
    "dataset_from_events",
    "detect_layout",
    "expert_features",
    "inspect_path",
    "make_dataset",
    "make_distributed_dataset",
    "measure_encoding_sizes",
    "open_reader",
    "particle_from_filename",
    "pdg_id_from_filename",
    "provenance_attrs",
    "read_attrs",
    "read_metadata",
    "verify",
]

_LAZY = {
    "dataset_from_events": "caloml.data.in_memory",
    "make_dataset": "caloml.data.pipeline",
    "make_distributed_dataset": "caloml.data.pipeline",
}


def __getattr__(name: str) -> Any:
    """Load the TensorFlow-dependent exports on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'caloml.data' has no attribute {name!r}")
