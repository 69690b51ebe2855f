"""Standard JSON: NaN and infinities become null, so that every stored file is valid JSON.

Python's `json` writes bare `NaN` / `Infinity` by default, which other readers (JavaScript, jq,
strict parsers) refuse. Diverged runs produce such values; `to_plain` maps them to None and the
writers use `allow_nan=False`, so a non-finite number that slipped through raises instead of
writing a file that is not JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def to_plain(obj: Any) -> Any:
    """JSON-ready copy: plain floats/ints/bools, lists for tuples and sets, str keys, None for
    NaN/inf, an object with a `to_dict` method as that dict; anything else is returned
    unchanged."""
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_plain(obj.to_dict())
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [to_plain(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj
