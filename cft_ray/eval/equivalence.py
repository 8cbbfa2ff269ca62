"""Is an extracted answer the reference answer? Our own equivalence, in two modes.

``strict``: exact after normalisation, numbers within relative tolerance 1e-4 (also against the
reference x100 and /100, as the harness does for percentages), brackets/intervals, tuples and
matrices element by element, equations, and symbolic equality with sympy.
``cft_compat``: the same, but two numbers that agree after rounding to one decimal are equal
first (1.04 = 1.0), the leniency of the CFT authors' fork that their published numbers used.

:func:`equivalent` answers from cheap rules (string keys, a safe numeric evaluator) and returns
None where only sympy can tell (``symbolic=False``), or asks sympy (``symbolic=True``, what the
grader's killable workers do, :mod:`cft_ray.eval.grader`).
"""

from __future__ import annotations

import ast
import math
import operator
import random
import re
from typing import Literal

from cft_ray.core.scores import ScoreMode
from cft_ray.eval.mathverify import mathverify_equal

# ---------------------------------------------------------------- normalisation

_REMOVE = ["\\left", "\\right", "\\displaystyle", "\\quad", "\\qquad", "\\$", "$", "\\(", "\\)", "\\%", "%",
           "^{\\circ}", "^\\circ", "°", "{,}", "\\mathrm{~}", "~"]
# TeX spacing commands, but not the second half of a "\\\\" row break.
_SPACING = re.compile(r"(?<!\\)\\[!,;: ]")
_TEXT_GROUP = re.compile(r"\\(?:text|textbf|mbox|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
# A unit in a text group with its exponent: "15\mbox{ cm}^2" loses "\mbox{ cm}^2", not just "\mbox{ cm}".
_UNIT_GROUP = re.compile(_TEXT_GROUP.pattern + r"(?:\^\{?\d+\}?)?")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_SPACED_THOUSANDS = re.compile(r"^-?\d{1,3}(?: \d{3})+(?:\.\d+)?$")  # "1 000": the harness drops spaces
_NUMBER_THEN_WORDS = re.compile(r"^(-?[\d.]+(?:e[-+]?\d+)?)\s*(?:[a-zA-Z]{2,}[a-zA-Z\s^\d/]*)$")
_SIMPLE_LHS = re.compile(r"^\s*[a-zA-Z](?:_\{?\w+\}?)?(?:\(\w\))?\s*$")
_IN_SET = re.compile(r"^[a-zA-Z]\s*\\in\s*")  # "x \in [-2, 7]"
_LETTER_OPTION = re.compile(r"^\(?([a-jA-J])\)?$")
_WORDS = re.compile(r"^[a-zA-Z][a-zA-Z\s\-']*$")


def _unwrap_text(s: str) -> str:
    """``\\text{}`` groups are units when something else remains (drop them), else the answer.
    A dropped group leaves a space, so what stood on either side is never glued together
    (``12\\text{ and }13`` is not ``1213``)."""
    rest = re.sub(r"\s+", " ", _UNIT_GROUP.sub(" ", s)).strip()
    if rest and any(ch.isdigit() for ch in rest):
        return rest
    return _TEXT_GROUP.sub(r"\1", s)


def normalize(answer: str) -> str:
    """A canonical string for an answer: no TeX spacing, units, degrees, dollars or percent signs."""
    s = answer.strip().replace("\n", " ")
    for old, new in (("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\cdot10", "\\times10"), ("\\le ", "\\leq "),
                     ("\\ge ", "\\geq "), ("\\emptyset", "\\varnothing")):
        s = s.replace(old, new)
    for token in _REMOVE:
        s = s.replace(token, "")
    s = _SPACING.sub("", s)
    s = _unwrap_text(s)
    s = re.sub(r"\^\s*\{?\\prime\}?", "", s)
    s = re.sub(r"\s*(?:degrees?|dollars?)\s*$", "", s)
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)  # \frac12
    s = re.sub(r"_\{(\w+)\}", r"_\1", s)  # 1010_{2} -> 1010_2
    s = re.sub(r"\\sqrt(\d+)", r"\\sqrt{\1}", s)  # \sqrt2
    s = _IN_SET.sub("", s.strip().rstrip(".").strip())
    if _THOUSANDS.match(s):  # "1,000,000"; "32, 349" is a list of two numbers
        s = s.replace(",", "")
    elif _SPACED_THOUSANDS.match(s):
        s = s.replace(" ", "")
    words = _NUMBER_THEN_WORDS.match(s)
    if words:  # "18 apples", "5 cm"
        s = words.group(1)
    return s


def _key(s: str) -> str:
    """Case and spacing free, but a space between two words or numbers stays (``12 13`` is not ``1213``)."""
    return re.sub(r"\s+", "", re.sub(r"(?<=\w)\s+(?=\w)", "\u2423", s.strip())).lower()


# ---------------------------------------------------------------- LaTeX to Python

_FUNCS = {"sqrt", "sin", "cos", "tan", "log", "ln", "exp", "pi"}


def _braced(s: str, start: int) -> tuple[str, int]:
    """The ``{...}`` group starting at ``start`` (or one character) and the index after it."""
    while start < len(s) and s[start] == " ":  # "\frac 54", "\sqrt 2"
        start += 1
    if start < len(s) and s[start] == "{":
        depth = 0
        for i in range(start, len(s)):
            depth += (s[i] == "{") - (s[i] == "}")
            if depth == 0:
                return s[start + 1 : i], i + 1
        raise ValueError("unbalanced braces")
    if start >= len(s):
        raise ValueError("missing argument")
    return s[start], start + 1


def latex_to_python(s: str) -> str:
    """A Python expression for a LaTeX math answer (fractions, roots, powers, pi, implicit products)."""
    out, i = [], 0
    while i < len(s):
        if s.startswith("\\frac", i):
            num, i = _braced(s, i + 5)
            den, i = _braced(s, i)
            out.append(f"(({latex_to_python(num)})/({latex_to_python(den)}))")
        elif s.startswith("\\sqrt", i):
            i += 5
            root = None
            if i < len(s) and s[i] == "[":
                end = s.index("]", i)
                root, i = s[i + 1 : end], end + 1
            arg, i = _braced(s, i)
            arg = latex_to_python(arg)
            out.append(f"(({arg})**(1/({latex_to_python(root)})))" if root else f"sqrt({arg})")
        elif s[i] == "\\":
            name = re.match(r"\\([a-zA-Z]+)", s[i:])
            word = name.group(1) if name else s[i + 1 : i + 2]
            i += 1 + len(word)
            out.append({"times": "*", "cdot": "*", "div": "/", "infty": "oo", "ln": "log", "arcsin": "asin",
                        "arccos": "acos", "arctan": "atan"}.get(word, f" {word} "))
        else:
            out.append(s[i])
            i += 1
    expr = "".join(out).replace("np.", "").replace("{", "(").replace("}", ")").replace("^", "**").replace("−", "-")
    # AIME-style leading zeros ("055" is 55): Python refuses them and sympy would read 0*55.
    expr = re.sub(r"(?<![\d.\w])0+(?=\d)", "", expr)
    # Implicit products: 2x, 2(…), )(, 2 sqrt(…) — but never split e-notation such as 1e5.
    expr = re.sub(r"(?<=[\d)])\s*(?=(?![eE][-+]?\d)[a-zA-Z(])", "*", expr)
    expr = re.sub(r"(?<=[a-zA-Z])\s+(?=[\d(a-zA-Z])", "*", expr)
    return re.sub(r"\b(sqrt|sin|cos|tan|log|exp)\*\(", r"\1(", expr).strip()


# ---------------------------------------------------------------- safe numeric evaluation

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_CALLS = {"sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan, "log": math.log, "exp": math.exp}


def _eval_node(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval_node(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id == "pi":
        return math.pi
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval_node(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval_node(node.left), _eval_node(node.right))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        base, exponent = _eval_node(node.left), _eval_node(node.right)
        if abs(exponent) > 400:  # refuse towers; sympy (with a timeout) may try them
            raise ValueError("exponent too large")
        return float(base**exponent)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS and len(node.args) == 1:
        return _CALLS[node.func.id](_eval_node(node.args[0]))
    raise ValueError("not a plain number")


def numeric_value(s: str) -> float | None:
    """The value of a constant answer (``3``, ``-\\frac{1}{2}``, ``2\\sqrt{3}``, ``1.5e-3``, ``\\pi/4``), else None."""
    if not s or len(s) > 200 or _DIGIT_UNDERSCORE.search(s):
        return None  # "1112122_3" is a number in base 3, not Python's 1112122 with a digit separator
    try:
        value = _eval_node(ast.parse(latex_to_python(s), mode="eval"))
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError, IndexError):
        return None
    if isinstance(value, complex) or math.isnan(value) or math.isinf(value):
        return None
    return value


_DECIMAL = re.compile(r"^-?\d+(?:\.\d+)?$")
_DIGIT_UNDERSCORE = re.compile(r"\d_")


def numbers_equal(pred: float, ref: float, mode: ScoreMode, decimals: bool = False) -> bool:
    """Within 1e-4 relative (also against ref x100 and /100: percentages), as the harness compares;
    in cft_compat mode two decimal literals (``decimals``) that agree to one decimal place are
    equal too, as the CFT fork rounds float strings (never fractions or expressions)."""
    if mode == "cft_compat" and decimals and round(pred, 1) == round(ref, 1):
        return True
    return any(math.isclose(pred, target, rel_tol=1e-4) for target in (ref, ref * 100, ref / 100))


# ---------------------------------------------------------------- structure

_MATRIX = re.compile(r"^\\begin\{([pbvBV]?matrix|array)\}(?:\{[^}]*\})?(.*)\\end\{\1\}$", re.DOTALL)


def _split_top(s: str, sep: str = ",") -> list[str]:
    parts, depth, current = [], 0, []
    for ch in s:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == sep and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return parts


def _matrix(s: str) -> list[list[str]] | None:
    s = s.strip()
    if len(s) > 2 and s[0] + s[-1] in ("()", "[]") and s[1:].lstrip().startswith("\\begin{"):
        s = s[1:-1]  # "\left(\begin{matrix}...\end{matrix}\right)" once \left and \right are gone
    match = _MATRIX.match(s.strip())
    if not match:
        return None
    rows = [r for r in match.group(2).split("\\\\") if r.strip()]
    return [[c.strip() for c in row.split("&")] for row in rows]


def _sequence(s: str) -> tuple[str, list[str]] | None:
    """("()", items) for tuples and intervals (brackets kept as the kind), ("set", items) for
    ``\\{...\\}`` and bare comma lists (order free); None for a single item."""
    if s.startswith("\\{") and s.endswith("\\}"):
        return "set", _split_top(s[2:-2])
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _balanced_inside(s[1:-1]):
        items = _split_top(s[1:-1])
        if len(items) > 1:
            return s[0] + s[-1], items
    items = _split_top(s)
    return ("set", items) if len(items) > 1 else None


def _balanced_inside(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += (ch in "([{") - (ch in ")]}")
        if depth < 0:
            return False
    return depth == 0


def _all(verdicts) -> bool | None:
    """False if any is False, None (undecided) if any is None, else True."""
    verdicts = list(verdicts)
    if any(v is False for v in verdicts):
        return False
    return None if any(v is None for v in verdicts) else True


def _drop_variable_lhs(s: str) -> str:
    """``x = 5`` -> ``5`` (a lone variable on the left of a single ``=``)."""
    if s.count("=") == 1:
        lhs, rhs = s.split("=")
        if _SIMPLE_LHS.match(lhs):
            return rhs.strip()
    return s


# ---------------------------------------------------------------- equivalence

Backend = Literal["ours", "math-verify"]


def equivalent(pred: str, ref: str, mode: ScoreMode = "strict", symbolic: bool = False,
               backend: Backend = "ours") -> bool | None:
    """True/False, or None when only sympy can tell and ``symbolic`` is off.

    ``backend="math-verify"``: what our rules accept without sympy (the protocol's exact forms,
    option letters, numeric tolerance and percent forms, cft_compat's rounding, element-wise
    structures) is equal; anything else is math-verify's call (expressions, equations, relations,
    sets, matrices), in place of our sympy step."""
    p, r = normalize(pred), normalize(ref)
    if not p or not r:
        return False
    if _key(p) == _key(r):
        return True
    p_letter, r_letter = _LETTER_OPTION.match(p), _LETTER_OPTION.match(r)
    if r_letter or p_letter:  # option answers such as "(b)"
        return bool(p_letter and r_letter and p_letter.group(1).lower() == r_letter.group(1).lower())
    if backend == "math-verify":
        return equivalent(pred, ref, mode, symbolic=False) is True or mathverify_equal(pred, ref)
    if "=" in p and "=" not in r:
        p = _drop_variable_lhs(p)
    if "=" in r and "=" not in p:
        r = _drop_variable_lhs(r)
    if _key(p) == _key(r):
        return True

    if "\\cup" in p or "\\cup" in r:  # unions of intervals, piece by piece
        p_parts, r_parts = p.split("\\cup"), r.split("\\cup")
        if len(p_parts) != len(r_parts):
            return False
        return _all(equivalent(a, b, mode, symbolic) for a, b in zip(p_parts, r_parts))

    p_matrix, r_matrix = _matrix(p), _matrix(r)
    if p_matrix is not None or r_matrix is not None:
        if p_matrix is None or r_matrix is None or [len(x) for x in p_matrix] != [len(x) for x in r_matrix]:
            return False
        return _all(equivalent(a, b, mode, symbolic) for pr, rr in zip(p_matrix, r_matrix) for a, b in zip(pr, rr))

    p_seq, r_seq = _sequence(p), _sequence(r)
    if p_seq or r_seq:
        return _sequences_equal(p_seq, r_seq, mode, symbolic)

    if _DIGIT_UNDERSCORE.search(p) or _DIGIT_UNDERSCORE.search(r):
        return False  # numbers in another base ("1010_2"): equal only as written, and the keys differ
    p_value, r_value = numeric_value(p), numeric_value(r)
    if p_value is not None and r_value is not None:
        return numbers_equal(p_value, r_value, mode, decimals=bool(_DECIMAL.match(p) and _DECIMAL.match(r)))
    if _WORDS.match(p) and _WORDS.match(r):
        return False  # different words ("True" vs "False"); the equal case was the key match
    if (p_value is None) != (r_value is None) and not (_has_symbols(p) or _has_symbols(r)):
        return False
    return symbolic_equal(p, r) if symbolic else None


def _has_symbols(s: str) -> bool:
    return bool(re.search(r"[a-zA-Z\\]", s.replace("\\frac", "").replace("\\sqrt", "").replace("\\pi", "")))


def _sequences_equal(p_seq, r_seq, mode: ScoreMode, symbolic: bool) -> bool | None:
    if not p_seq or not r_seq or len(p_seq[1]) != len(r_seq[1]):
        return False
    (p_kind, p_items), (r_kind, r_items) = p_seq, r_seq
    if p_kind == "set" or r_kind == "set":
        if p_kind != r_kind and "set" not in (p_kind, r_kind):
            return False
        # Order free: each reference item must match a distinct predicted item.
        remaining = list(p_items)
        undecided = False
        for ref_item in r_items:
            verdicts = [equivalent(x, ref_item, mode, symbolic) for x in remaining]
            if True in verdicts:
                remaining.pop(verdicts.index(True))
            elif None in verdicts:
                undecided = True
            else:
                return False
        return None if undecided else True
    if p_kind != r_kind:  # [1, 2) vs [1, 2]: a different interval
        return False
    return _all(equivalent(a, b, mode, symbolic) for a, b in zip(p_items, r_items))


def _to_sympy(s: str):
    from sympy.parsing.sympy_parser import (
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    # Not sympy's parse_latex: on input it does not understand it silently drops parts
    # ("np.arcsin(10/13)+1" -> n*p), which would make different answers equal.
    return parse_expr(latex_to_python(s), transformations=(*standard_transformations, implicit_multiplication_application))


def symbolic_equal(p: str, r: str) -> bool:
    """sympy equality of two expressions or equations; numbers compared within 1e-4 relative."""
    try:
        if "=" in p and "=" in r and p.count("=") == r.count("=") == 1:
            (pl, pr), (rl, rr) = p.split("="), r.split("=")
            a = _to_sympy(pl) - _to_sympy(pr)
            b = _to_sympy(rl) - _to_sympy(rr)
            return _proportional(a, b)
        a, b = _to_sympy(p), _to_sympy(r)
        return _expr_equal(a, b)
    except Exception:  # noqa: BLE001 - an unparseable answer is simply not equal
        return False


def _proportional(a, b) -> bool:
    """Two equations ``a = 0`` and ``b = 0`` are the same when a / b is a nonzero constant."""
    if _expr_equal(a, b) or _expr_equal(a, -b):
        return True
    symbols = sorted((a.free_symbols | b.free_symbols), key=str)
    rng = random.Random(1)
    ratios = []
    for _ in range(3):
        point = {x: rng.uniform(0.5, 2.0) for x in symbols}
        vb = complex(b.evalf(subs=point))
        if abs(vb) < 1e-12:
            return False
        ratios.append(complex(a.evalf(subs=point)) / vb)
    return abs(ratios[0]) > 1e-12 and all(abs(r - ratios[0]) <= 1e-6 * abs(ratios[0]) for r in ratios)


def _expr_equal(a, b) -> bool:
    """Equal at three random points (cheap, and settles nearly every case), else ``simplify``."""
    import sympy

    symbols = sorted((a - b).free_symbols, key=str)
    rng = random.Random(0)
    try:
        for _ in range(3):
            point = {x: rng.uniform(0.5, 2.0) for x in symbols}
            va, vb = complex(a.evalf(subs=point)), complex(b.evalf(subs=point))
            if abs(va - vb) > 1e-4 * abs(vb) and abs(va - vb) > 1e-12:  # relative, as the numbers
                return False
        return True
    except (TypeError, ValueError):  # not numeric at a point (sets, booleans...): ask sympy
        return sympy.simplify(a - b) == 0

