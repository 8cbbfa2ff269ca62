"""Grading completions: extract the final answer, compare it with the reference in every mode.

Extraction follows the Qwen2.5-Math harness (:mod:`cft_ray.core.extract`); equivalence is
:mod:`cft_ray.eval.equivalence`; the sympy comparisons those rules cannot settle run in killable
workers with a hard per-comparison deadline (:mod:`cft_ray.eval.timeout_pool`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cft_ray.core.extract import extract_answer, extract_choice
from cft_ray.core.scores import SCORE_MODES, ScoreMode
from cft_ray.eval.equivalence import Backend, equivalent
from cft_ray.eval.timeout_pool import TimeoutPool


@dataclass
class Grade:
    extracted: str
    correct: dict[ScoreMode, bool]
    timed_out: bool
    error: str | None = None  # why the row could not be graded (it then counts as wrong)


def extract(completion: str, choice_letters: str | None = None) -> str:
    """The answer of a completion: an option letter for multiple choice, else the math answer."""
    return extract_choice(completion, choice_letters) if choice_letters else extract_answer(completion)


def grade_row(completion: str, reference: str, choice_letters: str | None, modes: tuple[ScoreMode, ...],
              backend: Backend = "ours") -> dict:
    """Extract and compare one row in every mode (what a grading worker runs, under its deadline).
    Any exception (a RecursionError on a 3,000-deep tuple, a MemoryError) is the row's error."""
    try:
        answer = extract(completion, choice_letters)
        if choice_letters:  # option letters compare as letters
            correct = {mode: answer.upper() == reference.strip().upper() for mode in modes}
        else:
            correct = {mode: bool(equivalent(answer, reference, mode, symbolic=True, backend=backend)) for mode in modes}
        return {"extracted": answer, "correct": correct, "error": None}
    except Exception as exc:  # noqa: BLE001 - the row's error record, never the run's end
        return {"extracted": "", "correct": dict.fromkeys(modes, False), "error": f"{type(exc).__name__}: {exc}"[:500]}


class Grader:
    """Grades batches of (completion, reference) in all requested modes.

    Every row is graded whole (extraction, normalisation, comparison) in a worker process of a
    :class:`TimeoutPool`, under a hard deadline of ``timeout_s``: a row past it counts as wrong
    and as timed out, and its worker is killed and replaced; a row whose grading raises (or whose
    worker dies) counts as wrong with its error. Nothing a completion holds can stop the batch.
    """

    def __init__(self, modes: tuple[ScoreMode, ...] = SCORE_MODES, timeout_s: float = 3.0, num_workers: int = 2,
                 backend: Backend = "math-verify"):
        self.modes, self.timeout_s, self.num_workers, self.backend = modes, timeout_s, num_workers, backend
        self._pool: TimeoutPool | None = None

    @property
    def timeouts(self) -> int:
        """Rows that ran past the deadline so far."""
        return self._pool.timeouts if self._pool else 0

    def grade(self, completions: list[str], references: list[str], choice_letters: list[str | None] | None = None) -> list[Grade]:
        letters = choice_letters or [None] * len(completions)
        if self._pool is None:
            died = {"extracted": "", "correct": dict.fromkeys(self.modes, False),
                    "error": "WorkerDied: the grading worker died (out of memory?)"}
            self._pool = TimeoutPool("cft_ray.eval.grader:grade_row", on_error=died,
                                     preload=("cft_ray.eval._sympy_preload",), num_workers=self.num_workers,
                                     timeout_s=self.timeout_s)
        jobs = [(str(c), str(r), lt, self.modes, self.backend) for c, r, lt in zip(completions, references, letters)]
        grades = []
        for result in self._pool.map(jobs):
            if result is None:
                grades.append(Grade("", dict.fromkeys(self.modes, False), timed_out=True,
                                    error=f"Timeout: grading took more than {self.timeout_s:g} s"))
            else:
                grades.append(Grade(result["extracted"], result["correct"], timed_out=False, error=result["error"]))
        return grades

    def close(self) -> None:
        if self._pool:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
