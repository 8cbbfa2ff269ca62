"""Score checkpoints on benchmarks with the shared vLLM actor pool, grade, and tabulate.

One Ray Data pipeline per checkpoint covers every selected benchmark, so each engine loads a
checkpoint once. Graded rows are written as they stream out (one Parquet part per batch under
``samples/<checkpoint>/``): after a crash, finished samples are read back and not regenerated.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cft_ray.eval.benchmarks import LETTERS, EvalSample, get_benchmark
from cft_ray.eval.config import SIX_BENCHMARKS, EvalConfig
from cft_ray.eval.grader import Grader
from cft_ray.eval.prompts import STOP_WORDS, render
from cft_ray.eval.selfcritique import TwoStageGenerator
from cft_ray.models.generation import EngineSpec, Sampling, generate

log = logging.getLogger(__name__)

# Table 2 column order and labels; other benchmarks follow AVG.
LABELS = {"math": "MATH", "minerva_math": "Minerva", "gsm8k": "GSM8K", "olympiadbench": "OlympiadB",
          "aime24": "AIME24", "amc23": "AMC23"}
SCORE_COLUMNS = {"cft-compat": "correct_cft_compat", "strict": "correct_strict"}


@dataclass
class EvalResult:
    scores: dict[str, dict[str, dict]]  # checkpoint -> benchmark -> {strict, cft-compat, n, timed_out}
    output_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    def to_json(self) -> dict:
        """JSON-able: every checkpoint's scores, and by mode for the first (the selected) one."""
        first = next(iter(self.scores), None)
        by_mode = {m: {b: v[m] for b, v in self.scores[first].items()} for m in SCORE_COLUMNS} if first else {}
        return {"checkpoint": first, "scores": by_mode, "scores_by_checkpoint": self.scores,
                "table_png": str(self.files.get("png", "")), **{k: str(v) for k, v in self.files.items()}}


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
    name: str, model_path: str, samples: list[EvalSample], config: EvalConfig, output_dir: Path, grader: Grader
) -> Path:
    """Generate and grade every not-yet-finished sample for one checkpoint; return its folder."""
    import ray

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
    engine = EngineSpec(
        model=str(model_path), use_gpu=config.use_gpu, tensor_parallel_size=config.tensor_parallel_size,
        num_engines=config.num_engines, seed=config.seed,
        max_model_len=config.max_model_len,
    )
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
            "correct_strict": [g.correct["strict"] for g in grades],
            "correct_cft_compat": [g.correct["cft-compat"] for g in grades],
            "timed_out": [g.timed_out for g in grades],
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
            **{mode: round(100 * float(group[col].mean()), 1) for mode, col in SCORE_COLUMNS.items()},
            "n": int(len(group)),
            "timed_out": int(group["timed_out"].sum()),
        }
    six = [scores[b] for b in SIX_BENCHMARKS if b in scores]
    if six:  # the paper's AVG: plain mean of the six math benchmarks (of those scored)
        scores["AVG"] = {mode: round(sum(s[mode] for s in six) / len(six), 1) for mode in SCORE_COLUMNS}
        scores["AVG"]["n_benchmarks"] = len(six)
    return scores


def evaluate(
    checkpoints: list[tuple[str, str | Path]], config: EvalConfig, output_dir: str | Path, tables: str = "summary"
) -> EvalResult:
    """Score each (name, model folder) on ``config.benchmarks``; write samples under
    ``output_dir/samples`` and the tables as ``{tables}.json/.md/.png``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    samples = load_samples(config)
    scores = {}
    with Grader(timeout_s=config.grade_timeout_s, num_workers=config.grade_workers) as grader:
        for name, path in checkpoints:
            folder = score_checkpoint(name, str(path), samples, config, output_dir, grader)
            scores[name] = summarize(folder, samples)
            log.info("checkpoint %s: %s", name, json.dumps(scores[name]))
        timeouts = grader.timeouts
    files = write_tables(scores, config.benchmarks, output_dir / tables)
    log.info("evaluation done: %d checkpoints, %d grading timeouts; %s", len(checkpoints), timeouts, files["markdown"])
    return EvalResult(scores, output_dir, files)


def table_columns(benchmarks: list[str]) -> list[str]:
    """Columns of a score table in the paper's Table 2 order: the six, AVG, then the rest."""
    six = [b for b in SIX_BENCHMARKS if b in benchmarks]
    return [*six, *(["AVG"] if six else []), *[b for b in benchmarks if b not in SIX_BENCHMARKS]]


def write_tables(scores: dict[str, dict], benchmarks: list[str], stem: Path) -> dict[str, Path]:
    """``stem``.json, .md (Table 2 layout, one table per mode) and .png (grouped bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = table_columns(benchmarks)
    paths = {key: stem.with_suffix(suffix) for key, suffix in (("json", ".json"), ("markdown", ".md"), ("png", ".png"))}
    paths["json"].write_text(json.dumps({"columns": columns, "scores": scores}, indent=2))
    lines = []
    for mode in SCORE_COLUMNS:
        header = [LABELS.get(c, c) for c in columns]
        lines += [f"### Accuracy ({mode})", "", "| checkpoint | " + " | ".join(header) + " |",
                  "|---|" + "---|" * len(header)]
        for name, per_bench in scores.items():
            cells = [f"{per_bench[c][mode]:.1f}" if c in per_bench else "-" for c in columns]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    paths["markdown"].write_text("\n".join(lines))

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(columns) * max(1, len(scores)) ** 0.5), 4))
    width = 0.8 / max(1, len(scores))
    for k, (name, per_bench) in enumerate(scores.items()):
        values = [per_bench.get(c, {}).get("cft-compat", 0.0) for c in columns]
        ax.bar([i + k * width for i in range(len(columns))], values, width, label=name)
    ax.set_xticks([i + width * (len(scores) - 1) / 2 for i in range(len(columns))], [LABELS.get(c, c) for c in columns])
    ax.set_ylabel("accuracy % (cft-compat)")
    ax.set_ylim(0, 100)  # a fixed scale, so runs compare at a glance and all-zero scores still plot
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=120)
    plt.close(fig)
    return paths


def select_checkpoint(
    checkpoints: list[tuple[str, str | Path]], config: EvalConfig, output_dir: str | Path
) -> tuple[str, list[dict]]:
    """The paper's protocol: score every checkpoint on ``select_on``, keep the best (ties: the
    earliest), write the curve (JSON + PNG). Run :func:`evaluate` on the winner for the full suite;
    with the same ``output_dir`` it reuses the ``select_on`` samples scored here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    selection = config.model_copy(update={"benchmarks": [config.select_on]})
    result = evaluate(checkpoints, selection, output_dir, tables="selection")
    curve = [
        {"name": name, "path": str(path), "step": _step(name),
         **{col.removeprefix("correct_"): result.scores[name][config.select_on][m] for m, col in SCORE_COLUMNS.items()}}
        for name, path in checkpoints
    ]
    best = max(curve, key=lambda point: point["cft_compat"])["name"]
    (output_dir / "selection_curve.json").write_text(json.dumps({"select_on": config.select_on, "best": best,
                                                                  "curve": curve}, indent=2))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for mode, col in SCORE_COLUMNS.items():
        ax.plot([p["step"] for p in curve], [p[col.removeprefix("correct_")] for p in curve], marker="o", label=mode)
    ax.set_xlabel("step")
    ax.set_ylabel(f"{config.select_on} accuracy %")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()
    fig.savefig(output_dir / "selection_curve.png", dpi=120)
    plt.close(fig)
    return best, curve


def _step(name: str) -> int:
    """``checkpoint-40`` -> 40; -1 for names without a trailing number."""
    digits = "".join(ch for ch in name.rsplit("-", 1)[-1] if ch.isdigit())
    return int(digits) if digits else -1
