"""JSON-ready values: the one converter every caloml report, record and configuration file goes through.

NumPy scalars and arrays become Python numbers and lists, paths strings; non-finite floats become ``null``, so
every record is strict JSON. See ``docs/design.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def json_plain(value: Any, *, strings_for_unknown: bool = False) -> Any:
    """JSON-ready copy of ``value``.

    Dataclasses and mappings become dicts with string keys, tuples and arrays lists, NumPy scalars Python
    scalars, paths strings, and non-finite floats ``None`` (JSON has no NaN: a bare ``NaN`` would make the file
    unreadable to strict parsers). Any other object is returned as it is (``json.dumps`` then refuses it), or,
    with ``strings_for_unknown``, as its ``str()``: for values read from files (HDF5 attributes copied into a
    TFRecord directory's metadata) whose types caloml does not control.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_plain(dataclasses.asdict(value), strings_for_unknown=strings_for_unknown)
    if isinstance(value, Mapping):
        return {str(k): json_plain(v, strings_for_unknown=strings_for_unknown) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_plain(v, strings_for_unknown=strings_for_unknown) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return json_plain(value.item(), strings_for_unknown=strings_for_unknown)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if strings_for_unknown and not (isinstance(value, str | int | bool) or value is None):
        return str(value)
    return value
