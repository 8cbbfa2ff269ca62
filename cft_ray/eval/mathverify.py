"""math-verify (Hugging Face's answer-equivalence library and its LaTeX parser) behind our extraction.

Both answers are already extracted by the harness protocol (:mod:`cft_ray.core.extract`); here
they are parsed as LaTeX (then as a plain expression) and compared by ``math_verify.verify``.
Its own signal-based timeouts are off: the grader's worker processes enforce the deadline.
"""

from __future__ import annotations

import logging
from functools import lru_cache

logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeouts are off" is our choice, said once here


@lru_cache(maxsize=1)
def _configs():
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return [LatexExtractionConfig(), ExprExtractionConfig()]


def _as_math(answer: str) -> str:
    """An extracted answer as math-verify reads LaTeX: inside ``$...$``."""
    text = answer.strip()
    return text if text.startswith("$") and text.endswith("$") and len(text) > 1 else f"${text}$"


def mathverify_equal(pred: str, ref: str) -> bool:
    """Does math-verify find the extracted answer ``pred`` equal to the reference ``ref``?"""
    from math_verify import parse, verify

    gold = parse(_as_math(ref), _configs(), parsing_timeout=None)
    answer = parse(_as_math(pred), _configs(), parsing_timeout=None)
    return bool(gold and answer and verify(gold, answer, timeout_seconds=None))
