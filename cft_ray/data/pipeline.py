"""The data stage end to end: load -> validate -> (generate) -> dedup / decontaminate ->
critique (teacher stage) -> build -> subsets.

Each step writes under ``<output_dir>/work/<step>-<key>/``; the key comes from the stage contract
(:data:`cft_ray.stages.DATA_STEPS`: the fields that shape the step's output plus the previous
step's key). A step whose folder holds ``_SUCCESS`` is skipped, so a crashed or repeated build
redoes only what changed. Bad rows are never lost: ``quarantine.jsonl`` (invalid input) and
``removed.jsonl`` (duplicates, contaminated) record every row that did not reach a training set,
with the reason. Ray must be connected (the entry point does it).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from cft_ray.config import ConfigError, DataConfig, EvalConfig, ModelConfig, TeacherConfig
from cft_ray.core.verdict import parse_verdict
from cft_ray.data import decontam
from cft_ray.data.builders import build_rows, write_dataset
from cft_ray.data.sources import load_source, to_arrow
from cft_ray.data.subsets import subset_ids
from cft_ray.data.validate import REASON, split_quarantine, validate_batch
from cft_ray.stages import DATA_STEPS, DataResult, stage_key
from cft_ray.steps import StepRunner

log = logging.getLogger(__name__)
ROW = "row_index"


def _write_jsonl(df: pd.DataFrame, path: Path) -> None:
    df.to_json(path, orient="records", lines=True, force_ascii=False, default_handler=str)


def _dataset(df: pd.DataFrame):
    import ray

    return ray.data.from_arrow(to_arrow(df))


def _validate(df: pd.DataFrame, d: DataConfig, directory: Path, tag: str) -> dict[str, Any]:
    """Validate on Ray Data; good rows -> rows.parquet, bad ones -> quarantine.jsonl."""
    ds = _dataset(df).map_batches(
        validate_batch, batch_format="pandas", batch_size=d.batch_size,
        fn_kwargs={"max_question_chars": d.max_question_chars, "max_response_chars": d.max_response_chars},
    )
    good, bad = split_quarantine(ds.to_pandas())
    to_arrow_parquet(good, directory / "rows.parquet")
    _write_jsonl(bad, directory / "quarantine.jsonl")
    return {f"{tag}_in": len(df), "rows": len(good), "quarantined": len(bad),
            "quarantine_reasons": dict(Counter(bad[REASON]))}


def to_arrow_parquet(df: pd.DataFrame, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(to_arrow(df), path)


def _load(data: DataConfig, directory: Path) -> dict[str, Any]:
    frames = [load_source(source) for source in data.sources]
    df = pd.concat(frames, ignore_index=True)
    df[ROW] = range(len(df))
    return _validate(df, data, directory, "loaded")


def _model_path(model: ModelConfig, name: str | None) -> str:
    from cft_ray.models.tiny import resolve_model

    chosen = model if name is None else model.model_copy(update={"name_or_path": name})
    return str(resolve_model(chosen))


def _generate(model: ModelConfig, data: DataConfig, rows_path: Path, directory: Path) -> dict[str, Any]:
    from cft_ray.data.generate import generate_responses

    g = data.generation
    name = g.model or model.name_or_path
    ds = generate_responses(pd.read_parquet(rows_path), g, _model_path(model, g.model), name)
    df = ds.to_pandas()
    df[ROW] = range(len(df))
    df[REASON] = None
    counts = _validate(df, data, directory, "generated")
    counts["finish_reasons"] = df["gen_finish_reason"].value_counts().to_dict()
    return counts


def _clean(data: DataConfig, eval: EvalConfig, rows_path: Path, directory: Path) -> dict[str, Any]:
    """Exact / near-duplicate removal and benchmark decontamination: the per-row work (keys,
    n-gram lookups) on Ray Data, then one global decision over the keys in the driver."""
    import ray

    d = data.decontaminate
    ds = ray.data.read_parquet(str(rows_path))
    counts: dict[str, Any] = {}
    if d.dedup:
        ds = ds.map_batches(decontam.dedup_key_batch, batch_format="pandas", batch_size=data.batch_size)
    if d.enabled:
        questions, skipped = decontam.load_benchmark_questions(
            d.benchmarks or eval.benchmarks, d.benchmarks_dir or eval.data_dir
        )
        index = decontam.BenchmarkIndex(questions, d.ngram)
        ds = ds.map_batches(decontam.Decontaminate, fn_constructor_kwargs={"index": index},
                            compute=ray.data.ActorPoolStrategy(size=1), batch_format="pandas",
                            batch_size=data.batch_size)
        counts.update(benchmarks_checked={k: len(v) for k, v in questions.items()}, benchmarks_skipped=skipped)
    df = ds.to_pandas()
    counts["in"] = len(df)
    reason = pd.Series(None, index=df.index, dtype=object)
    if d.dedup:
        dups = df[ROW].isin(decontam.duplicate_rows(df))
        reason[dups] = "duplicate"
        counts["duplicates"] = int(dups.sum())
    if d.enabled:
        flagged = df[decontam.CONTAMINATED].notna() & reason.isna()
        reason[flagged] = "contaminated: " + df.loc[flagged, decontam.CONTAMINATED]
        counts["contaminated"] = decontam.contamination_report(df[flagged])
    to_arrow_parquet(df[reason.isna()], directory / "rows.parquet")
    _write_jsonl(df[reason.notna()].assign(removed_reason=reason[reason.notna()]), directory / "removed.jsonl")
    counts["rows"] = int(reason.isna().sum())
    return counts


def _teacher_counts(summary) -> dict[str, Any]:
    return {"ok": summary.ok, "error": summary.error, "cached": summary.cached,
            "prompt_tokens": summary.prompt_tokens, "completion_tokens": summary.completion_tokens,
            "dollars": round(summary.dollars, 4)}


def _critique(teacher: TeacherConfig, data: DataConfig, rows_path: Path, directory: Path) -> dict[str, Any]:
    """Teacher critiques for rows without one (the released CFT rows carry theirs), plus
    teacher answers when the sft-teacher builder is asked for."""
    critique_step = DATA_STEPS["critique"].entry_function()  # the teacher stage's entry

    rows = pd.read_parquet(rows_path)
    critique = rows["critique"] if "critique" in rows else pd.Series(None, index=rows.index, dtype=object)
    has = critique.fillna("").astype(str).str.strip().str.len() > 0
    given = rows[has].copy()
    given["verdict"] = [parse_verdict(c) for c in given["critique"]]
    given["status"] = "ok"
    parts, counts = [given], {"given_critiques": len(given)}
    if (~has).any():
        todo = rows[~has].drop(columns=["critique"], errors="ignore")
        todo_path = directory / "todo.parquet"
        to_arrow_parquet(todo, todo_path)
        summary = critique_step(directory / "critiques", rows=str(todo_path), teacher=teacher)
        parts.append(pd.read_parquet(summary.output_path))
        counts["teacher"] = _teacher_counts(summary)
    critiqued = pd.concat(parts, ignore_index=True)
    if "sft-teacher" in data.builders:
        questions = critiqued.drop_duplicates("question")[["id", "question", "reference_answer", "source"]]
        q_path = directory / "questions.parquet"
        to_arrow_parquet(questions.assign(response=""), q_path)
        answers = critique_step(directory / "answers", rows=str(q_path), teacher=teacher, template="sft-teacher-answer-v1")
        got = pd.read_parquet(answers.output_path)
        got = got[got["status"] == "ok"][["question", "teacher_answer"]]
        critiqued = critiqued.merge(got, on="question", how="left")
        counts["teacher_answers"] = _teacher_counts(answers)
    to_arrow_parquet(critiqued, directory / "rows.parquet")
    ok = critiqued["status"] == "ok"
    counts.update(rows=len(critiqued), errors=int((~ok).sum()),
                  verdicts=critiqued.loc[ok, "verdict"].value_counts().to_dict())
    return counts


def _tokenizer(model: ModelConfig):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_model_path(model, None))


def _build(model: ModelConfig, data: DataConfig, rows_path: Path, output_dir: Path, config_hash: str) -> dict[str, Any]:
    rows = pd.read_parquet(rows_path)
    rows = rows[rows["status"] == "ok"]
    tokenizer = _tokenizer(model)
    subsets = subset_ids(rows, data.subset)
    counts, datasets = {}, {}
    for builder in data.builders:
        built = build_rows(builder, rows, data.templates)
        extra = {"config_hash": config_hash, "critiqued_rows": len(rows), "model": model.name_or_path}
        card = write_dataset(built, output_dir / builder, builder, tokenizer, extra)
        datasets[builder] = str(output_dir / builder)
        counts[builder] = card["rows"]
        for size, ids in subsets.items():
            part = built[built["id"].isin(set(ids))].reset_index(drop=True)
            where = output_dir / builder / "subsets" / f"{data.subset.strategy}-{size}"
            subset = {"strategy": data.subset.strategy, "size": size, "seed": data.subset.seed}
            card = write_dataset(part, where, builder, tokenizer, {**extra, "subset": subset})
            datasets[f"{builder}/{size}"] = str(where)
            counts[f"{builder}/{size}"] = card["rows"]
    return {"rows": counts, "datasets": datasets}


def build_datasets(
    output_dir: str | Path, *, model: ModelConfig, data: DataConfig, teacher: TeacherConfig, eval: EvalConfig
) -> DataResult:
    """Run the whole data stage into ``output_dir``; returns (and writes) the summary."""
    output_dir = Path(output_dir)
    sections = {"model": model, "data": data, "teacher": teacher, "eval": eval}
    steps = StepRunner(output_dir / "work", "data")
    key = stage_key("load", sections)
    rows = steps.run("load", key, lambda out: _load(data, out)) / "rows.parquet"
    if data.generation.enabled:
        key = stage_key("generate", sections, key)
        rows = steps.run("generate", key, lambda out, src=rows: _generate(model, data, src, out)) / "rows.parquet"
    key = stage_key("clean", sections, key)
    rows = steps.run("clean", key, lambda out, src=rows: _clean(data, eval, src, out)) / "rows.parquet"
    key = stage_key("critique", sections, key)
    rows = steps.run("critique", key, lambda out, src=rows: _critique(teacher, data, src, out)) / "rows.parquet"
    build_key = stage_key("build", sections, key)
    for stale in (output_dir / "work").glob("build-*/_SUCCESS"):
        if stale.parent.name != f"build-{build_key}":
            stale.unlink()  # the builder folders are shared: only the latest build may be skipped
    steps.run("build", build_key, lambda out, src=rows: _build(model, data, src, output_dir, build_key))
    counts = {name: dict(result) for name, result in steps.results.items()}
    result = DataResult(output_dir=str(output_dir), steps=counts, datasets=counts["build"].pop("datasets"))
    (output_dir / "summary.json").write_text(result.model_dump_json(indent=2))
    return result


def training_set(datasets: dict[str, str], method: str, sizes: list[int]) -> str:
    """The built dataset a method trains on: the method's set, or its largest subset."""
    name = f"{method}/{max(sizes)}" if sizes else method
    if name not in datasets:
        raise ConfigError(
            f"train.method={method!r} with data.subset.sizes={sorted(sizes)} needs the {name!r} dataset, but the "
            f"data stage built only {sorted(datasets)}; add {method!r} to data.builders (and a subset "
            "strategy other than 'all' for sizes)"
        )
    return datasets[name]
