"""The baseline reconstruction tasks ``bdt``, ``linreg`` and ``xgb``: configuration, data and the tasks.

``python -m caloml.train {bdt,linreg,xgb}`` looks up :data:`BDT_TASK`, :data:`LINREG_TASK` and :data:`XGB_TASK`.
The modules: :mod:`caloml.tasks.baselines.config` (sections, presets), :mod:`caloml.tasks.baselines.data` (the
split scalars), :mod:`caloml.tasks.baselines.task` (the fits and their run directories). See
``docs/reconstruction.md``.
"""

from __future__ import annotations

from caloml.tasks.baselines.config import (
    BaselineData,
    BDTConfig,
    ClassificationData,
    LinRegConfig,
    RegressionData,
    XGBConfig,
)
from caloml.tasks.baselines.data import (
    SplitEvents,
    load_split,
    read_source,
    resampled_features,
    split_events_record,
    test_events_record,
)
from caloml.tasks.baselines.task import BDT_TASK, LINREG_TASK, XGB_TASK, BaselineRunDirectory

__all__ = [
    "BDT_TASK",
    "LINREG_TASK",
    "XGB_TASK",
    "BDTConfig",
    "BaselineData",
    "BaselineRunDirectory",
    "ClassificationData",
    "LinRegConfig",
    "RegressionData",
    "SplitEvents",
    "XGBConfig",
    "load_split",
    "read_source",
    "resampled_features",
    "split_events_record",
    "test_events_record",
]
