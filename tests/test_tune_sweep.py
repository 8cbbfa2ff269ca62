"""The sweep's grid handling (fast), and a real two-trial sweep end to end on CPU (slow)."""

from __future__ import annotations

import pytest

from cft_ray.cli import main
from cft_ray.config import ConfigError, load_config
from cft_ray.tune.config import TuneConfig
from cft_ray.tune.sweep import apply_overrides, data_key, grid


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
    assert {data_key(p) for p in [base, *same]} == {data_key(base)}
    assert data_key({**base, "teacher.model": "gpt-4o-mini"}) != data_key(base)
    assert data_key({**base, "data.decontaminate.ngram": 8}) != data_key(base)


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


@pytest.mark.slow
def test_two_trial_sweep_end_to_end_then_analysis(ray_cluster, tmp_path):
    """A data-size sweep on CPU: data built once, two trials train (DeepSpeed), select and
    evaluate (vLLM) for real, then the analysis reads the experiment folder."""
    from cft_ray.tune.analysis import analyze
    from cft_ray.tune.sweep import sweep

    config = load_config(preset="smoke", overrides=[
        f"output_dir={tmp_path}", "name=sweep-e2e",
        "data.subset.strategy=random", "train.max_steps=2", "train.save_steps=2",
        "eval.limit=8", "eval.max_tokens=24",
        "tune.param_space={data.subset.sizes: [16, 32]}",
    ])
    result = sweep(config)
    assert (result.num_trials, result.num_errors) == (2, 0)
    builds = list((tmp_path / "sweep-e2e" / "sweep-data").glob("*/summary.json"))
    assert len(builds) == 1  # the data stage ran once for both trials

    analysis = analyze(result.experiment_dir)
    assert sorted(analysis.by_size.index) == [16, 32]
    scores = analysis.benchmarks["synthetic-arith"]
    assert scores.notna().all() and ((0 <= scores) & (scores <= 100)).all()
    trained_on = {size: json for size, json in zip(analysis.trials["size"], analysis.trials["trial_id"])}
    assert len(trained_on) == 2
    for trial_dir in (tmp_path / "sweep-e2e" / "sweep-trials" / "sweep-e2e-sweep").iterdir():
        assert (trial_dir / "config.yaml").exists()
    assert result.best_config["data.subset.sizes"][0] in (16, 32)
