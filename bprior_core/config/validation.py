"""A raw profile checked against the schema: unknown keys answered with the key they most likely
mean, values coerced and bounded, defaults filled, then the checks across keys."""

from __future__ import annotations

import difflib
import math
import os
import re
from typing import Any

from ..settings import float32_problem
from .checks import _check_consistency, _check_protocol
from .fields import Field, ProfileError, clip, shown
from .profile import SCHEMA, Profile, from_mapping
from .schema import _LIST_CHOICES, PER_SIZE_KEYS

# difflib's similarity below which a spelling is not offered (its default): no suggestion is
# better than a wrong one ('learning_rate' is not 'eval_batch_size')
SUGGEST_CUTOFF = 0.6
# what people call our keys elsewhere (PyTorch, Keras, Hydra configs)
KEY_ALIASES = {
    "learning_rate": "lr", "lr_rate": "lr", "wd": "weight_decay", "l2": "weight_decay",
    "num_steps": "steps", "n_steps": "steps", "max_steps": "steps", "iterations": "steps",
    "batch": "batch_size", "bs": "batch_size", "num_cycles": "cycles", "n_cycles": "cycles",
    "temp": "temperature", "seed": "seeds", "num_seeds": "seeds", "n_seeds": "seeds",
    "num_workers": "workers", "n_workers": "workers", "jobs": "workers", "epsilon": "eps",
    "clip": "grad_clip", "max_grad_norm": "grad_clip", "gradient_clip": "grad_clip",
}


def _suggest(key: str, valid) -> str:
    """'; did you mean X?' for the valid spelling closest to `key`, or '' when none is close."""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=SUGGEST_CUTOFF)
    return f"; did you mean {close[0]!r}?" if close else ""


def _leaf_paths(schema: dict, path: str = ""):
    """The dotted path of every value of the schema."""
    for key, spec in schema.items():
        sub = f"{path}.{key}" if path else key
        yield from _leaf_paths(spec, sub) if isinstance(spec, dict) else [sub]


def _key_hint(key: str, schema: dict, path: str) -> str:
    """What an unknown key most likely means: a known alias in the same section; at the top
    level, the section(s) that hold a key of that name; else the closest spelling; or ''."""
    target = KEY_ALIASES.get(key.lower().replace("-", "_"), key.lower().replace("-", "_"))
    if target in schema:
        return f"; did you mean {target!r}?"
    if not path:
        holders = [p for p in _leaf_paths(schema) if p.rsplit(".", 1)[-1] == target]
        if holders:
            return "; did you mean " + " or ".join(repr(h) for h in holders) + "?"
    return _suggest(key, schema)


def _coerce(path: str, value: Any, spec: Field) -> Any:
    """Check one value against its field, converting YAML's '1e9' strings to floats."""
    if value is None:
        if spec.nullable or spec.default is None and spec.kind is str:
            return None
        raise ProfileError(f"{path}: value is missing (null); expected {spec.describe()}")
    if spec.auto and value == "auto":
        return value
    if spec.kind is list:
        if not isinstance(value, list) or not value:
            raise ProfileError(f"{path}: expected a non-empty {spec.describe()}, "
                               f"got {shown(value)}")
        item_spec = Field(spec.items, lo=spec.lo, hi=spec.hi)
        return [_coerce(f"{path}[{i}]", v, item_spec) for i, v in enumerate(value)]
    if spec.kind is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) != (spec.kind is bool) or not isinstance(value, spec.kind):
        raise ProfileError(f"{path}: expected {spec.describe()}, got {shown(value)}")
    if spec.choices and value not in spec.choices:
        raise ProfileError(f"{path}: {shown(value)} is not allowed; expected {spec.describe()}")
    if spec.kind in (int, float):
        _check_number(path, value, spec)
    return value


def _check_number(path: str, value: float, spec: Field) -> None:
    """A number must be finite, within its field's bounds, and (a float) usable in float32."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ProfileError(f"{path}: {shown(value)} is not finite; expected {spec.describe()}")
    if (spec.lo is not None and value < spec.lo) or (spec.hi is not None and value > spec.hi):
        raise ProfileError(f"{path}: {shown(value)} is out of range; expected {spec.describe()}")
    problem = float32_problem(value) if isinstance(value, float) else None
    if problem:
        raise ProfileError(f"{path}: {shown(value)} {problem}")


def _validate(section: dict, schema: dict, path: str) -> dict:
    if not isinstance(section, dict):
        raise ProfileError(f"{path or 'profile'}: expected a mapping of keys, "
                           f"got {shown(section)}")
    for key in section:
        if key not in schema:
            where = f"{path}." if path else ""
            text = clip(str(key))
            raise ProfileError(f"unknown key {where}{text}{_key_hint(text, schema, path)}")
    out = {}
    for key, spec in schema.items():
        sub = f"{path}.{key}" if path else key
        if isinstance(spec, dict):
            out[key] = _validate(section.get(key) or {}, spec, sub)
        else:
            value = section.get(key, spec.default)
            out[key] = _coerce(sub, value, spec)
    return out


def _check_list_choices(profile: Profile) -> None:
    for keys, allowed in _LIST_CHOICES.items():
        values = profile
        for k in keys:
            values = values[k]
        for v in values or []:
            if v not in allowed:
                raise ProfileError(
                    f"{'.'.join(keys)}: {shown(v)} is not allowed{_suggest(clip(v), allowed)} "
                    f"(allowed: {', '.join(allowed)})"
                )


NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
# a name is a folder under outputs/ (and part of longer paths below it): file systems refuse
# names over 255 bytes, which ended in "fix its permissions"; 64 is plenty for a profile's name
MAX_NAME_LENGTH = 64


def _check_name(name: str) -> None:
    """A profile name is one folder name under outputs/: letters, digits, '-', '_', '.' only (no
    path separators, no '..' that would write outside the outputs folder), at most 64 of them."""
    if len(name) > MAX_NAME_LENGTH:
        raise ProfileError(
            f"name: {shown(name)} is {len(name)} characters long; a profile name is used as the "
            f"folder outputs/<name>/ and may have at most {MAX_NAME_LENGTH} characters, "
            "e.g. 'cpu-long'")
    if not NAME_PATTERN.fullmatch(name) or name in (".", ".."):
        raise ProfileError(
            f"name: {shown(name)} is not allowed; a profile name is used as the folder "
            "outputs/<name>/, so it may hold only letters, digits, '-', '_' and '.' (no path "
            "separators, not '.' or '..'), e.g. 'cpu-long'"
        )


def _list_fields(schema: dict, path: str = ""):
    """(dotted key, Field) of every list-valued key of the schema."""
    for key, spec in schema.items():
        sub = f"{path}.{key}" if path else key
        if isinstance(spec, dict):
            yield from _list_fields(spec, sub)
        elif spec.kind is list:
            yield sub, spec


def _check_no_duplicates(profile: Profile) -> None:
    """Every list in a profile (arms, sizes, ranks, scales, priors) names each value once: a
    repeated value would plan the same runs twice under one result file (the per-size lists
    of `PER_SIZE_KEYS` excepted)."""
    for dotted, _ in _list_fields(SCHEMA):
        if dotted in PER_SIZE_KEYS:
            continue
        values = profile
        for key in dotted.split("."):
            values = values[key]
        seen: list = []
        for value in values or []:
            if value in seen:
                unique = list(dict.fromkeys(values))
                raise ProfileError(
                    f"{dotted}: {shown(value)} is listed more than once in {shown(values)}; list "
                    f"each value once, e.g. {shown(unique)}"
                )
            seen.append(value)


FORCE_WORKERS = "BPRIOR_FORCE_WORKERS"
WORKERS_ENV = "BPRIOR_WORKERS"  # overrides a profile's `workers` (`--workers` sets it)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under `taskset`), else all."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def _check_workers(workers: int) -> None:
    """No more worker processes than this machine has cores (each takes about 1 GB of memory
    and they would only wait for each other), unless $BPRIOR_FORCE_WORKERS is 1."""
    cores = usable_cores()
    if workers <= cores or os.environ.get(FORCE_WORKERS) == "1":
        return
    raise ProfileError(
        f"workers: {workers} worker processes are more than this machine's {cores} CPU cores "
        "(each process takes about 1 GB of memory, and they would only wait for each other); "
        f"use workers: {cores} or fewer, or set {FORCE_WORKERS}=1 in the environment to start "
        f"{workers} anyway")


def validate_profile(raw: dict) -> Profile:
    """Validate a raw profile mapping; return it typed and complete with defaults, or raise
    ProfileError. The keys are checked one by one on the mapping, then across keys on the
    typed profile."""
    values = _validate(raw, SCHEMA, "")
    if not values["name"]:
        raise ProfileError("name: every profile needs a name (used for outputs/<name>/)")
    _check_name(values["name"])
    _check_workers(values["workers"])
    _check_no_duplicates(values)
    _check_list_choices(values)
    profile = from_mapping(Profile, values)
    _check_consistency(profile)
    _check_protocol(profile)
    return profile
