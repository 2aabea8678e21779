"""Closed ranges rounded inwards to float32, for checks made on float32 values (the export signatures).

A float64 range ``[low, high]`` checked in a float32 graph must accept a float32 value exactly when the float64
check accepts it: its float32 bounds are the nearest float32 numbers inside it. See ``docs/serving.md``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["float32_inside"]


def float32_inside(low: float, high: float) -> tuple[np.float32, np.float32]:
    """The float32 bounds of ``[low, high]`` rounded inwards: ``low32 >= low`` and ``high32 <= high``, the nearest."""
    low32, high32 = np.float32(low), np.float32(high)
    if float(low32) < low:
        low32 = np.nextafter(low32, np.float32(np.inf))
    if float(high32) > high:
        high32 = np.nextafter(high32, np.float32(-np.inf))
    return low32, high32
