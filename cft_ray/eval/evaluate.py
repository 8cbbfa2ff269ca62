"""Score checkpoints on benchmarks with the shared vLLM actor pool, grade, and tabulate.

One Ray Data pipeline per checkpoint covers every selected benchmark, so each engine loads a
checkpoint once. Graded rows are written as they stream out (one Parquet part per batch under
``samples/<checkpoint>/``): after a crash, finished samples are read back and not regenerated.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cft_ray.config import EvalConfig
from cft_ray.core.benchmarks import LETTERS, EvalSample, get_benchmark
from cft_ray.core.checkpoints import Checkpoint
from cft_ray.core.scores import LABELS, SCORE_MODES, SELECTION_MODE, SIX_BENCHMARKS, score_column, table_columns
from cft_ray.eval.grader import Grader
from cft_ray.eval.prompts import STOP_WORDS, render
from cft_ray.eval.selfcritique import TwoStageGenerator
from cft_ray.models.generation import EngineSpec, Sampling, generate
from cft_ray.report.markdown import markdown_table
from cft_ray.report.plots import png_figure
from cft_ray.stages import CurvePoint, EvalResult, SelectionResult

log = logging.getLogger(__name__)


def load_samples(config: EvalConfig, benchmarks: list[str] | None = None) -> list[EvalSample]:
    samples = []
    for name in benchmarks or config.benchmarks:
        loaded = get_benchmark(name).load(config.data_dir, seed=config.seed)
        samples.extend(loaded[: config.limit] if config.limit else loaded)
    return samples


def _choice_letters(sample: EvalSample) -> str | None:
    return LETTERS[: len(sample.choices)] if sample.kind == "choice" else None


def _done_ids(folder: Path) -> set[str]:
    if not any(folder.glob("part-*.parquet")):  # also a folder made just before a crash
        return set()
    return set(pq.read_table(folder, columns=["id"]).column("id").to_pylist())


def score_checkpoint(
    checkpoint: Checkpoint, samples: list[EvalSample], config: EvalConfig, output_dir: Path, grader: Grader
) -> Path:
    """Generate and grade every not-yet-finished sample for one checkpoint; return its folder."""
    import ray

    name, model_path = checkpoint.name, checkpoint.path
    folder = output_dir / "samples" / name
    done = _done_ids(folder)
    todo = [s for s in samples if s.id not in done]
    log.info("checkpoint %s: %d samples finished earlier, %d to generate", name, len(done), len(todo))
    if not todo:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    by_id = {s.id: s for s in todo}
    rows = [{"id": s.id, "benchmark": s.benchmark, "question": s.question, "prompt": render(
             s, config.prompt, model_path, single_pass_critique=config.self_critique == "single-pass")} for s in todo]
    engine = EngineSpec.for_section(config, model_path)
    sampling = Sampling(max_tokens=config.max_tokens, stop=STOP_WORDS, seed=config.seed)
    two_stage = {"generator": TwoStageGenerator, "attempts": config.self_critique_attempts,
                 "temperature": config.self_critique_temperature} if config.self_critique == "two-stage" else {}
    dataset = generate(ray.data.from_items(rows), engine, sampling, batch_size=config.batch_size, **two_stage)
    finished = 0
    for batch in dataset.iter_batches(batch_size=config.batch_size, batch_format="pandas"):
        picked = [by_id[i] for i in batch["id"]]
        grades = grader.grade(
            list(batch["completion"]), [s.reference for s in picked], [_choice_letters(s) for s in picked]
        )
        table = pa.table({
            "id": list(batch["id"]),
            "benchmark": list(batch["benchmark"]),
            "question": [s.question for s in picked],
            "prompt": list(batch["prompt"]),
            "completion": list(batch["completion"]),
            "finish_reason": list(batch["finish_reason"]),
            "completion_tokens": [int(t) for t in batch["completion_tokens"]],
            "extracted": [g.extracted for g in grades],
            "reference": [s.reference for s in picked],
            **{score_column(mode): [g.correct[mode] for g in grades] for mode in SCORE_MODES},
            "timed_out": [g.timed_out for g in grades],
            "grade_error": [g.error for g in grades],  # why a row could not be graded (it counts as wrong)
            **{col: [v.item() if hasattr(v, "item") else v for v in batch[col]]
               for col in ("attempts", "self_verdict") if col in batch},
        })
        # Written per batch: a crash loses at most the batches in flight.
        pq.write_table(table, folder / f"part-{uuid.uuid4().hex[:12]}.parquet")
        finished += len(table)
        log.info("checkpoint %s: %d/%d samples graded", name, finished, len(todo))
    return folder


def summarize(folder: Path, samples: list[EvalSample]) -> dict[str, dict]:
    """Per benchmark: accuracy x100 (rounded to 0.1) in both modes, counts, timeouts."""
    wanted = {s.id for s in samples}
    df = pq.read_table(folder).to_pandas()
    df = df[df["id"].isin(wanted)].drop_duplicates("id")
    scores = {}
    for bench, group in df.groupby("benchmark", sort=False):
        scores[bench] = {
            **{mode: round(100 * float(group[score_column(mode)].mean()), 1) for mode in SCORE_MODES},
            "n": int(len(group)),
            "timed_out": int(group["timed_out"].sum()),
        }
    six = [scores[b] for b in SIX_BENCHMARKS if b in scores]
    if six:  # the paper's AVG: plain mean of the six math benchmarks (of those scored)
        scores["AVG"] = {mode: round(sum(s[mode] for s in six) / len(six), 1) for mode in SCORE_MODES}
        scores["AVG"]["n_benchmarks"] = len(six)
    return scores


def evaluate(
    output_dir: str | Path, *, checkpoints: list[Checkpoint], eval: EvalConfig, tables: str = "summary"
) -> EvalResult:
    """Score each checkpoint on ``eval.benchmarks``; write samples under ``output_dir/samples``
    and the tables as ``{tables}.json/.md/.png``. Ray must be connected (the entry point does it)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    samples = load_samples(eval)
    scores = {}
    with Grader(timeout_s=eval.grade_timeout_s, num_workers=eval.grade_workers, backend=eval.grade_backend) as grader:
        for checkpoint in checkpoints:
            folder = score_checkpoint(checkpoint, samples, eval, output_dir, grader)
            scores[checkpoint.name] = summarize(folder, samples)
            log.info("checkpoint %s: %s", checkpoint.name, json.dumps(scores[checkpoint.name]))
        timeouts = grader.timeouts
    files = write_tables(scores, eval.benchmarks, output_dir / tables)
    log.info("evaluation done: %d checkpoints, %d grading timeouts; %s", len(checkpoints), timeouts, files["markdown"])
    return EvalResult(scores=scores, output_dir=str(output_dir), files={k: str(v) for k, v in files.items()})


def write_tables(scores: dict[str, dict], benchmarks: list[str], stem: Path) -> dict[str, Path]:
    """``stem``.json, .md (Table 2 layout, one table per mode) and .png (grouped bars)."""
    columns = table_columns(benchmarks)
    paths = {key: stem.with_suffix(suffix) for key, suffix in (("json", ".json"), ("markdown", ".md"), ("png", ".png"))}
    paths["json"].write_text(json.dumps({"columns": columns, "scores": scores}, indent=2))
    lines = []
    for mode in SCORE_MODES:
        rows = [[name, *(f"{per_bench[c][mode]:.1f}" if c in per_bench else "-" for c in columns)]
                for name, per_bench in scores.items()]
        lines += [f"### Accuracy ({mode})", "", *markdown_table(["checkpoint", *(LABELS.get(c, c) for c in columns)], rows), ""]
    paths["markdown"].write_text("\n".join(lines))

    width = 0.8 / max(1, len(scores))
    with png_figure(paths["png"], figsize=(max(6, 1.2 * len(columns) * max(1, len(scores)) ** 0.5), 4)) as (_, ax):
        for k, (name, per_bench) in enumerate(scores.items()):
            values = [per_bench.get(c, {}).get(SELECTION_MODE, 0.0) for c in columns]
            ax.bar([i + k * width for i in range(len(columns))], values, width, label=name)
        ax.set_xticks([i + width * (len(scores) - 1) / 2 for i in range(len(columns))], [LABELS.get(c, c) for c in columns])
        ax.set_ylabel(f"accuracy % ({SELECTION_MODE})")
        ax.set_ylim(0, 100)  # a fixed scale, so runs compare at a glance and all-zero scores still plot
        ax.legend(fontsize="small")
    return paths


def select_checkpoint(output_dir: str | Path, *, checkpoints: list[Checkpoint], eval: EvalConfig) -> SelectionResult:
    """The paper's protocol: score every checkpoint on ``select_on``, keep the best by the
    cft_compat score (ties: the earliest), write the curve (JSON + PNG). Run :func:`evaluate` on
    the winner for the full suite; with the same ``output_dir`` it reuses the ``select_on``
    samples scored here."""
    output_dir = Path(output_dir)
    selection = eval.model_copy(update={"benchmarks": [eval.select_on]})
    result = evaluate(output_dir, checkpoints=checkpoints, eval=selection, tables="selection")
    scores = [result.scores[c.name][eval.select_on] for c in checkpoints]
    curve = [CurvePoint(name=c.name, path=c.path, step=c.step, strict=s["strict"], cft_compat=s["cft_compat"])
             for c, s in zip(checkpoints, scores)]
    best = max(curve, key=lambda point: getattr(point, SELECTION_MODE))
    png = output_dir / "selection_curve.png"
    selected = SelectionResult(select_on=eval.select_on, best=best, curve=curve, curve_png=str(png))
    (output_dir / "selection_curve.json").write_text(selected.model_dump_json(indent=2))
    with png_figure(png, figsize=(6, 3.5)) as (_, ax):
        # Checkpoints without a training step (a base model, folders given by hand) plot in order.
        x = [p.step if p.step is not None else i for i, p in enumerate(curve)]
        for mode in SCORE_MODES:
            ax.plot(x, [getattr(p, mode) for p in curve], marker="o", label=mode)
        ax.set_xlabel("step")
        ax.set_ylabel(f"{eval.select_on} accuracy %")
        ax.set_ylim(0, 100)
        ax.legend()
    return selected
