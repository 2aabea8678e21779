"""JSON-ready values: the one converter every caloml report, record and configuration file goes through."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def json_plain(value: Any) -> Any:
    """JSON-ready copy of ``value``.

    Dataclasses and mappings become dicts with string keys, tuples and arrays lists, NumPy scalars Python
    scalars, paths strings, and non-finite floats ``None`` (JSON has no NaN: a bare ``NaN`` would make the file
    unreadable to strict parsers).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): json_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return json_plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value
