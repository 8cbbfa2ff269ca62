"""The Ray Train worker loop: DeepSpeed ZeRO-2/3, one optimizer step per planned global batch.

Data: the driver tokenises and plans every step (see :mod:`cft_ray.train.dataset`) and gives
each rank its own Ray Dataset, ``rank<r>``: one row per (step, micro batch) of that rank, in plan
order, holding the collated micro batch and the token counts of the step's whole global batch.
The datasets are not split (``DataConfig(datasets_to_split=[])``): each worker reads its own
dataset in order and groups the rows by step, so one optimizer step consumes exactly its planned
micro batches. We do not ``streaming_split`` one dataset because its split is decided at run
time: resuming needs the exact data position (a restarted worker skips the rows of the steps
already done), ZeRO needs the same number of forward passes on every rank (the plan pads short
ranks), and the loss of a step is normalised by the loss-token count of the whole global batch,
which each row carries, so it is known before the step's first forward.

Loss: the sum of token losses over the global batch divided by its number of loss tokens,
whatever the packing and however the samples fall on ranks and micro batches, so a packed run
and an unpacked run learn the same thing.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from cft_ray.config import TrainConfig

log = logging.getLogger("cft_ray.train")

KILL_ENV = "CFT_RAY_TEST_KILL_AT_STEP"  # test hook: rank 1 SIGKILLs itself after this step, once


@dataclass(frozen=True)
class WorkerPlan:
    """What every worker is given (Ray Train pickles it into each worker process)."""

    train: TrainConfig
    model_path: str
    attn_implementation: str
    total_steps: int
    mean_sample_len: float  # tokens, for the attention term of the MFU
    output_dir: str  # metrics.jsonl and the kill hook's marker
    run_dir: str  # Ray Train's run folder, where older checkpoints' resume state is dropped
    kill_at_step: int | None = None


def deepspeed_config(t: TrainConfig, world_size: int, bf16: bool) -> dict:
    return {
        "train_micro_batch_size_per_gpu": t.micro_batch_size,
        "gradient_accumulation_steps": t.grad_accum_steps,
        "train_batch_size": t.micro_batch_size * t.grad_accum_steps * world_size,
        # Packing makes the number of micro batches per step vary: we own the boundary (step()).
        "managed_gradient_accumulation": False,
        "gradient_clipping": t.max_grad_norm,
        "zero_optimization": {"stage": t.zero_stage, "stage3_gather_16bit_weights_on_model_save": True},
        "bf16": {"enabled": bf16},
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": t.learning_rate, "betas": [0.9, 0.999], "eps": 1e-8,
                       "weight_decay": t.weight_decay, "torch_adam": True},
        },
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def make_scheduler(name: str, warmup_ratio: float, total_steps: int):
    """A callable DeepSpeed gives the optimizer to; DeepSpeed steps it once per optimizer step."""
    from transformers import get_scheduler

    warmup = math.ceil(warmup_ratio * total_steps)
    hf_name = {"constant": "constant_with_warmup"}.get(name, name)
    return lambda optimizer: get_scheduler(hf_name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def token_loss_sum(model, batch: dict):
    """Summed next-token cross-entropy over the labelled tokens of one micro batch."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(), ignore_index=-100, reduction="sum"
    )


def flops_per_token(model_config, num_params: int, mean_seq_len: float) -> float:
    """Training FLOPs per token: 6N for the weights plus causal attention (PaLM appendix B)."""
    return 6 * num_params + 6 * model_config.num_hidden_layers * model_config.hidden_size * mean_seq_len


def train_loop_per_worker(config: dict) -> None:
    import deepspeed
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.integrations import HfDeepSpeedConfig

    from cft_ray.train.checkpoint import restore, save_and_report
    from cft_ray.train.dataset import IGNORE_INDEX

    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    plan: WorkerPlan = config["plan"]
    t = plan.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    bf16 = bool(t.bf16 and t.use_gpu)
    torch.manual_seed(t.seed)

    shard = ray.train.get_dataset_shard(f"rank{rank}")
    total_steps = plan.total_steps
    log.info("rank %d: %d steps planned; setting up DeepSpeed", rank, total_steps)
    deepspeed.init_distributed(dist_backend="nccl" if t.use_gpu else "gloo")
    ds_config = deepspeed_config(t, world, bf16)
    # Under ZeRO-3 this makes from_pretrained partition the weights while loading (deepspeed.zero.Init).
    hf_ds = HfDeepSpeedConfig(ds_config) if t.zero_stage == 3 else None  # noqa: F841 (must stay alive)
    tokenizer = AutoTokenizer.from_pretrained(plan.model_path)
    model = AutoModelForCausalLM.from_pretrained(
        plan.model_path, dtype=torch.bfloat16 if bf16 else torch.float32, attn_implementation=plan.attn_implementation
    )
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), config=ds_config,
        lr_scheduler=make_scheduler(t.lr_scheduler, t.warmup_ratio, total_steps),
    )
    start = restore(engine)
    if rank == 0:
        log.info("training steps %d..%d of %d on %d workers (ZeRO-%d)", start + 1, total_steps, total_steps, world, t.zero_stage)
    num_params = sum(getattr(p, "ds_numel", p.numel()) for p in engine.module.parameters())
    metrics_path = Path(plan.output_dir) / "metrics.jsonl"

    saved = [start] if start else []  # steps whose checkpoints hold resume state, oldest first
    rows = (row for row in shard.iter_rows() if row["step"] >= start)  # in plan order; resume skips done steps
    for step, micro_batches in itertools.groupby(rows, key=lambda row: row["step"]):
        began = time.perf_counter()
        lr = engine.get_lr()[0]
        totals = torch.zeros(3, dtype=torch.float64, device=device)  # token loss sum, micro batches, loss tokens
        for row in micro_batches:
            batch = {k: torch.from_numpy(row[k]).to(device, torch.long) for k in ("input_ids", "labels", "position_ids")}
            loss = token_loss_sum(engine, batch)
            # DeepSpeed averages gradients over ranks; scale so the result is the global token mean.
            engine.backward(loss * world / row["step_loss_tokens"], scale_wrt_gas=False)
            totals[0] += loss.detach().double()
            totals[1] += 1
            totals[2] += int((row["labels"][:, 1:] != IGNORE_INDEX).sum())
        engine.step()
        dist.all_reduce(totals)
        loss_sum, micro_batches_read, loss_tokens_read = totals.tolist()
        seconds = time.perf_counter() - began
        # Every row of a step carries the counts of the step's whole global batch; `row` is its last.
        metrics = {
            "step": step + 1,
            "loss": loss_sum / row["step_loss_tokens"],
            "lr": lr,
            "grad_norm": float(engine.get_global_grad_norm() or 0.0),
            "tokens_per_s": row["step_tokens"] / seconds,
            "padding_fraction": 1 - row["step_tokens"] / row["step_positions"],
            # What the ranks together read from their Ray Dataset shards this step.
            "micro_batches": int(micro_batches_read),
            "loss_tokens": int(loss_tokens_read),
            "seconds": seconds,
        }
        if t.use_gpu:
            metrics["mfu"] = flops_per_token(engine.module.config, num_params, plan.mean_sample_len) * (
                metrics["tokens_per_s"] / (t.peak_tflops_per_gpu * 1e12 * world))
        if rank == 0:
            with metrics_path.open("a") as f:
                f.write(json.dumps(metrics) + "\n")
            log.info(
                "step %d/%d loss %.4f lr %.3g grad_norm %.3g tokens/s %.0f padding %.1f%%%s",
                step + 1, total_steps, metrics["loss"], lr, metrics["grad_norm"], metrics["tokens_per_s"],
                100 * metrics["padding_fraction"], f" mfu {100 * metrics['mfu']:.1f}%" if "mfu" in metrics else "",
            )
        _maybe_die(plan, step + 1, rank, world)
        if (step + 1) % t.save_steps == 0 or step + 1 == total_steps:
            stale = saved[-2] if len(saved) >= 2 else None
            save_and_report(engine, tokenizer, step + 1, metrics, rank, plan.run_dir, stale)
            saved.append(step + 1)


def _maybe_die(plan: WorkerPlan, step: int, rank: int, world: int) -> None:
    """Test hook for fault tolerance: a real SIGKILL of one worker, on the first attempt only."""
    if plan.kill_at_step != step or rank != (1 if world > 1 else 0):
        return
    marker = Path(plan.output_dir) / f".killed-at-step-{step}"
    if marker.exists():
        return
    marker.write_text(str(os.getpid()))
    log.warning("%s=%d: worker rank %d kills itself (pid %d)", KILL_ENV, step, rank, os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)
