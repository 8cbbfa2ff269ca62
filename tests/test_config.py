"""Typed config: every preset loads; bad configs fail at load time naming the field and the fix."""

from __future__ import annotations

import pytest
import yaml

from cft_ray.config import ConfigError, PipelineConfig, list_presets, load_config


@pytest.mark.parametrize("preset", ["smoke", "paper-qwen2.5-math-7b", "paper-qwen2.5-32b-4k"])
def test_preset_loads(preset):
    config = load_config(preset=preset, check_hardware=False)
    assert config.preset == preset
    assert config.train.grad_accum_steps >= 1
    assert len(config.sha256()) == 16


def test_presets_listed():
    assert {"smoke", "paper-qwen2.5-math-7b", "paper-qwen2.5-32b-4k"} <= set(list_presets())


def test_paper_preset_is_the_recipe():
    t = load_config(preset="paper-qwen2.5-math-7b", check_hardware=False).train
    assert (t.learning_rate, t.lr_scheduler, t.warmup_ratio, t.num_epochs) == (5e-6, "cosine", 0.1, 1)
    assert (t.global_batch_size, t.num_workers, t.micro_batch_size) == (512, 8, 8)
    assert (t.zero_stage, t.bf16, t.cutoff_len, t.save_steps, t.seed) == (3, True, 2048, 2, 42)
    assert load_config(preset="paper-qwen2.5-math-7b", check_hardware=False).train.grad_accum_steps == 8


def test_32b_preset_inherits_and_overrides():
    config = load_config(preset="paper-qwen2.5-32b-4k", check_hardware=False)
    assert config.model.name_or_path == "Qwen/Qwen2.5-32B-Instruct"
    assert config.train.learning_rate == 5e-6  # from its base preset
    assert config.train.grad_accum_steps == 64


def test_overrides_and_user_yaml(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"base": "smoke", "name": "mine", "train": {"learning_rate": 0.01}}))
    config = load_config(path=path, overrides=["train.max_steps=3", "eval.limit=4"])
    assert (config.name, config.train.learning_rate, config.train.max_steps, config.eval.limit) == ("mine", 0.01, 3, 4)
    assert config.train.num_workers == 2  # from the smoke base


def test_resolved_config_and_hash_written(tmp_path):
    config = load_config("smoke")
    config.write_resolved(tmp_path)
    again = PipelineConfig.model_validate(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert again.sha256() == config.sha256() == (tmp_path / "config.sha256").read_text().strip()
    assert load_config("smoke", overrides=["train.seed=1"]).sha256() != config.sha256()


BAD_CONFIGS = [
    (["train.learnin_rate=1e-5"], "train.learnin_rate: unknown field; did you mean 'learning_rate'?"),
    (["train.num_workers=two"], "train.num_workers: Input should be a valid integer"),
    (["train.global_batch_size=10"], "not divisible by train.micro_batch_size x train.num_workers = 2 x 2 = 4"),
    (["eval.select_on=aime24"], "eval.select_on='aime24' is not in eval.benchmarks"),
    (["train.zero_stage=1"], "train.zero_stage: Input should be 2 or 3"),
    (["model.tiny.num_attention_heads=8"], "head dim hidden_size/num_attention_heads must be >= 32"),
    (["train.learning_rate=-1"], "train.learning_rate: Input should be greater than 0"),
    (["train"], "must look like section.field=value"),
]


@pytest.mark.parametrize("overrides,message", BAD_CONFIGS)
def test_bad_config_names_field_and_fix(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config("smoke", overrides=overrides)
    assert message in str(info.value)


def test_unknown_preset_suggests_close_name():
    with pytest.raises(ConfigError, match="did you mean 'smoke'"):
        load_config("smoek")


def test_gpu_preset_without_gpu_fails_with_fix(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("cft_ray.config.hardware.local_gpu_count", lambda: 0)
    with pytest.raises(ConfigError, match="asks for GPUs .* --preset smoke"):
        load_config("paper-qwen2.5-math-7b")
    # On a cluster the GPUs live on the workers: the same preset is accepted.
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert load_config("paper-qwen2.5-math-7b").train.use_gpu


def test_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path=path)
