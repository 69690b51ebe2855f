"""A profile field: its type, default, bounds and choices (`Field`), built from the settings'
fields where a value becomes one; the error a bad profile raises and how it shows values."""

from __future__ import annotations

import dataclasses
import reprlib
from dataclasses import dataclass
from typing import Any

from ..settings import field_meta, range_text


class ProfileError(ValueError):
    """A profile is invalid; the message says what is wrong and what would be right."""


SHOWN_LENGTH = 80  # the most characters of a value a message shows
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = SHOWN_LENGTH


_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 10


_REPR.maxlevel = 3


def clip(text: str, limit: int = SHOWN_LENGTH) -> str:
    """`text` cut to `limit` characters, '...' marking the cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: Any) -> str:
    """repr(value) for a message, at most SHOWN_LENGTH characters: computed without expanding
    the value (reprlib), since a value may be huge (a YAML alias bomb expands to millions)."""
    try:
        return clip(_REPR.repr(value))
    except ValueError:  # an int of more than 4300 digits has no repr
        return f"<{type(value).__name__} too large to show>"


@dataclass(frozen=True)
class Field:
    """One profile value: its type, default and allowed range or choices."""

    kind: type | tuple[type, ...]
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple | None = None
    nullable: bool = False
    items: type | None = None  # element type for lists
    auto: bool = False  # the string 'auto' is allowed too

    def describe(self) -> str:
        """What the value may be, completely: type, both bounds or the choices, null."""
        rng = range_text(self.lo, self.hi)
        if self.auto:
            return f"'auto' or an integer {rng}"
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        name = getattr(self.kind, "__name__", str(self.kind))
        if self.items is not None:
            name = f"a list of {self.items.__name__}" + (" each" if rng else "")
        text = name + (f" {rng}" if rng else "")
        return text + (" or null" if self.nullable else "")


def _num(lo=None, hi=None, default=None, nullable=False) -> Field:
    return Field(float, default, lo, hi, nullable=nullable)


def _int(lo=None, hi=None, default=None, nullable=False) -> Field:
    return Field(int, default, lo, hi, nullable=nullable)


def _choice(*choices, default=None) -> Field:
    return Field(str, default if default is not None else choices[0], choices=choices)


def _like(cls: type, name: str, default: Any, nullable: bool = False) -> Field:
    """A profile value that becomes field `name` of settings class `cls`: its type and range."""
    meta = field_meta(cls, name)
    kind = next(f for f in dataclasses.fields(cls) if f.name == name).type
    return Field(_TYPES[kind], default, meta["lo"], meta["hi"], nullable=nullable)


def _list_like(cls: type, name: str, default: Any, nullable: bool = False) -> Field:
    """A list of values that each become field `name` of `cls` (a grid or a sweep)."""
    one = _like(cls, name, None)
    return Field(list, default, one.lo, one.hi, nullable=nullable, items=one.kind)


_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "float | None": float}


def settings_field(f: dataclasses.Field) -> Field:
    """The spec of a profile key that is a settings dataclass's field: its type, default and
    declared range (`settings.setting`)."""
    meta = f.metadata
    return Field(_TYPES[f.type], f.default, meta["lo"], meta["hi"], meta["choices"],
                 meta["nullable"])
