"""The stage contract: what each stage reads, what shapes its output, what it returns, where it lives.

A stage (or a step inside the data stage) declares

- ``sections``: the config sections its entry function takes, as keyword arguments named like
  the :class:`~cft_ray.config.PipelineConfig` attributes (``model=``, ``train=``, ...);
- ``output_fields``: the dotted config fields (a section, a sub-section or one field) whose values
  decide its output. They, with the keys of the stages it reads, are the only input to its key;
- ``result``: its typed result (a pydantic model, stored as JSON in the step's ``_SUCCESS``);
- ``entry``: ``"module:function"``, imported only when the stage runs (so this module, like
  :mod:`cft_ray.config`, pulls in no Ray, torch or vLLM).

Every other config field is listed in :data:`NOT_OUTPUT_SHAPING` with the reason it cannot change
an output (throughput, paths, logging). ``tests/test_architecture.py`` checks that every field is
in exactly one of the two, so a new field cannot silently miss a key. The rule for the teacher:
a field that can change which rows end as errors (attempts, timeouts, budget) shapes the output;
one that only paces the same requests does not.

Keys are derived here and nowhere else (:func:`stage_key`): by the pipeline, by the data stage for
its inner steps, by the sweep to group grid points that can share one data build, and by the
trainer for its own "already finished" check.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from pydantic import BaseModel, computed_field

from cft_ray.core.checkpoints import Checkpoint
from cft_ray.core.hashing import section_hash
from cft_ray.core.scores import SCORE_MODES

# ---------------------------------------------------------------- typed results


class DataResult(BaseModel):
    """The data stage: counts of every step and where the training sets are."""

    output_dir: str
    steps: dict[str, dict[str, Any]] = {}
    datasets: dict[str, str] = {}  # builder (or builder/size) -> folder


class Estimate(BaseModel):
    """What a teacher run would send and cost, before any call."""

    rows: int = 0
    to_send: int = 0
    cached: int = 0
    bad: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dollars: float = 0.0

    def line(self) -> str:
        return (f"estimate: {self.rows} rows, {self.cached} cached, {self.bad} bad, {self.to_send} to send: "
                f"~{self.prompt_tokens:,} prompt + ~{self.completion_tokens:,} completion tokens, ~${self.dollars:.4f}")


class BatchSummary(BaseModel):
    """What a ``teacher.mode: batch`` run did through the Batch API (before its online pass)."""

    batch_ids: list[str] = []  # every batch this run created or resumed
    resumed: int = 0  # batches created by an earlier, interrupted run and collected by this one
    requests: int = 0  # requests sent in batches (this run and resumed ones)
    ok: int = 0  # answered by a batch and cached
    failed: int = 0  # failed or expired in a batch: left to the online pass
    dollars: float = 0.0  # at batch prices
    seconds: float = 0.0


class TeacherSummary(BaseModel):
    """The critique stage: counts, tokens and dollars, read back from what was written."""

    rows: int = 0
    ok: int = 0
    error: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dollars: float = 0.0  # spent by this run (cached rows cost nothing now)
    seconds: float = 0.0  # end to end: estimate, endpoint check, actor start-up, sending, writing
    rows_per_s: float = 0.0
    requests: int = 0  # sent by the online pass, retries included
    refused_429: int = 0
    first_request_s: float | None = None  # start-up: seconds until the first request left
    errors_by_class: dict[str, int] = {}
    estimate: Estimate | None = None
    batch: BatchSummary | None = None
    output_path: str | None = None

    def table(self) -> str:
        lines = [f"{'rows':>10} {'ok':>8} {'error':>8} {'cached':>8} {'prompt tok':>12} {'compl tok':>12} "
                 f"{'dollars':>10} {'rows/s':>8}",
                 f"{self.rows:>10} {self.ok:>8} {self.error:>8} {self.cached:>8} {self.prompt_tokens:>12,} "
                 f"{self.completion_tokens:>12,} {self.dollars:>10.4f} {self.rows_per_s:>8.1f}"]
        lines += [f"  error {kind}: {n}" for kind, n in sorted(self.errors_by_class.items())]
        return "\n".join(lines)


class TrainResult(BaseModel):
    """The training stage: checkpoints by step, per-step metrics and the loss curve."""

    checkpoints: list[Checkpoint]
    metrics_path: str
    loss_curve_png: str
    total_steps: int
    data: dict[str, Any] = {}  # DataReport summary: kept / truncated / dropped rows

    @property
    def final_checkpoint(self) -> Path:
        return Path(self.checkpoints[-1].path)


class CurvePoint(BaseModel):
    """One checkpoint's score on the selection benchmark, in every grading mode."""

    name: str
    path: str
    step: int | None
    strict: float
    cft_compat: float


class SelectionResult(BaseModel):
    """Checkpoint selection: the curve over the checkpoints and the best one."""

    select_on: str
    best: CurvePoint
    curve: list[CurvePoint]
    curve_png: str


class EvalResult(BaseModel):
    """Scores of each checkpoint (benchmark -> {strict, cft_compat, n, timed_out}; and AVG)."""

    scores: dict[str, dict[str, dict[str, int | float]]]
    output_dir: str
    files: dict[str, str] = {}  # json / markdown / png tables

    @computed_field
    @property
    def checkpoint(self) -> str | None:
        """The first checkpoint scored: the selected one, in the pipeline."""
        return next(iter(self.scores), None)

    @computed_field
    @property
    def selected_scores(self) -> dict[str, dict[str, float]]:
        """The first checkpoint's accuracy by mode, then benchmark."""
        first = self.scores.get(self.checkpoint or "", {})
        return {mode: {bench: values[mode] for bench, values in first.items()} for mode in SCORE_MODES}


class SweepResult(BaseModel):
    """A Tune sweep: its experiment folder and best trial."""

    experiment_dir: str
    num_trials: int
    num_errors: int
    best_config: dict[str, Any] | None
    best_metrics: dict[str, Any] | None


# ---------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Stage:
    name: str
    sections: tuple[str, ...]
    output_fields: tuple[str, ...]
    result: type[BaseModel] | None  # None: a data-stage step, whose result is its counts
    entry: str | None = None  # "module:function"; None: a step run inside its stage's entry
    reads: tuple[str, ...] = ()  # stages whose key feeds this one's (their output is its input)

    def entry_function(self) -> Callable[..., BaseModel]:
        if self.entry is None:
            raise ValueError(f"{self.name} is a step of the data stage, run by its entry")
        module, function = self.entry.split(":")
        return getattr(importlib.import_module(module), function)


# The data stage's steps, in order: each one's key chains on the previous step's.
DATA_STEPS = {
    "load": Stage("load", ("data",), ("data.sources", "data.max_question_chars", "data.max_response_chars"), None),
    "generate": Stage("generate", ("model", "data"), ("data.generation", "model"), None, reads=("load",)),
    # Decontamination checks the run's own benchmarks unless data.decontaminate names others.
    "clean": Stage("clean", ("data", "eval"), ("data.decontaminate", "eval.benchmarks", "eval.data_dir"), None,
                   reads=("generate",)),
    # data.builders: sft-teacher also asks the teacher for its own answers.
    "critique": Stage("critique", ("teacher",), ("teacher", "data.builders"), TeacherSummary,
                      "cft_ray.teacher:run_teacher", reads=("clean",)),
    "build": Stage("build", ("model", "data"), ("data", "model"), None, reads=("critique",)),
}

STAGES = {
    "data": Stage("data", ("model", "data", "teacher", "eval"),
                  tuple(dict.fromkeys(f for step in DATA_STEPS.values() for f in step.output_fields)),
                  DataResult, "cft_ray.data:build_datasets"),
    "train": Stage("train", ("model", "train", "ray"), ("model", "train"), TrainResult,
                   "cft_ray.train:train", reads=("data",)),
    # Selection and the final evaluation share one folder of graded samples (and so one key).
    "select": Stage("select", ("eval",), ("eval",), SelectionResult, "cft_ray.eval:select_checkpoint",
                    reads=("train",)),
    "evaluate": Stage("evaluate", ("eval",), ("eval",), EvalResult, "cft_ray.eval:evaluate", reads=("train",)),
    # The sweep composes the other stages, so it takes the whole config (no sections of its own).
    "sweep": Stage("sweep", (), ("tune.param_space", "tune.metric", "tune.mode"), SweepResult, "cft_ray.tune:sweep"),
}
PIPELINE = ("data", "train", "select", "evaluate")

# Fields that cannot change any stage's output, and why.
NOT_OUTPUT_SHAPING = {
    "name": "the run's folder name",
    "preset": "a record of where the config started; its values are the fields themselves",
    "output_dir": "where the run is written",
    "work_dir": "where a run on object storage keeps its local working copy",
    "model.cache_dir": "where built tiny models are cached",
    "ray": "how to reach Ray and where Ray Train keeps checkpoints",
    "data.batch_size": "rows per Ray Data batch",
    "data.generation.num_engines": "vLLM engines in the pool",
    "data.generation.batch_size": "questions per engine call",
    "teacher.api_key_env": "where the secret is read from",
    "teacher.api_key_file": "where the secret is read from",
    "teacher.cache_dir": "where answers are cached",
    "teacher.requests_per_minute": "pacing of the same requests",
    "teacher.tokens_per_minute": "pacing of the same requests",
    "teacher.max_concurrency": "requests in flight per actor",
    "teacher.num_actors": "teacher actors in the pool",
    "teacher.batch_size": "rows per Ray Data batch",
    "teacher.actor_num_cpus": "Ray resources per actor",
    "teacher.mode": "the same requests, sent one by one or as a batch (the cache answers either way)",
    "teacher.batch_max_requests": "how requests are split into batches",
    "teacher.batch_max_bytes": "how requests are split into batches",
    "teacher.batch_poll_s": "how often a batch is polled",
    "train.max_failures": "restarts resume from the latest checkpoint, reaching the same weights",
    "train.peak_tflops_per_gpu": "the denominator of the reported MFU",
    "eval.num_engines": "vLLM engines in the pool",
    "eval.batch_size": "prompts per engine call",
    "eval.grade_workers": "grading worker processes",
    "tune.name": "the experiment's folder name",
    "tune.max_concurrent_trials": "trials at once",
    "tune.trial_cpus": "Ray resources per trial driver",
    "tune.max_failures": "retries resume from the trial's checkpoints",
}


def _section(config: Any, name: str) -> BaseModel:
    return config[name] if isinstance(config, Mapping) else getattr(config, name)


def _prune(value: Any, path: str, excluded: tuple[str, ...]) -> Any:
    """``value`` (the JSON form of the field at ``path``) without the excluded sub-fields."""
    if not isinstance(value, dict):
        return value
    return {k: _prune(v, f"{path}.{k}", excluded) for k, v in value.items() if f"{path}.{k}" not in excluded}


def output_values(stage: Stage, config: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values of ``stage``'s output fields in ``config`` (a PipelineConfig, or a mapping of
    section name -> section), without the non-shaping fields and ``exclude``."""
    excluded = (*NOT_OUTPUT_SHAPING, *exclude)
    values = {}
    for dotted in stage.output_fields:
        if dotted in excluded:
            continue
        section, *rest = dotted.split(".")
        value: Any = _section(config, section).model_dump(mode="json")
        for part in rest:
            value = value[part]
        values[dotted] = _prune(value, dotted, excluded)
    return values


def stage_key(stage: Stage | str, config: Any, *upstream: str, exclude: tuple[str, ...] = ()) -> str:
    """The key of a stage (or data step): its output values plus the keys of what it reads."""
    stage = stage if isinstance(stage, Stage) else {**STAGES, **DATA_STEPS}[stage]
    return section_hash([output_values(stage, config, exclude), *upstream])


def pipeline_keys(config: Any) -> dict[str, str]:
    """Each pipeline stage's key, chained through the stages it reads."""
    keys: dict[str, str] = {}
    for name in PIPELINE:
        stage = STAGES[name]
        keys[name] = stage_key(stage, config, *(keys[r] for r in stage.reads))
    return keys


def sections_of(stage: Stage, config: Any) -> dict[str, BaseModel]:
    """The keyword arguments of a stage's entry that come from the config."""
    return {name: _section(config, name) for name in stage.sections}


def run_stage(name: str, config: Any, output_dir: str | Path, **inputs: Any) -> BaseModel:
    """Call a stage's entry with its own config sections, its inputs and its output folder."""
    stage = STAGES[name]
    return stage.entry_function()(output_dir, **inputs, **sections_of(stage, config))
