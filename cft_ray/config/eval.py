"""Config of the evaluation stage (vLLM actor pool + grader)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cft_ray.config.base import StrictModel
from cft_ray.core.scores import SIX_BENCHMARKS


class EvalConfig(StrictModel):
    benchmarks: list[str] = Field(default_factory=lambda: ["math-500", *SIX_BENCHMARKS])
    data_dir: str | None = Field(None, description="folder of {name}/test.jsonl; None: the hub / built-in sets")
    select_on: str = Field("math-500", description="checkpoint selection benchmark")
    prompt: str = "qwen25-math-cot"
    max_tokens: int = Field(2048, ge=1)
    limit: int | None = Field(None, ge=1, description="score at most this many samples per benchmark")
    num_engines: int = Field(1, ge=1)
    tensor_parallel_size: int = Field(1, ge=1)
    use_gpu: bool = False
    max_model_len: int | None = Field(None, ge=16, description="engine context; None: the model's own")
    batch_size: int = Field(64, ge=1, description="prompts per engine call; graded rows are saved per batch")
    grade_timeout_s: float = Field(3.0, gt=0, description="hard limit per graded row (a row past it counts wrong)")
    grade_workers: int = Field(2, ge=1, description="grading worker processes (each row under the timeout)")
    grade_backend: Literal["math-verify", "ours"] = Field(
        "math-verify", description="equivalence after our extraction and protocol rules: math-verify's LaTeX "
        "parser, or our own rules and sympy (see README, Grading)")
    self_critique: Literal["none", "single-pass", "two-stage"] = Field(
        "none",
        description="single-pass: the prompt asks the model to critique and correct itself; two-stage: "
        "solve, critique with the CFT prompt, re-solve (sampled) while judged wrong",
    )
    self_critique_attempts: int = Field(8, ge=1, description="two-stage: most solutions per question")
    self_critique_temperature: float = Field(0.7, gt=0, description="two-stage: sampling temperature of re-solves")
    seed: int = Field(0, description="engine seed and GPQA option shuffle seed")

    @model_validator(mode="after")
    def _selection_is_scored(self) -> "EvalConfig":
        if self.select_on not in self.benchmarks:
            raise ValueError(
                f"eval.select_on={self.select_on!r} is not in eval.benchmarks "
                f"{self.benchmarks}; add it to the list or select on one of them"
            )
        return self
