"""Reports as JSON: numpy scalars to Python, NaN and infinities to None (JSON has neither), tuples to lists."""

from __future__ import annotations

import math

import numpy as np


def json_ready(obj):
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj
