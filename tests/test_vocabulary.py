"""Each word of the study is defined once, in `bprior_core/vocabulary.py` (issue 25): no other
module of the package writes out a list of experiments, methods, metrics, priors or claim ids,
or an arm's name (`sgd+learned`, or an f-string that builds one)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from bprior_core import vocabulary as v

PACKAGE = Path(__file__).parents[1] / "bprior_core"
WORDS = {
    "experiments": set(v.EXPERIMENTS),
    "methods": {*v.METHODS, v.HMC, v.ENSEMBLE},
    "metrics": {*v.METRICS, v.ERROR_PCT},
    "priors": {*v.PRIOR_NAMES, v.TASK_PRIOR},
    "prior kinds": set(v.PRIOR_KINDS),
    "claim ids": set(v.CLAIM_IDS),
}
_KINDS = "|".join(k for k in v.PRIOR_KINDS if k != v.NONE)
ARM_NAME = re.compile(rf"[a-z_]+\+({_KINDS})")  # a whole string that is an arm's name
# the pieces of an arm's name an f-string joins: `sgd+{kind}`, `{method}+learned`
ARM_PIECE = re.compile(rf"(^|[^A-Za-z_])[a-z_]+\+$|^\+({_KINDS})($|[^A-Za-z_])")


def _is_all(node: ast.AST, parents: dict) -> bool:
    parent = parents.get(node)
    return isinstance(parent, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "__all__" for t in parent.targets)


def problems(source: str) -> list[str]:
    """Lists of one vocabulary's words and arm names written out in `source`."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and not _is_all(node, parents):
            words = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if len(words) == len(node.elts) >= 2 and all(isinstance(w, str) for w in words):
                found += [f"line {node.lineno}: {name} {words}"
                          for name, vocab in WORDS.items() if set(words) <= vocab]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            in_fstring = isinstance(parents.get(node), ast.JoinedStr)
            if (ARM_PIECE.search(node.value) if in_fstring else ARM_NAME.fullmatch(node.value)):
                found.append(f"line {node.lineno}: arm name {node.value!r}")
    return found


def test_the_check_finds_written_out_words() -> None:
    assert problems('X = ("sghmc", "sgld")\nY = ["nll", "ece"]\n') == [
        "line 1: methods ['sghmc', 'sgld']", "line 2: metrics ['nll', 'ece']"]
    assert len(problems('a = "sgd+learned"\nb = f"{m}+zero"\nc = f"sgd+{k}"\n')) == 3
    assert problems('__all__ = ["nll", "ece"]\nZ = ("scale", "eps")\nt = "the `sgd+zero` arm"\n'
                    'f = open(p, "a+")\n') == []


def test_no_module_but_the_vocabulary_writes_out_its_words() -> None:
    found = {str(path.relative_to(PACKAGE)): problems(path.read_text())
             for path in sorted(PACKAGE.rglob("*.py")) if path.name != "vocabulary.py"}
    found = {k: p for k, p in found.items() if p}
    assert not found, ("write these with bprior_core.vocabulary's names: "
                       + "; ".join(f"{k}: {', '.join(p)}" for k, p in found.items()))


def test_arm_names_round_trip() -> None:
    for name in (*v.ARMS, *v.COVARIANCE_ARMS, v.LONG_SGD, v.DEEP_ENSEMBLE):
        assert v.arm(*v.arm_parts(name)) == name
    assert v.arm_parts(v.SGHMC_LEARNED) == (v.SGHMC, v.LEARNED)
    assert v.arm_parts(v.PROBE) == (v.PROBE, None)
