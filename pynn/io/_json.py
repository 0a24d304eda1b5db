"""Strict JSON of what pynn reports (``pynn train``/``search``/``evaluate`` reports,
``pynn bench``'s compare.json): numpy scalars as Python values, NaN/Inf as null.

Beside the atomic writes: both the command line (pynn.cli) and the bench harness (pynn.bench,
below the command line) write such files."""
import math

import numpy as np


def json_safe(obj):
    """``obj`` with numpy scalars as Python values and NaN/Inf as None: strict JSON."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # strict JSON has no NaN/Inf
    return obj
