"""Imported once by the grader's fork server so every symbolic worker starts warm."""

import sympy  # noqa: F401
from sympy.parsing.latex import parse_latex
from sympy.parsing.sympy_parser import parse_expr  # noqa: F401

import cft_ray.eval.grader  # noqa: F401

parse_latex("x")  # loads the ANTLR grammar (about a second) before any deadline runs
