"""Analysis of a real Tune experiment folder, written by a real (tiny) Tuner run in this test.

The trainable computes its scores from its config (no training): accuracy grows with the data
size, CFT above SFT; one method raises, so the folder holds real ``error.txt`` files."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from cft_ray.cli import main
from cft_ray.config import PipelineConfig
from cft_ray.tune.analysis import BASE_CONFIG_FILE, analyze, load_trials

SIZES = [4, 16]
GAIN = {"cft": 2.0, "sft": 1.0}


def expected_scores(size: int, method: str) -> dict[str, float]:
    scores = {"math-500": 0.05 * GAIN[method] * math.log2(size), "gsm8k": 0.04 * GAIN[method] * math.log2(size) + 0.1}
    scores["avg"] = (scores["math-500"] + scores["gsm8k"]) / 2
    scores["strict/avg"] = scores["avg"] - 0.01
    return scores


def scored_trial(config: dict) -> None:
    from ray import tune

    method = config["train.method"]
    if method == "broken":
        raise RuntimeError("this trial fails on purpose")
    tune.report(expected_scores(config["data.subset.sizes"][0], method))


@pytest.fixture(scope="module")
def experiment_dir(ray_cluster, tmp_path_factory) -> Path:
    from ray import tune

    storage = tmp_path_factory.mktemp("tune")
    tuner = tune.Tuner(
        tune.with_resources(scored_trial, {"cpu": 1}),
        param_space={
            "data.subset.sizes": tune.grid_search([[s] for s in SIZES]),
            "train.method": tune.grid_search(["cft", "sft", "broken"]),
        },
        tune_config=tune.TuneConfig(metric="avg", mode="max"),
        run_config=tune.RunConfig(name="scored", storage_path=str(storage), verbose=0),
    )
    results = tuner.fit()
    assert len(results.errors) == 2
    path = storage / "scored"
    # The sweep saves its base config beside the trials: unswept axes (the teacher) come from it.
    (path / BASE_CONFIG_FILE).write_text(yaml.safe_dump(PipelineConfig().model_dump(mode="json")))
    return path


def test_tables_match_the_reported_scores(experiment_dir, tmp_path):
    result = analyze(experiment_dir, tmp_path / "out")
    trials = result.trials
    assert len(trials) == 6
    assert sorted(trials["status"]) == ["ERROR"] * 2 + ["TERMINATED"] * 4
    assert set(trials["teacher"]) == {PipelineConfig().teacher.model}

    # Figure 1 shape: size rows, method columns.
    assert list(result.by_size.index) == SIZES and set(result.by_size.columns) == {"cft", "sft"}
    for size in SIZES:
        for method in GAIN:
            assert result.by_size.loc[size, method] == pytest.approx(expected_scores(size, method)["avg"])

    # Tables 5/7 shape: a row per run, a column per benchmark, then the average.
    bench = result.benchmarks
    assert list(bench.columns) == ["method", "teacher", "size", "math-500", "gsm8k", "avg", "strict/avg"]
    row = bench[(bench["method"] == "sft") & (bench["size"] == 4)].iloc[0]
    assert row["gsm8k"] == pytest.approx(expected_scores(4, "sft")["gsm8k"])

    assert result.best["method"] == "cft" and result.best["size"] == 16
    assert result.best["avg"] == pytest.approx(expected_scores(16, "cft")["avg"])


def test_failed_trials_keep_their_errors(experiment_dir, tmp_path):
    result = analyze(experiment_dir, tmp_path / "out")
    assert len(result.failed) == 2
    assert all(f["config"]["train.method"] == "broken" for f in result.failed)
    assert all("this trial fails on purpose" in f["error"] and "scored_trial" in f["error"] for f in result.failed)
    summary = (result.output_dir / "summary.md").read_text()
    assert "## Failed trials (2)" in summary and "RuntimeError: this trial fails on purpose" in summary
    saved = json.loads((result.output_dir / "failed.json").read_text())
    assert [f["trial_id"] for f in saved] == [f["trial_id"] for f in result.failed]


def test_every_output_is_written(experiment_dir, tmp_path):
    out = analyze(experiment_dir, tmp_path / "out").output_dir
    for name in ["trials.csv", "trials.md", "trials.json", "by_size.csv", "by_size.md", "benchmarks.csv",
                 "benchmarks.md", "best_trial.json", "failed.json", "failed.md", "summary.md"]:
        assert (out / name).stat().st_size > 0, name
    for png in ["accuracy_vs_size.png", "accuracy_vs_size_by_benchmark.png"]:
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
    assert len(json.loads((out / "trials.json").read_text())) == 6


def test_partial_experiment_is_read(experiment_dir, tmp_path):
    """A running sweep: no experiment state yet, a trial mid-write, a trial not reported yet."""
    partial = tmp_path / "partial"
    shutil.copytree(experiment_dir, partial)
    for state in partial.glob("experiment_state-*.json"):
        state.unlink()
    ok_dirs = sorted(p.parent for p in partial.glob("*/result.json") if not (p.parent / "error.txt").exists())
    with (ok_dirs[0] / "result.json").open("a") as f:
        f.write('{"avg": 0.9, "math-5')  # half-written line of a trial still running
    (ok_dirs[1] / "result.json").unlink()  # started, nothing reported yet

    trials = load_trials(partial)
    statuses = dict(zip(trials["trial_dir"].map(lambda p: Path(p).name), trials["status"]))
    assert statuses[ok_dirs[1].name] == "RUNNING"
    assert statuses[ok_dirs[0].name] == "REPORTED"
    assert sorted(statuses.values()).count("ERROR") == 2

    result = analyze(partial)
    assert result.output_dir == partial / "analysis"
    assert len(result.failed) == 2
    assert result.by_size.notna().sum().sum() == 3  # the half-written line is skipped, not read as 0.9


def test_experiment_with_no_results_yet(experiment_dir, tmp_path):
    started = tmp_path / "started"
    shutil.copytree(experiment_dir, started)
    for path in [*started.glob("*/result.json"), *started.glob("*/error.txt"), *started.glob("experiment_state-*.json")]:
        path.unlink()
    result = analyze(started)
    assert set(result.trials["status"]) == {"RUNNING"} and result.best is None
    assert "No trial has reported the metric yet." in (result.output_dir / "summary.md").read_text()
    assert not (result.output_dir / "accuracy_vs_size.png").exists()


def test_cli_analyze(experiment_dir, tmp_path, capsys):
    assert main(["analyze", str(experiment_dir), "--out", str(tmp_path / "cli")]) == 0
    assert "Per benchmark (Tables 5 and 7)" in capsys.readouterr().out
    assert (tmp_path / "cli" / "by_size.csv").exists()
    assert main(["analyze", str(tmp_path / "nowhere")]) == 2
