"""Grading modes and the layout of the paper's score table.

``strict`` compares answers exactly (numbers within 1e-4 relative); ``cft_compat`` adds the CFT
authors' fork's leniency (numbers equal after rounding to one decimal), the mode their published
numbers used. A graded sample holds one ``correct_<mode>`` column per mode.
"""

from __future__ import annotations

from typing import Literal

ScoreMode = Literal["strict", "cft_compat"]
SCORE_MODES: tuple[ScoreMode, ...] = ("strict", "cft_compat")
# Checkpoint selection and the paper's tables use the lenient mode.
SELECTION_MODE: ScoreMode = "cft_compat"

# The six math benchmarks of the paper's Table 2 (and its AVG), in its column order.
SIX_BENCHMARKS = ["math", "minerva_math", "gsm8k", "olympiadbench", "aime24", "amc23"]
LABELS = {"math": "MATH", "minerva_math": "Minerva", "gsm8k": "GSM8K", "olympiadbench": "OlympiadB",
          "aime24": "AIME24", "amc23": "AMC23"}


def score_column(mode: ScoreMode) -> str:
    """The graded-sample column holding one mode's verdict."""
    return f"correct_{mode}"


def table_columns(benchmarks: list[str]) -> list[str]:
    """Columns of a score table in the paper's Table 2 order: the six, AVG, then the rest."""
    six = [b for b in SIX_BENCHMARKS if b in benchmarks]
    return [*six, *(["AVG"] if six else []), *[b for b in benchmarks if b not in SIX_BENCHMARKS]]
