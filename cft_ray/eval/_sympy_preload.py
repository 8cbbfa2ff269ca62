"""Imported once by the grader's fork server so every grading worker starts warm."""

import math_verify
import sympy  # noqa: F401
from sympy.parsing.sympy_parser import parse_expr

import cft_ray.eval.grader  # noqa: F401

# First uses build parser tables; do them before any deadline runs.
parse_expr("x + 1")
math_verify.parse("$x + 1$", parsing_timeout=None)
