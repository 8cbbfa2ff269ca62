"""The benchmark registry: where each test set comes from and how its rows become samples.

A benchmark reads ``{data_dir}/{name}/test.jsonl`` (the Qwen2.5-Math harness layout; copies in
``../shared/benchdata``) and turns each row into an :class:`EvalSample` with the question, the
reference answer parsed as in reference section 6, and for multiple choice the option texts.

Adding a benchmark is one entry in :data:`BENCHMARKS`: pick the parser class that matches its
fields (or write a small ``Benchmark`` subclass with a ``parse`` method)::

    BENCHMARKS["my-set"] = AnswerField("my-set")          # rows with `problem` and `answer`
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cft_ray.core.errors import ConfigError
from cft_ray.core.extract import last_boxed

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class EvalSample:
    """One test question. ``reference`` is the gold answer (an option letter for multiple choice)."""

    id: str
    benchmark: str
    question: str
    reference: str
    choices: tuple[str, ...] = ()  # option texts in the order labelled (A), (B), ...
    kind: Literal["math", "choice"] = "math"


def sample_id(benchmark: str, index: int, question: str) -> str:
    """Content hash of a sample; the index keeps repeated questions apart."""
    return hashlib.sha256(f"{benchmark}\0{index}\0{question}".encode()).hexdigest()[:16]


def with_answer_hint(question: str, reference: str) -> str:
    """The harness appends the expected answer form for true/false and yes/no questions."""
    ref = reference.strip().lower()
    if ref in ("true", "false"):
        return question + " (True or False)"
    if ref in ("yes", "no"):
        return question + " (Yes or No)"
    return question


def choices_block(choices: tuple[str, ...]) -> str:
    return "\nAnswer Choices: " + " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))


def _number_text(value: Any) -> str:
    """amc23 stores answers as floats (27.0); write whole numbers without the ``.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open() as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{line_no}: not valid JSON ({exc})") from None
    return rows


class Benchmark:
    """A file-backed benchmark. Subclasses say how a row becomes (question, reference, choices)."""

    kind: Literal["math", "choice"] = "math"
    num_options = 0  # multiple choice: option letters A.. in answers

    def __init__(self, name: str, description: str = ""):
        self.name = name
        self.description = description

    def parse(self, row: dict, index: int, seed: int) -> tuple[str, str, tuple[str, ...]]:
        raise NotImplementedError

    def rows(self, data_dir: str | Path | None) -> list[dict]:
        if data_dir is None:
            raise ConfigError(
                f"benchmark {self.name!r} reads {{data_dir}}/{self.name}/test.jsonl; set eval.data_dir "
                "(e.g. ../shared/benchdata)"
            )
        path = Path(data_dir).expanduser() / self.name / "test.jsonl"
        if not path.exists():
            raise ConfigError(f"benchmark {self.name!r}: {path} not found (eval.data_dir={data_dir})")
        return read_jsonl(path)

    def load(self, data_dir: str | Path | None = None, seed: int = 0) -> list[EvalSample]:
        samples = []
        for index, row in enumerate(self.rows(data_dir)):
            try:
                question, reference, choices = self.parse(row, index, seed)
            except (KeyError, IndexError, TypeError) as exc:
                raise ConfigError(f"benchmark {self.name!r} row {index}: missing or bad field {exc}") from None
            if self.kind == "math":
                question = with_answer_hint(question, reference)
            samples.append(
                EvalSample(sample_id(self.name, index, question), self.name, question, reference, choices, self.kind)
            )
        return samples


class BoxedSolution(Benchmark):
    """MATH-style rows: ``problem``; the reference is the last ``\\boxed{}`` of ``solution``."""

    def parse(self, row, index, seed):
        reference = last_boxed(row["solution"])
        if reference is None:
            raise KeyError("no \\boxed{} in solution")
        return row["problem"], reference, ()


class GSM8K(Benchmark):
    """``question``; the reference is the text after ``####`` in ``answer``."""

    def parse(self, row, index, seed):
        return row["question"], row["answer"].split("####")[-1].strip(), ()


class OlympiadBench(Benchmark):
    """``question``; the reference is ``final_answer[0]`` stripped of ``$``."""

    def parse(self, row, index, seed):
        return row["question"], row["final_answer"][0].strip("$"), ()


class AnswerField(Benchmark):
    """``problem``; the reference is the ``answer`` field as is."""

    def parse(self, row, index, seed):
        return row["problem"], _number_text(row["answer"]), ()


class GPQA(Benchmark):
    """GPQA Diamond: the correct and three incorrect answers, shuffled with a seed per question
    (the original shuffled unseeded, so its scores drift), reference = the correct letter."""

    kind = "choice"
    num_options = 4

    def parse(self, row, index, seed):
        options = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"], row["Incorrect Answer 3"]]
        options = [str(o).strip() for o in options]
        order = list(range(4))
        random.Random(f"{seed}-{index}").shuffle(order)
        choices = tuple(options[i] for i in order)
        question = str(row["Question"]).strip() + choices_block(choices)
        return question, LETTERS[order.index(0)], choices


class MMLUPro(Benchmark):
    """MMLU-Pro (all 14 categories, up to 10 options A-J, reference = ``answer`` letter).

    Reads ``{data_dir}/mmlu-pro/test.jsonl`` when present, else the hub's test parquet of
    ``TIGER-Lab/MMLU-Pro`` (rows ``question``, ``options``, ``answer``, ``category``).
    """

    kind = "choice"
    num_options = 10
    hub_repo = "TIGER-Lab/MMLU-Pro"
    hub_file = "data/test-00000-of-00001.parquet"

    def rows(self, data_dir):
        if data_dir is not None and (Path(data_dir).expanduser() / self.name / "test.jsonl").exists():
            return super().rows(data_dir)
        import pyarrow.parquet as pq
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(self.hub_repo, self.hub_file, repo_type="dataset")
        return pq.read_table(path).to_pylist()

    def parse(self, row, index, seed):
        choices = tuple(str(o).strip() for o in row["options"])
        return str(row["question"]).strip() + choices_block(choices), str(row["answer"]).strip(), choices


class SyntheticArith(Benchmark):
    """The smoke run's built-in test set: generated arithmetic problems (no files), seeded
    from 10,000 up so they never overlap the training questions (seeds below 10,000)."""

    def __init__(self, name: str, size: int = 200, seed: int = 10_000):
        super().__init__(name)
        self.size, self.seed = size, seed

    def rows(self, data_dir):
        from cft_ray.core.synthetic import arithmetic_problems

        return arithmetic_problems(self.size, seed=self.seed, flawed_fraction=0.0)

    def parse(self, row, index, seed):
        return row["question"], row["reference_answer"], ()


BENCHMARKS: dict[str, Benchmark] = {
    "math": BoxedSolution("math", "MATH test, 5,000 problems"),
    "math-500": BoxedSolution("math-500", "MATH-500 (PRM800K split), the checkpoint-selection set"),
    "minerva_math": BoxedSolution("minerva_math", "272 MIT OCW problems from the Minerva paper"),
    "gsm8k": GSM8K("gsm8k", "GSM8K test, 1,319 problems"),
    "olympiadbench": OlympiadBench("olympiadbench", "OlympiadBench, 675 English text problems"),
    "aime24": AnswerField("aime24", "AIME 2024, 30 problems"),
    "amc23": AnswerField("amc23", "AMC 2023, 40 problems"),
    "theoremqa": AnswerField("theoremqa", "TheoremQA, 800 problems"),
    "gpqa": GPQA("gpqa", "GPQA Diamond, 198 four-option questions"),
    "mmlu-pro": MMLUPro("mmlu-pro", "MMLU-Pro test, 12,032 ten-option questions"),
    "synthetic-arith": SyntheticArith("synthetic-arith"),
}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None
