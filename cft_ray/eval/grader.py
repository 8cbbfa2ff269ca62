"""Grading completions: extract the final answer, compare it with the reference in every mode.

Extraction follows the Qwen2.5-Math harness (:mod:`cft_ray.core.extract`); equivalence is
:mod:`cft_ray.eval.equivalence`; the sympy comparisons those rules cannot settle run in killable
workers with a hard per-comparison deadline (:mod:`cft_ray.eval.timeout_pool`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cft_ray.core.extract import extract_answer, extract_choice
from cft_ray.core.scores import SCORE_MODES, ScoreMode
from cft_ray.eval.equivalence import equivalent
from cft_ray.eval.timeout_pool import TimeoutPool


@dataclass
class Grade:
    extracted: str
    correct: dict[ScoreMode, bool]
    timed_out: bool


def extract(completion: str, choice_letters: str | None = None) -> str:
    """The answer of a completion: an option letter for multiple choice, else the math answer."""
    return extract_choice(completion, choice_letters) if choice_letters else extract_answer(completion)


class Grader:
    """Grades batches of (completion, reference) in all requested modes.

    Cheap checks run here; undecided comparisons go to sympy in a :class:`TimeoutPool` (started
    on first need), so a batch of easy answers never pays for worker processes. A comparison past
    ``timeout_s`` counts as wrong and as timed out.
    """

    def __init__(self, modes: tuple[ScoreMode, ...] = SCORE_MODES, timeout_s: float = 3.0, num_workers: int = 2):
        self.modes, self.timeout_s, self.num_workers = modes, timeout_s, num_workers
        self._pool: TimeoutPool | None = None

    @property
    def timeouts(self) -> int:
        return self._pool.timeouts if self._pool else 0

    def grade(self, completions: list[str], references: list[str], choice_letters: list[str | None] | None = None) -> list[Grade]:
        letters = choice_letters or [None] * len(completions)
        extracted = [extract(c, l) for c, l in zip(completions, letters)]
        verdicts: dict[tuple[int, str], bool | None] = {}
        hard: list[tuple[int, str]] = []
        for i, (answer, ref, lt) in enumerate(zip(extracted, references, letters)):
            for mode in self.modes:
                if lt:  # option letters compare as letters
                    verdicts[i, mode] = answer.upper() == str(ref).strip().upper()
                else:
                    verdicts[i, mode] = equivalent(answer, str(ref), mode)
                if verdicts[i, mode] is None:
                    hard.append((i, mode))
        timed_out = set()
        if hard:
            if self._pool is None:
                self._pool = TimeoutPool("cft_ray.eval.equivalence:symbolic_verdict", on_error=False,
                                         preload=("cft_ray.eval._sympy_preload",), num_workers=self.num_workers,
                                         timeout_s=self.timeout_s)
            results = self._pool.map([(extracted[i], str(references[i]), mode) for i, mode in hard])
            for (i, mode), verdict in zip(hard, results):
                verdicts[i, mode] = bool(verdict)
                if verdict is None:
                    timed_out.add(i)
        return [
            Grade(extracted[i], {m: bool(verdicts[i, m]) for m in self.modes}, i in timed_out)
            for i in range(len(completions))
        ]

    def close(self) -> None:
        if self._pool:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
