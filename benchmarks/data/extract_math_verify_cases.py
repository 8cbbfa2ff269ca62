"""Extract Math-Verify's own (gold, prediction, expected) test cases as JSON lines.

Source: https://github.com/huggingface/Math-Verify, commit
5d148cfaaf99214c2e4ffb4bc497ab042c592a7a (2025-07-02, package version 0.8.0).
Licence: Apache-2.0 (the repository's LICENCE file). Only the test data (string
literals in tests/) is extracted; no Math-Verify code is copied or executed.

    python benchmarks/data/extract_math_verify_cases.py /tmp/mv-src \
        [-o benchmarks/data/math_verify_cases.jsonl]

The test files are read with `ast`. A case is any assertion of the form
`compare_strings(gold, pred, ...) == expected` or `verify(parse(gold), parse(pred), ...)
== expected` (`int(...)` around the call is allowed), one per `pytest.mark.parametrize`
row, or a single one when the arguments are written in place. Each line holds gold,
prediction, expected (bool), source ("tests/<file>.py:<line>"), test (function name)
and config: the library settings the test grades with, resolved from the helper's and
the library's defaults, so another grader can be run on the same pairs:

    extraction                 ["latex", "expr"], ["latex"] or ["expr"], in that order
    latex_boxed_match_priority LatexExtractionConfig.boxed_match_priority (null without latex)
    float_rounding             verify(float_rounding=...)
    strict                     verify(strict=...)
    allow_set_relation_comp    verify(allow_set_relation_comp=...)
"""

from __future__ import annotations

import argparse
import ast
import json
from collections import Counter
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).parent / "math_verify_cases.jsonl"
# The tests' helper builds LatexExtractionConfig(boxed_match_priority=0) for "latex".
HELPER_BOXED_PRIORITY = 0
VERIFY_OPTIONS = ("float_rounding", "strict", "allow_set_relation_comp")

Params = tuple[list[str], list[ast.expr]]


class Skip(Exception):
    """A case that cannot be taken from the source as literal data."""


def find_function(tree: ast.AST, name: str) -> ast.FunctionDef | None:
    return next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name), None)


def defaults(func: ast.FunctionDef) -> dict[str, Any]:
    """Literal default values of a function's parameters, by name."""
    positional = func.args.args[len(func.args.args) - len(func.args.defaults):]
    pairs = list(zip(positional, func.args.defaults))
    pairs += [(a, d) for a, d in zip(func.args.kwonlyargs, func.args.kw_defaults) if d is not None]
    return {a.arg: ast.literal_eval(d) for a, d in pairs}


def library_defaults(repo: Path) -> dict[str, Any]:
    """What parse()/verify() use when a test passes nothing, read from src/math_verify."""
    grader = ast.parse((repo / "src/math_verify/grader.py").read_text())
    parser = ast.parse((repo / "src/math_verify/parser.py").read_text())
    verify = find_function(grader, "verify")
    assert verify is not None, "verify() not found in src/math_verify/grader.py"
    priority = next(
        ast.literal_eval(s.value)
        for cls in ast.walk(parser) if isinstance(cls, ast.ClassDef) and cls.name == "LatexExtractionConfig"
        for s in cls.body
        if isinstance(s, ast.AnnAssign) and s.value and getattr(s.target, "id", "") == "boxed_match_priority"
    )
    verify_defaults = defaults(verify)
    return {
        "extraction": ["latex", "expr"],  # parse()'s default extraction_config
        "latex_boxed_match_priority": priority,
        **{k: verify_defaults[k] for k in VERIFY_OPTIONS},
    }


def as_call(node: ast.AST, name: str) -> ast.Call | None:
    """The node if it is a call of `name` (or `x.name`), else None."""
    if isinstance(node, ast.Call) and name in (getattr(node.func, "id", None), getattr(node.func, "attr", None)):
        return node
    return None


def grading_asserts(func: ast.FunctionDef) -> list[tuple[ast.Assert, ast.Call, ast.expr]]:
    """(assert, grading call, expected node) for each `assert <grading call> == <expected>`."""
    found = []
    for node in ast.walk(func):
        if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)):
            continue
        left, op, expected = node.test.left, node.test.ops[0], node.test.comparators[0]
        if (wrapped := as_call(left, "int")) and wrapped.args:
            left = wrapped.args[0]
        call = as_call(left, "compare_strings") or as_call(left, "verify")
        if not (call and isinstance(op, ast.Eq) and len(call.args) >= 2):
            continue
        if as_call(call, "verify") and not all(as_call(a, "parse") for a in call.args[:2]):
            continue  # verify() on objects built some other way (mocks, sympy values)
        found.append((node, call, expected))
    return found


def param_rows(func: ast.FunctionDef) -> Params | None:
    """Argument names and rows of the function's @pytest.mark.parametrize, if any."""
    for dec in func.decorator_list:
        if (call := as_call(dec, "parametrize")) and isinstance(call.args[1], (ast.List, ast.Tuple)):
            names = [n.strip() for n in ast.literal_eval(call.args[0]).split(",")]
            return names, list(call.args[1].elts)
    return None


def literal(node: ast.expr, binding: dict[str, ast.expr]) -> Any:
    if isinstance(node, ast.Name) and node.id in binding:
        node = binding[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise Skip(f"non-literal {type(node).__name__} ({ast.unparse(node)[:40]})") from None


def make_case(call: ast.Call, expected: ast.expr, binding: dict[str, ast.expr], helper: dict[str, Any],
              library: dict[str, Any], where: dict[str, str]) -> dict[str, Any]:
    kwargs = {k.arg: literal(k.value, binding) for k in call.keywords if k.arg}
    if as_call(call, "compare_strings"):
        gold_node, pred_node = call.args[:2]
        opts = {**helper, **kwargs}
        config = {
            "extraction": list(opts["match_types"]),
            "latex_boxed_match_priority": HELPER_BOXED_PRIORITY if "latex" in opts["match_types"] else None,
            "float_rounding": opts["precision"],
            "strict": opts["strict"],
            "allow_set_relation_comp": opts["allow_set_relation_comp"],
        }
    else:  # verify(parse(gold), parse(pred), ...): the library's defaults
        parses = [as_call(a, "parse") for a in call.args[:2]]
        if any(p is None or len(p.args) != 1 or p.keywords for p in parses):
            raise Skip("parse() called with options")
        gold_node, pred_node = (p.args[0] for p in parses if p)
        config = {**library, **{k: v for k, v in kwargs.items() if k in VERIFY_OPTIONS}}
    gold, pred, want = (literal(n, binding) for n in (gold_node, pred_node, expected))
    if not (isinstance(gold, str) and isinstance(pred, str)):
        raise Skip("gold or prediction is not a string")
    if want not in (0, 1):  # True and False compare equal to 1 and 0
        raise Skip(f"expected is {want!r}, not a bool or 0/1")
    return {"gold": gold, "prediction": pred, "expected": bool(want), **where, "config": config}


def extract(repo: Path) -> tuple[list[dict[str, Any]], Counter[str], list[str]]:
    trees = {p: ast.parse(p.read_text(), filename=str(p)) for p in sorted((repo / "tests").glob("test_*.py"))}
    helper_def = next(d for t in trees.values() if (d := find_function(t, "compare_strings")))
    helper, library = defaults(helper_def), library_defaults(repo)
    cases: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    ignored: list[str] = []
    for path, tree in trees.items():
        rel = path.relative_to(repo).as_posix()
        for func in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")):
            asserts, params = grading_asserts(func), param_rows(func)
            if not asserts:
                ignored.append(f"{rel}::{func.name}")
                continue
            for node, call, expected in asserts:
                names = params[0] if params else []
                uses_params = any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))
                rows: list[ast.expr | None] = list(params[1]) if params and uses_params else [None]
                for row in rows:
                    where = {"source": f"{rel}:{(row or node).lineno}", "test": func.name}
                    try:
                        if row is not None and not isinstance(row, ast.Tuple):
                            raise Skip(f"parametrize row is a {type(row).__name__}, not a tuple")
                        binding = dict(zip(names, row.elts)) if row is not None else {}
                        cases.append(make_case(call, expected, binding, helper, library, where))
                    except Skip as why:
                        skipped[f"{rel}::{func.name}: {why}"] += 1
    return cases, skipped, ignored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("repo", type=Path, help="checked-out Math-Verify (a folder with tests/)")
    ap.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    cases, skipped, ignored = extract(args.repo)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as f:
        for case in cases:
            f.write(json.dumps(case, ensure_ascii=False) + "\n")
    n_true = sum(c["expected"] for c in cases)
    print(f"wrote {len(cases)} cases ({n_true} expected True, {len(cases) - n_true} False) to {args.out}")
    for test, n in Counter(f"{c['source'].split(':')[0]}::{c['test']}" for c in cases).items():
        print(f"  {n:4d}  {test}")
    print(f"skipped {sum(skipped.values())} cases:")
    for why, n in skipped.items():
        print(f"  {n:4d}  {why}")
    print(f"tests with no gold/prediction grading call (not cases): {', '.join(ignored) or 'none'}")


if __name__ == "__main__":
    main()
