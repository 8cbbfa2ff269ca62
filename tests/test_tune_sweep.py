"""The sweep's grid handling (fast), and a real two-trial sweep end to end on CPU (slow)."""

from __future__ import annotations

import pytest

from cft_ray.cli import main
from cft_ray.config import ConfigError, TuneConfig, apply_overrides, load_config
from cft_ray.tune.sweep import data_key, grid, trial_metrics


def test_data_sizes_are_normalised_to_one_nested_subset():
    space = TuneConfig(param_space={"data.subset.sizes": [16, None, [32]]}).param_space
    assert space["data.subset.sizes"] == [[16], [], [32]]
    with pytest.raises(ValueError, match="each value is one size"):
        TuneConfig(param_space={"data.subset.sizes": [[16, 32]]})
    with pytest.raises(ValueError, match="is empty"):
        TuneConfig(param_space={"train.method": []})


def test_grid_is_the_full_product():
    points = grid({"train.method": ["cft", "sft"], "data.subset.sizes": [[16], [32], [64]]})
    assert len(points) == 6
    assert {(p["train.method"], p["data.subset.sizes"][0]) for p in points} == {
        (m, s) for m in ("cft", "sft") for s in (16, 32, 64)
    }


def test_data_is_shared_unless_a_point_changes_what_the_data_stage_writes():
    base = {"train.method": "cft", "data.subset.sizes": [16], "train.learning_rate": 1e-5}
    same = [{**base, "train.method": "sft"}, {**base, "data.subset.sizes": [64]}, {**base, "train.learning_rate": 2e-5}]
    config = load_config(preset="smoke")
    assert {data_key(config, p) for p in [base, *same]} == {data_key(config, base)}
    assert data_key(config, {**base, "teacher.model": "gpt-4o-mini"}) != data_key(config, base)
    assert data_key(config, {**base, "data.decontaminate.ngram": 8}) != data_key(config, base)


def test_a_sweep_over_eval_benchmarks_decontaminates_per_list():
    config = load_config(preset="smoke")
    math500 = {"eval.benchmarks": ["synthetic-arith", "math-500"]}
    assert data_key(config, math500) != data_key(config, {"eval.benchmarks": ["synthetic-arith"]})
    # Only what decontamination reads splits the build: the eval sample limit does not.
    assert data_key(config, {"eval.limit": 3}) == data_key(config, {"eval.limit": 5})


def test_apply_overrides_validates_each_point():
    config = load_config(preset="smoke")
    point = apply_overrides(config, {"train.method": "sft", "data.subset.sizes": [16], "train.learning_rate": 2e-5})
    assert (point.train.method, point.data.subset.sizes, point.train.learning_rate) == ("sft", [16], 2e-5)
    assert config.train.method == "cft"  # the base is untouched
    with pytest.raises(ConfigError, match="train.method"):
        apply_overrides(config, {"train.method": "dpo"})
    with pytest.raises(ConfigError, match="not a config section"):
        apply_overrides(config, {"train.learning_rate.peak": 1.0})


def test_cli_refuses_a_bad_sweep_before_starting_anything(capsys):
    assert main(["sweep", "--preset", "smoke"]) == 2
    assert "tune.param_space is empty" in capsys.readouterr().err
    assert main(["sweep", "--preset", "smoke", "--grid", "train.method=[cft,dpo]"]) == 2
    assert "sweep point {'train.method': 'dpo'}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", "--grid", "train.method=cft"])


def test_size_sweep_needs_a_subset_strategy(capsys):
    args = ["sweep", "--preset", "smoke", "--grid", "data.subset.sizes=[16,32]"]
    assert main(args) == 2
    assert "data.subset.strategy" in capsys.readouterr().err


def test_trial_metrics_flatten_both_grading_modes():
    six = {"gsm8k": {"strict": 50.0, "cft_compat": 52.0, "n": 8, "timed_out": 0},
           "AVG": {"strict": 40.0, "cft_compat": 41.0, "n_benchmarks": 6}}
    assert trial_metrics(six) == {"gsm8k": 52.0, "strict/gsm8k": 50.0, "avg": 41.0, "strict/avg": 40.0}
    two = {"math-500": {"strict": 30.0, "cft_compat": 31.0, "n": 8, "timed_out": 0},
           "gpqa": {"strict": 20.0, "cft_compat": 20.0, "n": 8, "timed_out": 1}}
    metrics = trial_metrics(two)
    assert (metrics["avg"], metrics["strict/avg"]) == (25.5, 25.0)  # no AVG from eval: the plain mean
    assert metrics["strict/gpqa"] == 20.0


def test_a_resumed_sweep_must_keep_its_base_config(tmp_path):
    from cft_ray.tune.sweep import _save_base_config

    experiment = str(tmp_path / "exp")
    config = load_config(preset="smoke")
    _save_base_config(experiment, config, resuming=False)
    _save_base_config(experiment, config, resuming=True)  # same config: fine
    changed = load_config(preset="smoke", overrides=["train.learning_rate=0.5"])
    with pytest.raises(ConfigError, match="started with another config"):
        _save_base_config(experiment, changed, resuming=True)
    assert load_config(path=tmp_path / "exp" / "sweep_config.yaml").sha256() == config.sha256()


@pytest.mark.slow
@pytest.mark.timeout(2400)  # data build + 2 x (DeepSpeed train, vLLM select, vLLM eval) on 2 cores
def test_two_trial_sweep_end_to_end_then_analysis(ray_cluster, tmp_path):
    """A data-size sweep on CPU: the data built once, two trials that train (DeepSpeed on Ray
    Train), select and evaluate (vLLM) for real, then the analysis of the experiment folder."""
    from cft_ray.tune.analysis import analyze
    from cft_ray.tune.sweep import sweep

    config = load_config(preset="smoke", overrides=[
        f"output_dir={tmp_path}", "name=e2e", "data.subset.strategy=random",
        "train.max_steps=2", "train.save_steps=2", "eval.limit=8", "eval.max_tokens=24",
        "tune.param_space={data.subset.sizes: [16, 32]}",
    ])
    result = sweep(config)
    assert (result.num_trials, result.num_errors) == (2, 0)
    assert len(list((tmp_path / "e2e" / "sweep-data").glob("*/summary.json"))) == 1  # data built once

    analysis = analyze(result.experiment_dir)
    trials = analysis.trials.set_index("size")
    assert sorted(trials.index) == [16, 32]
    assert trials.loc[16, "train/rows"] == 16 and trials.loc[32, "train/rows"] == 32  # each its own subset
    for column in ("synthetic-arith", "strict/synthetic-arith", "avg"):
        assert column in analysis.trials
    scores = analysis.benchmarks["synthetic-arith"]
    assert scores.notna().all() and scores.between(0, 100).all()
    assert list(analysis.by_size.index) == [16, 32] and (analysis.output_dir / "accuracy_vs_size.png").exists()
    assert result.best_metrics["avg"] == max(analysis.by_size["cft"])
