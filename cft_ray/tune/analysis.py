"""Read a Ray Tune experiment folder and turn it into tables and plots.

Works on a finished, running or partly failed experiment: each trial's own files are read
directly (``params.json``, ``result.json``, ``error.txt``), and the newest
``experiment_state-*.json`` only adds each trial's status when it can be read. A trial with
a half-written last result line keeps its earlier results.

Outputs (under ``<experiment>/analysis`` by default):

- ``trials.{csv,md,json}``: one row per trial: status, method, teacher, data size, the other
  swept fields, every benchmark score, the error's last line.
- ``by_size.{csv,md}`` + ``accuracy_vs_size.png``: the ranking metric against data size, a
  line per method (and teacher): the paper's Figure 1.
- ``benchmarks.{csv,md}`` + ``accuracy_vs_size_by_benchmark.png``: a row per run, a column
  per benchmark and the average: the paper's Tables 5 and 7.
- ``best_trial.json``, ``failed.{md,json}`` (full error text), ``summary.md`` (all tables).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cft_ray.config import SIZE_KEY
from cft_ray.core.benchmarks import BENCHMARKS
from cft_ray.report.markdown import fmt, frame_table
from cft_ray.report.plots import png_figure

log = logging.getLogger(__name__)

METHOD_KEY = "train.method"
TEACHER_KEY = "teacher.model"
BASE_CONFIG_FILE = "sweep_config.yaml"  # the sweep's resolved base config, for unswept axes
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Numbers Tune adds to every result; not metrics of the run.
TUNE_BOOKKEEPING = {
    "timestamp", "training_iteration", "time_this_iter_s", "time_total_s", "pid",
    "time_since_restore", "iterations_since_restore", "done",
}


@dataclass
class Analysis:
    trials: pd.DataFrame
    by_size: pd.DataFrame
    benchmarks: pd.DataFrame
    best: dict[str, Any] | None
    failed: list[dict[str, Any]]
    output_dir: Path
    files: list[Path] = field(default_factory=list)


def _read_result_lines(path: Path) -> list[dict[str, Any]]:
    """result.json is JSON lines; a running trial may have a half-written last line."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s: skipping an unreadable result line (trial still writing?)", path)
    return rows


def _trial_states(experiment_dir: Path) -> dict[str, dict[str, Any]]:
    """Trial dir name -> {status, trial_id, config} from the newest readable experiment state."""
    for path in sorted(experiment_dir.glob("experiment_state-*.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
            states = {}
            for trial_json, _runtime in data["trial_data"]:
                trial = json.loads(trial_json)
                config = trial.get("config")
                states[trial["relative_logdir"]] = {
                    "trial_id": trial["trial_id"],
                    "status": trial["status"],
                    "config": config if isinstance(config, dict) else {},
                }
            return states
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: unreadable experiment state (%s); using the trial folders only", path, exc)
    return {}


def _error_text(trial_dir: Path) -> str | None:
    path = trial_dir / "error.txt"
    return ANSI.sub("", path.read_text()).strip() if path.exists() else None


def _last_line(text: Any) -> str:
    if not isinstance(text, str):  # pandas turns a missing error into NaN
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _size_label(value: Any) -> Any:
    """``data.subset.sizes`` of one trial: [n] -> n; empty / None -> 'all'."""
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else (None if not value else tuple(value))
    return "all" if value is None else value


def _base_axes(experiment_dir: Path) -> dict[str, Any]:
    """The unswept axes' values, from the base config the sweep saved beside its trials."""
    path = experiment_dir / BASE_CONFIG_FILE
    if not path.exists():
        return {}
    base = yaml.safe_load(path.read_text()) or {}
    return {
        METHOD_KEY: base.get("train", {}).get("method"),
        TEACHER_KEY: base.get("teacher", {}).get("model"),
        SIZE_KEY: base.get("data", {}).get("subset", {}).get("sizes"),
    }


def load_trials(experiment_dir: str | Path) -> pd.DataFrame:
    """One row per trial: ``trial_id``, ``status``, ``trial_dir``, ``error`` (full text),
    ``config/<dotted key>`` per swept field, and the last reported value of every metric."""
    experiment_dir = Path(experiment_dir)
    if not experiment_dir.is_dir():
        raise FileNotFoundError(f"no Tune experiment folder at {experiment_dir}")
    states = _trial_states(experiment_dir)
    trial_dirs = {p.parent.name: p.parent for p in experiment_dir.glob("*/params.json")}
    rows = []
    for name in sorted(set(trial_dirs) | set(states)):
        trial_dir = trial_dirs.get(name)
        state = states.get(name, {})
        config = json.loads((trial_dir / "params.json").read_text()) if trial_dir else state["config"]
        results = _read_result_lines(trial_dir / "result.json") if trial_dir else []
        error = _error_text(trial_dir) if trial_dir else None
        last = results[-1] if results else {}
        status = state.get("status") or ("ERROR" if error else "REPORTED" if results else "RUNNING")
        row = {
            "trial_id": state.get("trial_id") or last.get("trial_id") or name,
            "status": status,
            "trial_dir": str(trial_dir or experiment_dir / name),
            "iterations": len(results),
            "error": error,
        }
        row.update({f"config/{k}": v for k, v in config.items()})
        row.update({
            k: v for k, v in last.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in TUNE_BOOKKEEPING
        })
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"{experiment_dir} holds no Tune trials (no */params.json, no experiment state)")
    return pd.DataFrame(rows)


def _axis(trials: pd.DataFrame, key: str, default: Any) -> pd.Series:
    column = f"config/{key}"
    if column in trials:
        return trials[column].map(lambda v: default if v is None or (isinstance(v, float) and math.isnan(v)) else v)
    return pd.Series([default] * len(trials), index=trials.index)


def _table_frame(trials: pd.DataFrame, base: dict[str, Any], metric: str) -> pd.DataFrame:
    """Trials with the three paper axes as plain columns (method, teacher, size)."""
    frame = trials.copy()
    frame["method"] = _axis(trials, METHOD_KEY, base.get(METHOD_KEY) or "-")
    frame["teacher"] = _axis(trials, TEACHER_KEY, base.get(TEACHER_KEY) or "-")
    frame["size"] = _axis(trials, SIZE_KEY, base.get(SIZE_KEY)).map(_size_label)
    frame["error"] = frame["error"].map(_last_line)
    if metric not in frame:
        frame[metric] = float("nan")
    return frame


def _series_label(frame: pd.DataFrame) -> pd.Series:
    if frame["teacher"].nunique() > 1:
        return frame["method"] + " (" + frame["teacher"].astype(str) + ")"
    return frame["method"].astype(str)


def _size_order(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _benchmarks_in(frame: pd.DataFrame) -> list[str]:
    return [name for name in BENCHMARKS if name in frame]


def _best_of_each_run(ok: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """One row per (method, teacher, size): the best trial over any other swept field."""
    ranked = ok.sort_values(metric, ascending=(mode == "min"), na_position="last")
    return ranked.drop_duplicates(["method", "teacher", "size"], keep="first")


def by_size_table(ok: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """Figure 1: rows data size, columns method (teacher), values the metric."""
    runs = _best_of_each_run(ok, metric, mode).assign(series=_series_label)
    table = runs.pivot(index="size", columns="series", values=metric)
    return table.loc[sorted(table.index, key=_size_order)]


def benchmark_table(ok: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """Tables 5/7: a row per run, a column per benchmark, then the average."""
    runs = _best_of_each_run(ok, metric, mode)
    order = sorted(runs.index, key=lambda i: (runs.at[i, "method"], str(runs.at[i, "teacher"]), _size_order(runs.at[i, "size"])))
    columns = dict.fromkeys(["method", "teacher", "size", *_benchmarks_in(runs), metric, "avg", "strict/avg"])
    return runs.loc[order, [c for c in columns if c in runs]].reset_index(drop=True)


def _plot_accuracy_vs_size(ok: pd.DataFrame, metrics: list[str], path: Path) -> Path | None:
    if ok.empty or not metrics:
        return None
    numeric = ok[ok["size"].map(lambda v: isinstance(v, (int, float))).astype(bool)].assign(series=_series_label)
    if numeric.empty:
        return None
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    with png_figure(path, nrows=rows, ncols=cols, figsize=(5 * cols, 3.8 * rows), squeeze=False) as (_, axes):
        for ax, metric in zip(axes.flat, metrics):
            for series, group in numeric.groupby("series"):
                points = group.groupby("size")[metric].max().dropna().sort_index()
                ax.plot(points.index, points.values, marker="o", label=series)
            if numeric["size"].max() > 10 * max(numeric["size"].min(), 1):
                ax.set_xscale("log")
            ax.set(title=metric, xlabel="training examples", ylabel="accuracy")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
    return path


def _write_table(frame: pd.DataFrame, out: Path, stem: str, index: bool = False) -> list[Path]:
    csv, md = out / f"{stem}.csv", out / f"{stem}.md"
    frame.to_csv(csv, index=index)
    md.write_text(frame_table(frame, index=index))
    return [csv, md]


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def analyze(
    experiment_dir: str | Path,
    output_dir: str | Path | None = None,
    metric: str = "avg",
    mode: str = "max",
) -> Analysis:
    """Write the tables and plots for one Tune experiment folder; returns them too."""
    experiment_dir = Path(experiment_dir)
    out = Path(output_dir) if output_dir else experiment_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    trials = load_trials(experiment_dir)
    frame = _table_frame(trials, _base_axes(experiment_dir), metric)
    failed_mask = frame["status"] == "ERROR"
    ok = frame[~failed_mask & frame[metric].notna()]

    swept = [c for c in frame if c.startswith("config/") and c.removeprefix("config/") not in (METHOD_KEY, TEACHER_KEY, SIZE_KEY)]
    benchmarks = _benchmarks_in(frame)
    trial_columns = ["trial_id", "status", "method", "teacher", "size", *swept, metric, *benchmarks,
                     *[c for c in frame if c.startswith(("strict/", "train/"))], "error"]
    trial_table = frame[[c for c in dict.fromkeys(trial_columns) if c in frame]]
    size_table = by_size_table(ok, metric, mode) if not ok.empty else pd.DataFrame()
    bench_table = benchmark_table(ok, metric, mode) if not ok.empty else pd.DataFrame()

    best = None
    if not ok.empty:
        best_row = ok.loc[ok[metric].idxmax() if mode == "max" else ok[metric].idxmin()]
        best = {k: _jsonable(v) for k, v in best_row.items() if k != "error" and not (isinstance(v, float) and math.isnan(v))}
    failed = [
        {"trial_id": row["trial_id"], "trial_dir": row["trial_dir"], "config": {k.removeprefix("config/"): _jsonable(v) for k, v in row.items() if k.startswith("config/")}, "error": full}
        for (_, row), full in zip(frame[failed_mask].iterrows(), trials.loc[failed_mask, "error"])
    ]

    files = _write_table(trial_table, out, "trials")
    (out / "trials.json").write_text(json.dumps(_records(trial_table), indent=2, default=str))
    files.append(out / "trials.json")
    if not size_table.empty:
        files += _write_table(size_table, out, "by_size", index=True)
        files += _write_table(bench_table, out, "benchmarks")
    (out / "best_trial.json").write_text(json.dumps(best, indent=2, default=str))
    (out / "failed.json").write_text(json.dumps(failed, indent=2, default=str))
    (out / "failed.md").write_text(
        "".join(f"## {f['trial_id']}\n\nconfig: `{json.dumps(f['config'], default=str)}`\n\n```\n{f['error']}\n```\n\n" for f in failed)
        or "No failed trials.\n"
    )
    files += [out / "best_trial.json", out / "failed.json", out / "failed.md"]
    for metrics, name in (([metric], "accuracy_vs_size.png"), (benchmarks, "accuracy_vs_size_by_benchmark.png")):
        plot = _plot_accuracy_vs_size(ok, metrics, out / name)
        files += [plot] if plot else []

    counts = frame["status"].value_counts().to_dict()
    summary = [
        f"# Sweep analysis: {experiment_dir.name}\n",
        f"{len(frame)} trials: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) + f". Ranked by `{metric}` ({mode}).\n",
        "## Best trial\n",
        (f"`{best['trial_id']}`: {metric} = {fmt(best[metric])} (method {best['method']}, teacher {best['teacher']}, size {best['size']})\n" if best else "No trial has reported the metric yet.\n"),
        f"## {metric} against data size (Figure 1)\n",
        frame_table(size_table, index=True) if not size_table.empty else "No results yet.\n",
        "## Per benchmark (Tables 5 and 7)\n",
        frame_table(bench_table) if not bench_table.empty else "No results yet.\n",
        "## All trials\n",
        frame_table(trial_table),
        f"## Failed trials ({len(failed)})\n",
        "".join(f"- `{f['trial_id']}`: {_last_line(f['error'])}\n" for f in failed) or "None.\n",
    ]
    (out / "summary.md").write_text("\n".join(summary))
    files.append(out / "summary.md")
    log.info("analysis of %d trials (%d failed) written to %s", len(frame), len(failed), out)
    return Analysis(trial_table, size_table, bench_table, best, failed, out, files)
