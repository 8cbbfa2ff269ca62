"""Real DeepSpeed on real Ray Train (2 CPU workers, tiny model): ZeRO-3 overfit + checkpoint that
transformers and vLLM both load; ZeRO-2 with a worker SIGKILLed mid-run, resumed and finished."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from cft_ray.config import load_config
from cft_ray.train import train
from cft_ray.train.dataset import plan_steps, read_rows, tokenize_rows
from cft_ray.train.trainer import KILL_ENV

from test_train_data import _write, cft_rows

pytestmark = pytest.mark.slow

PROMPT = "<|im_start|>user\nQuestion:\nAda has 12 apples."

VLLM_SCRIPT = """
import json, sys
from vllm import LLM, SamplingParams
if __name__ == "__main__":
    llm = LLM(model=sys.argv[1], dtype="float32", max_model_len=512, seed=0, enforce_eager=True)
    out = llm.generate([sys.argv[2]], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))
    print("TOKENS" + json.dumps(list(out[0].outputs[0].token_ids)))
"""


def _config(**train):
    return load_config("smoke", overrides=[f"train.{k}={v}" for k, v in train.items()])


def test_zero3_overfits_and_checkpoint_loads_in_transformers_and_vllm(ray_cluster, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = _write(cft_rows(24), tmp_path / "data.parquet")
    config = _config(zero_stage=3, max_steps=10, save_steps=4, global_batch_size=8, micro_batch_size=1,
                     learning_rate=3e-3, warmup_ratio=0.1, gradient_checkpointing=True)
    result = train(tmp_path / "out", dataset=data, model=config.model, train=config.train, ray=config.ray)

    assert [c.step for c in result.checkpoints] == [4, 8, 10] and result.total_steps == 10
    records = [json.loads(line) for line in Path(result.metrics_path).read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 11))
    assert records[-1]["loss"] < 0.75 * records[0]["loss"]  # 24 rows seen 3+ times: it memorises
    assert all(r["tokens_per_s"] > 0 and 0 <= r["padding_fraction"] < 1 for r in records)
    assert [(r["micro_batches"], r["loss_tokens"]) for r in records] == _read_per_step(config, data)
    assert Path(result.loss_curve_png).stat().st_size > 0
    final = result.final_checkpoint
    assert final.name == "checkpoint-10" and json.loads((final / "trainer_state.json").read_text())["step"] == 10
    # Resume state stays in the two newest checkpoints only (see cft_ray.train.checkpoint).
    assert [(Path(c.path) / "deepspeed").is_dir() for c in result.checkpoints] == [False, True, True]

    tokenizer = AutoTokenizer.from_pretrained(final)
    model = AutoModelForCausalLM.from_pretrained(final).eval()
    ids = tokenizer(PROMPT, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        hf = model.generate(ids, max_new_tokens=12, min_new_tokens=12, do_sample=False)[0, ids.shape[1]:].tolist()
    base = AutoModelForCausalLM.from_pretrained(_base(config)).eval()
    assert not torch.equal(base.model.embed_tokens.weight, model.model.embed_tokens.weight)  # weights were trained

    run = subprocess.run([sys.executable, "-c", VLLM_SCRIPT, str(final), PROMPT], capture_output=True, text=True,
                         timeout=600)
    line = [x for x in run.stdout.splitlines() if x.startswith("TOKENS")]
    assert line, run.stderr[-3000:]
    assert json.loads(line[0].removeprefix("TOKENS")) == hf


def _base(config) -> str:
    from cft_ray.models.tiny import resolve_model

    return resolve_model(config.model)


def _read_per_step(config, data) -> list[tuple[int, int]]:
    """What the workers must read from their Ray Dataset shards at each step, all ranks together:
    (micro batches, loss tokens), from the plan recomputed here."""
    from transformers import AutoTokenizer

    t = config.train
    samples, _ = tokenize_rows(read_rows(data), AutoTokenizer.from_pretrained(_base(config)), t.system_prompt,
                               t.cutoff_len)
    plan = plan_steps(samples.lengths(), global_batch_size=t.global_batch_size, num_workers=t.num_workers,
                      micro_batch_size=t.micro_batch_size, num_epochs=t.num_epochs, max_steps=t.max_steps,
                      packing=t.packing, cutoff_len=t.cutoff_len, seed=t.seed)
    return [(sum(len(mbs) for mbs in step),
             sum(samples.num_loss_tokens(s) for mbs in step for mb in mbs for seq in mb for s in seq))
            for step in plan]


def test_zero2_worker_killed_mid_run_resumes_and_finishes(ray_cluster, tmp_path, monkeypatch):
    from transformers import get_cosine_schedule_with_warmup
    import torch

    data = _write(cft_rows(16, seed=1), tmp_path / "data.parquet")
    config = _config(zero_stage=2, max_steps=6, save_steps=2, global_batch_size=4, micro_batch_size=1,
                     learning_rate=1e-3, warmup_ratio=0.2, max_failures=1)
    monkeypatch.setenv(KILL_ENV, "3")
    out = tmp_path / "out"
    result = train(out, dataset=data, model=config.model, train=config.train, ray=config.ray)

    assert (out / ".killed-at-step-3").exists()  # the SIGKILL really happened
    assert [c.step for c in result.checkpoints] == [2, 4, 6]
    assert json.loads((result.final_checkpoint / "trainer_state.json").read_text())["step"] == 6
    records = [json.loads(line) for line in Path(result.metrics_path).read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    # Before and after the restart, every step trained on exactly its planned micro batches, read
    # from the workers' Ray Dataset shards (the restarted workers skipped the steps already done).
    assert [(r["micro_batches"], r["loss_tokens"]) for r in records] == _read_per_step(config, data)
    # The scheduler was restored with the optimizer: every step used the planned learning rate.
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = get_cosine_schedule_with_warmup(opt, math.ceil(0.2 * 6), 6)
    expected = []
    for _ in range(6):
        expected.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert [r["lr"] for r in records] == pytest.approx(expected)

    # Running a finished run again does nothing (no worker, no new metrics).
    before = Path(result.metrics_path).read_text()
    again = train(out, dataset=data, model=config.model, train=config.train, ray=config.ray)
    assert again.checkpoints == result.checkpoints and Path(result.metrics_path).read_text() == before
