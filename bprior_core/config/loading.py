"""Reading a profile: its file (a name in params/ or a path), YAML with bomb, size and
duplicate-key guards, relative paths made absolute, then validation."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from .fields import ProfileError, clip, shown
from .profile import Profile
from .schema import PATH_KEYS
from .validation import WORKERS_ENV, _suggest, validate_profile

PARAMS_DIR = Path(__file__).resolve().parents[2] / "params"


def _is_path(text: str) -> bool:
    """A profile given with a '/' or ending in .yaml/.yml is a file; anything else is a name."""
    return "/" in text or os.sep in text or text.endswith((".yaml", ".yml"))


def profile_path(name_or_path: str | Path) -> Path:
    """`cpu` -> params/cpu.yaml, whatever the current folder holds (a folder `./cpu/` does not
    shadow it); `./cpu.yaml`, `my/cpu` or `cpu.yml` -> that file, which must exist."""
    text = str(name_or_path)
    if _is_path(text):
        candidate = Path(text)
        if candidate.is_dir():
            raise ProfileError(f"profile file {clip(text)} is a folder; give a YAML file (e.g. "
                               "params/cpu.yaml) or a profile name from params/ (e.g. cpu)")
        if not candidate.exists():
            raise ProfileError(f"profile file {clip(text)} does not exist; give an existing YAML "
                               "file or a profile name from params/ (e.g. cpu)")
        return candidate
    path = PARAMS_DIR / f"{text}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise ProfileError(
            f"no profile named {shown(text)}{_suggest(text, known)} "
            f"(profiles in {PARAMS_DIR}: {', '.join(known)}; or give a path to a YAML file)"
        )
    return path


# A profile holds a few hundred values; aliases (*name) repeat what their anchor (&name) holds,
# so nested aliases multiply: 2 KB of them expand to 387 million values ("billion laughs")
MAX_YAML_NODES = 10_000
MAX_PROFILE_BYTES = 1_000_000  # a profile is a few kilobytes


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` holds once every alias is expanded (shared nodes are counted once
    per use but visited once); ProfileError past MAX_YAML_NODES, or for an alias inside the
    collection it names (an endless structure)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise ProfileError(
            f"line {node.start_mark.line + 1}: an alias refers to the collection that holds it "
            "(an endless structure); write the values out instead")
    open_nodes.add(key)
    total = 1
    for child in _children(node):
        total += _expanded_size(child, sizes, open_nodes)
        if total > MAX_YAML_NODES:
            raise ProfileError(
                f"the document expands to more than {MAX_YAML_NODES} values (each alias *name "
                "repeats what its anchor &name holds, and nested aliases multiply); a profile "
                "holds a few hundred values: write them out, or use fewer aliases")
    open_nodes.discard(key)
    sizes[key] = total
    return total


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping (plain YAML keeps the last
    value silently, so a profile could say `steps: 10` and later `steps: 1000`), and a document
    whose aliases expand to more than MAX_YAML_NODES values (before building any of them)."""

    def compose_document(self):
        node = super().compose_document()
        _expanded_size(node, {}, set())
        return node

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if first is not None:
                raise ProfileError(
                    f"duplicate key {shown(key)} on line {key_node.start_mark.line + 1} (first on "
                    f"line {first}); each key may appear once per section: keep one of them"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """A YAML syntax error in one line, located where the broken construct starts (PyYAML's own
    message names "<unicode string>" and points where parsing failed, often a line later)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context, where = getattr(exc, "context", None), getattr(exc, "problem_mark", None)
    start = getattr(exc, "context_mark", None)

    def at(mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    if start is not None and context and ("flow" in context or "quoted" in context):
        # an unclosed bracket or quote: the fix is where it opens, not where parsing gave up
        text = f"{at(start)}: {context} that is not closed: {problem}"
        return text + (f" (at {at(where)})" if where is not None else "")
    text = f"{at(where)}: {problem}" if where is not None else problem
    return text + (f" ({context} from {at(start)})" if start is not None and context else "")


def _read_yaml(path: Path, text: str) -> Any:
    """The YAML document in `text` (read from `path`), or ProfileError naming the file."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path} is not valid YAML: {yaml_error_text(exc)}") from None
    except RecursionError:
        raise ProfileError(f"{path} is nested too deeply to read (brackets or indentation "
                           "hundreds of levels deep); a profile is a few levels of "
                           "sections") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ProfileError(f"{path} holds a value that cannot be read: {clip(str(exc))}") from None


def load_profile(name_or_path: str | Path) -> Profile:
    """Read and validate a profile by name (in params/) or by path."""
    path = profile_path(name_or_path)
    if not stat.S_ISREG(path.stat().st_mode):  # a device or a pipe may never end
        raise ProfileError(f"{path} is not a regular file (a device, pipe or socket); a profile "
                           "is a YAML file, e.g. params/cpu.yaml")
    with path.open("rb") as f:
        data = f.read(MAX_PROFILE_BYTES + 1)  # bounded whatever the file claims to hold
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(f"{path} holds more than {MAX_PROFILE_BYTES} bytes; a profile is a "
                           "few kilobytes of YAML: is this the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path} is not a UTF-8 text file (byte {exc.start}: "
                           f"{exc.object[exc.start:exc.start + 1]!r}); a profile is YAML saved as "
                           "UTF-8") from None
    raw = _read_yaml(path, text)
    try:
        raw = _resolved(raw or {}, path.parent)
        if os.environ.get(WORKERS_ENV) and isinstance(raw, dict):
            raw["workers"] = _workers_override(os.environ[WORKERS_ENV])
        return validate_profile(raw)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None


def _workers_override(text: str) -> int:
    """$BPRIOR_WORKERS (what `--workers` sets) as the profile's `workers`."""
    try:
        return int(text)
    except ValueError:
        raise ProfileError(f"${WORKERS_ENV}={clip(text)!r} is not an integer; set it to the "
                           "number of worker processes, e.g. 2") from None


def _resolved(raw: Any, base: Path) -> Any:
    """A raw profile with its relative paths (`PATH_KEYS`, those that are strings) made absolute
    against `base`, the profile file's folder, so a profile means the same files from any
    working folder (the validation reports everything else about them)."""
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    for dotted in PATH_KEYS:
        *parents, last = dotted.split(".")
        node = out
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                break
            node[key] = dict(child)
            node = node[key]
        else:
            value = node.get(last)
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                node[last] = str((base / Path(value).expanduser()).resolve())
            elif isinstance(value, str) and value:
                node[last] = str(Path(value).expanduser())
    return out
