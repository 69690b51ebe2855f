"""The package's shape (issue 25): no import circle, counting imports made inside functions
(they hide a circle from Python, not from a reader)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "bprior_core"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that the file at `path` imports, anywhere in it."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (a package importing its own submodules is not one), or
    None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):  # a package's __init__ importing its submodules
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"p": {"p.x"}, "p.x": set()}) is None


def test_no_module_imports_back_into_a_circle() -> None:
    circle = _cycle(import_graph())
    assert circle is None, "import circle: " + " -> ".join(circle)


MAX_MODULE_LINES = 500


def test_no_module_is_over_500_lines() -> None:
    """A module a reader can hold in mind: split by what it holds before it grows past this."""
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_the_public_api_resolves_and_stays_lazy() -> None:
    """Every name of `bprior_core.__all__` is what its module defines; importing the package
    imports none of them (profile checks stay light)."""
    import importlib
    import subprocess
    import sys

    import bprior_core

    for name in bprior_core.__all__:
        module = importlib.import_module(f"bprior_core.{bprior_core._API[name]}")
        assert getattr(bprior_core, name) is getattr(module, name)
    code = ("import sys, bprior_core; "
            "print([m for m in sys.modules if m.startswith('bprior_core.')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_source_file_is_git_ignored() -> None:
    """A pattern in .gitignore that catches a package or notebook file keeps it out of every
    clone while the tests pass here (`data/` once hid bprior_core/data/ from CI)."""
    import shutil
    import subprocess

    root = PACKAGE.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        return  # an unpacked sdist: nothing is ignored there
    sources = [*PACKAGE.rglob("*.py"), *(root / "notebooks").glob("*.ipynb")]
    files = [str(p.relative_to(root)) for p in sources if "__pycache__" not in p.parts]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *files], cwd=root,
                             capture_output=True, text=True).stdout.split()
    assert not ignored, f".gitignore hides these source files from every clone: {ignored}"
