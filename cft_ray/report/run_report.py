"""The run report: one Markdown file plus PNGs, from the stage results of a pipeline run.

Sections: stages (ran / skipped, seconds), the training sets' cards, the teacher's cost, the
loss curve, the selection benchmark by step, and the final table in the layout of the paper's
Table 2 (strict and cft_compat scores; the paper's own row beside ours when the preset
reproduces a paper run). It reads the stages' JSON results only, so it imports no stage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from cft_ray.config import PipelineConfig
from cft_ray.core.scores import table_columns
from cft_ray.report.markdown import markdown_table

# Reference section 8: Qwen2.5-Math-7B, six-benchmark table of the paper.
PAPER_TABLE2: dict[str, dict[str, float]] = {
    "base": {"math": 55.4, "minerva_math": 13.6, "gsm8k": 91.6, "olympiadbench": 16.1, "aime24": 10.0, "amc23": 40.0, "AVG": 37.8},
    "WebInstruct-SFT": {"math": 59.0, "minerva_math": 13.2, "gsm8k": 77.4, "olympiadbench": 19.9, "aime24": 3.3, "amc23": 37.5, "AVG": 35.1},
    "WebInstruct-verified-SFT": {"math": 62.0, "minerva_math": 12.5, "gsm8k": 78.8, "olympiadbench": 22.1, "aime24": 16.7, "amc23": 50.0, "AVG": 40.4},
    "WebInstruct-GPT4o-SFT": {"math": 73.2, "minerva_math": 25.7, "gsm8k": 90.0, "olympiadbench": 37.6, "aime24": 13.3, "amc23": 62.5, "AVG": 50.4},
    "WebInstruct-CFT (50K)": {"math": 80.2, "minerva_math": 42.3, "gsm8k": 90.9, "olympiadbench": 41.6, "aime24": 20.0, "amc23": 67.5, "AVG": 57.1},
}
# Which published row a preset reproduces, keyed by (preset, train.method).
PAPER_ROW = {
    ("paper-qwen2.5-math-7b", "cft"): "WebInstruct-CFT (50K)",
    ("paper-qwen2.5-math-7b", "sft"): "WebInstruct-SFT",
    ("paper-qwen2.5-math-7b", "sft-verified"): "WebInstruct-verified-SFT",
    ("paper-qwen2.5-math-7b", "sft-teacher"): "WebInstruct-GPT4o-SFT",
}


def _copy_into(src: str | Path | None, out_dir: Path) -> str | None:
    """Copy a PNG next to the report so the report folder is self-contained."""
    if not src or not Path(src).exists():
        return None
    target = out_dir / Path(src).name
    if Path(src).resolve() != target.resolve():
        shutil.copyfile(src, target)
    return target.name


def _stages_section(timings: dict[str, dict[str, Any]]) -> list[str]:
    rows = [[stage, "skipped (done before)" if t["skipped"] else "ran", t["seconds"], f"`{t['key']}`"]
            for stage, t in timings.items()]
    return ["## Stages", "", *markdown_table(["stage", "this run", "seconds", "key"], rows), ""]


def _data_section(config: PipelineConfig, data: dict[str, Any]) -> list[str]:
    steps = [[step, json.dumps(counts, default=str)] for step, counts in data.get("steps", {}).items()
             if step != "critique"]
    sets = []
    for name, folder in sorted(data.get("datasets", {}).items()):
        card_path = Path(folder) / "card.json"
        if card_path.exists():
            card = json.loads(card_path.read_text())
            out = card.get("tokens", {}).get("output") or {}
            sets.append([name, card["rows"], card["verdicts"], card["right_ratio"],
                         f"{out.get('p50', '-')} / {out.get('p90', '-')} / {out.get('max', '-')}"])
    header = ["training set", "rows", "verdicts", "right ratio", "output tokens p50 / p90 / max"]
    return ["## Data", "", *markdown_table(["step", "counts"], steps), "", *markdown_table(header, sets), ""]


def _teacher_section(config: PipelineConfig, data: dict[str, Any]) -> list[str]:
    critique = data.get("steps", {}).get("critique", {})
    lines = ["## Teacher", "", f"Model `{config.teacher.model}` at "
             f"{config.teacher.base_url or 'the built-in offline teacher (loopback)'}.", ""]
    calls = [[label, *(critique[call].get(k, "-") for k in ("ok", "error", "cached", "prompt_tokens",
                                                             "completion_tokens", "dollars"))]
             for call, label in (("teacher", "critiques"), ("teacher_answers", "SFT-teacher answers"))
             if call in critique]
    lines += markdown_table(["call", "ok", "error", "cached", "prompt tokens", "completion tokens", "dollars"], calls)
    if critique.get("given_critiques"):
        lines.append(f"\n{critique['given_critiques']} rows came with their critiques (released data): no teacher call.")
    if critique.get("verdicts"):
        lines.append(f"\nVerdicts of the critiqued rows: {critique['verdicts']}.")
    return lines + [""]


def _train_section(train: dict[str, Any], out_dir: Path) -> list[str]:
    lines = ["## Training", "", f"{train['total_steps']} optimizer steps; data: {json.dumps(train.get('data', {}))}.", ""]
    metrics_path = Path(train["metrics_path"])
    if metrics_path.exists():
        records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
        if records:
            first, last = records[0], records[-1]
            lines.append(f"Loss {first['loss']:.4f} at step {first['step']} -> {last['loss']:.4f} at step {last['step']}.")
    png = _copy_into(train.get("loss_curve_png"), out_dir)
    if png:
        lines += ["", f"![loss curve]({png})"]
    lines.append("\nCheckpoints: " + ", ".join(c["name"] for c in train["checkpoints"]))
    return lines + [""]


def _selection_section(config: PipelineConfig, select: dict[str, Any], out_dir: Path) -> list[str]:
    rows = [[point["name"], point["strict"], point["cft_compat"]] for point in select["curve"]]
    lines = [f"## Checkpoint selection on {config.eval.select_on}", "",
             *markdown_table(["checkpoint", f"{config.eval.select_on} (strict)", "(cft_compat)"], rows)]
    lines.append(f"\nBest: **{select['best']['name']}**.")
    png = _copy_into(select.get("curve_png"), out_dir)
    if png:
        lines += ["", f"![{config.eval.select_on} by step]({png})"]
    return lines + [""]


def _final_section(config: PipelineConfig, evaluation: dict[str, Any], out_dir: Path) -> list[str]:
    scores = evaluation["selected_scores"]  # mode -> benchmark (and AVG over the six) -> accuracy x100
    columns = table_columns(config.eval.benchmarks)
    rows = {"ours, strict": scores["strict"], "ours, cft_compat": scores["cft_compat"]}
    paper_row = PAPER_ROW.get((config.preset, config.train.method))
    if paper_row:
        rows[f"paper: {paper_row}"] = PAPER_TABLE2[paper_row]
    lines = ["## Final evaluation", "", f"Selected checkpoint `{evaluation['checkpoint']}`; accuracy x100. "
             "`strict` compares answers exactly (1e-4 relative tolerance); `cft_compat` adds the CFT "
             "fork's 1-decimal rounding leniency, the mode the paper's numbers used.", ""]
    lines += markdown_table(["run", *columns], [[name, *(row.get(b, "-") for b in columns)] for name, row in rows.items()])
    png = _copy_into(evaluation["files"].get("png"), out_dir)
    if png:
        lines += ["", f"![final scores]({png})"]
    return lines + [""]


def write_report(config: PipelineConfig, results: dict[str, Any], timings: dict[str, dict[str, Any]], out_dir: str | Path) -> Path:
    """Write ``report.md`` (and copies of the plots) into ``out_dir``; returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# cft-ray run `{config.name}`", "",
             f"Preset `{config.preset}`, model `{config.model.name_or_path}`, method `{config.train.method}`, "
             f"config sha256 `{config.sha256()}`.", ""]
    lines += _stages_section(timings)
    if "data" in results:
        lines += _data_section(config, results["data"]) + _teacher_section(config, results["data"])
    if "train" in results:
        lines += _train_section(results["train"], out_dir)
    if "select" in results:
        lines += _selection_section(config, results["select"], out_dir)
    if "evaluate" in results:
        lines += _final_section(config, results["evaluate"], out_dir)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
