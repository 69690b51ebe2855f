"""Settings dataclasses whose fields carry their allowed range: one definition per setting.

`setting(default, lo=..., hi=...)` declares a field with its bounds; `check_ranges` validates an
instance once, when it is built (never on every training step); the profile schema (`config`)
derives its `train` and `priors.learning` sections from the same fields.
"""

from __future__ import annotations

import math
from dataclasses import field, fields
from typing import Any


def setting(default: Any, lo: float | None = None, hi: float | None = None,
            choices: tuple | None = None, nullable: bool = False) -> Any:
    """A dataclass field with its allowed range (inclusive bounds) or choices."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "choices": choices,
                                            "nullable": nullable})


def _bounds_text(meta: dict) -> str:
    if meta["choices"]:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    parts = [f">= {meta['lo']:g}" if meta["lo"] is not None else "",
             f"<= {meta['hi']:g}" if meta["hi"] is not None else ""]
    text = " and ".join(p for p in parts if p) or "any value"
    return text + (" or null" if meta["nullable"] else "")


def check_ranges(obj: Any, what: str) -> None:
    """Raise ValueError naming every field of `obj` outside its declared range."""
    bad = []
    for f in fields(obj):
        meta, value = f.metadata, getattr(obj, f.name)
        if not meta:
            continue
        if value is None:
            ok = meta["nullable"]
        elif meta["choices"]:
            ok = value in meta["choices"]
        else:
            ok = not (isinstance(value, float) and not math.isfinite(value))
            ok = ok and (meta["lo"] is None or value >= meta["lo"])
            ok = ok and (meta["hi"] is None or value <= meta["hi"])
        if not ok:
            bad.append(f"{f.name}={value!r} (expected {_bounds_text(meta)})")
    if bad:
        raise ValueError(f"invalid {what}: " + "; ".join(bad))
