"""The training driver: checks, plans and runs one fine-tuning on Ray Train, and returns its checkpoints.

``train(output_dir, dataset=..., model=..., train=..., ray=...)`` checks the data and the model
before any worker starts, plans every optimizer step, runs a ``TorchTrainer`` whose workers each
read their planned micro batches from their own Ray Dataset and which resumes from its latest
checkpoint after a failure, and returns the checkpoints (``checkpoint-<step>`` Hugging Face
folders that vLLM loads), the per-step metrics and a loss curve. Every method (CFT, SFT,
SFT-verified, SFT-teacher) is this trainer on a different dataset. Ray must be connected (the
entry point does it).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from cft_ray.config import ModelConfig, RayConfig, TrainConfig
from cft_ray.core.checkpoints import Checkpoint, checkpoint_name
from cft_ray.report.plots import png_figure
from cft_ray.stages import TrainResult, stage_key
from cft_ray.train.dataset import TrainDataError, plan_steps, rank_rows, read_rows, tokenize_rows, write_dropped
from cft_ray.train.trainer import KILL_ENV, WorkerPlan

log = logging.getLogger(__name__)


def load_tokenizer(model_path: str):
    """The model's tokenizer, or a clear error when the model cannot be found."""
    from transformers import AutoTokenizer

    local = Path(model_path).expanduser()
    if model_path.startswith((".", "/", "~")) and not local.exists():
        raise TrainDataError(f"model path {model_path} does not exist; set model.name_or_path to a model folder or hub id")
    try:
        return AutoTokenizer.from_pretrained(str(local) if local.exists() else model_path)
    except (OSError, ValueError) as exc:
        raise TrainDataError(
            f"cannot load model {model_path!r}: not a local folder and not loadable from the hub ({exc})"
        ) from exc


def attention_implementation(choice: str, use_gpu: bool) -> str:
    if choice != "auto":
        return choice
    if use_gpu:
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def dataset_fingerprint(dataset: str | Path) -> list[list]:
    """Name, size and modification time of each Parquet file: a changed dataset is a new run."""
    path = Path(dataset).expanduser().resolve()
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.exists()]


def train(output_dir: str | Path, *, dataset: str | Path, model: ModelConfig, train: TrainConfig,
          ray: RayConfig) -> TrainResult:
    """Fine-tune ``model`` on the alpaca rows at ``dataset``; artifacts go to ``output_dir``
    (checkpoints too, unless ``ray.storage_path`` is set)."""
    from cft_ray.models.tiny import resolve_model

    t = train
    output_dir = Path(output_dir).expanduser().resolve()
    key = stage_key("train", {"model": model, "train": t}, json.dumps(dataset_fingerprint(dataset)))
    done = output_dir / "train_result.json"
    if done.exists() and json.loads(done.read_text()).get("key") == key:
        log.info("training already finished in %s; nothing to do", output_dir)
        return TrainResult.model_validate(json.loads(done.read_text())["result"])

    # Every check that can fail runs here, before a worker starts.
    model_path = resolve_model(model)
    tokenizer = load_tokenizer(model_path)
    samples, report = tokenize_rows(read_rows(dataset), tokenizer, t.system_prompt, t.cutoff_len)
    plan = plan_steps(
        samples.lengths(), global_batch_size=t.global_batch_size, num_workers=t.num_workers,
        micro_batch_size=t.micro_batch_size, num_epochs=t.num_epochs, max_steps=t.max_steps,
        packing=t.packing, cutoff_len=t.cutoff_len, seed=t.seed,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    write_dropped(report, output_dir / "dropped_rows.jsonl")
    log.info("training data: %s; %d optimizer steps", report.summary(), len(plan))

    rows = rank_rows(samples, plan, tokenizer.pad_token_id)
    # A run on shared storage is named after its key: a changed config never resumes another
    # run's checkpoints, and the same config (same outputs) resumes its own from anywhere.
    storage, name = (ray.storage_path, f"cft-ray-train-{key}") if ray.storage_path else (
        str(output_dir.parent), output_dir.name)
    kill_at = os.environ.get(KILL_ENV)
    worker_plan = WorkerPlan(
        train=t, model_path=model_path, attn_implementation=attention_implementation(t.attn_implementation, t.use_gpu),
        total_steps=len(plan), mean_sample_len=float(samples.lengths().mean()), output_dir=str(output_dir),
        run_dir=f"{storage.rstrip('/')}/{name}", kill_at_step=int(kill_at) if kill_at else None,
    )
    checkpoints = _fit(worker_plan, rows, storage, name)
    metrics_path = _dedupe_metrics(output_dir / "metrics.jsonl")
    result = TrainResult(
        checkpoints=checkpoints, metrics_path=str(metrics_path),
        loss_curve_png=str(plot_loss_curve(metrics_path, output_dir / "loss_curve.png")),
        total_steps=len(plan), data=report.summary(),
    )
    done.write_text(json.dumps({"key": key, "result": result.model_dump(mode="json")}, indent=1) + "\n")
    return result


def _fit(plan: WorkerPlan, rows: list[list[dict]], storage: str, name: str) -> list[Checkpoint]:
    """Run the workers; ``rows[rank]`` (see :func:`~cft_ray.train.dataset.rank_rows`) becomes the
    Ray Dataset ``rank<rank>``, read whole and in order by that rank alone."""
    from ray.data import ExecutionOptions
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from cft_ray.raycluster import require_gpus
    from cft_ray.train.trainer import train_loop_per_worker

    t = plan.train
    if t.use_gpu:
        require_gpus(t.num_workers, "training")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"plan": plan},
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu),
        datasets={f"rank{rank}": _rank_dataset(r) for rank, r in enumerate(rows)},
        dataset_config=DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)),
        run_config=RunConfig(
            name=name, storage_path=storage,
            checkpoint_config=CheckpointConfig(num_to_keep=t.num_to_keep),
            failure_config=FailureConfig(max_failures=t.max_failures),
        ),
    )
    result = trainer.fit()
    local = [_local_checkpoint(c, int(m["step"]), Path(plan.output_dir)) for c, m in result.best_checkpoints]
    return sorted(local, key=lambda c: c.step)


def _rank_dataset(rows: list[dict]):
    import ray.data

    ds = ray.data.from_items(rows)
    # No Ray Data progress bars in the workers' logs: the trainer prints its own line per step.
    ds.context.enable_progress_bars = False
    return ds


def _local_checkpoint(checkpoint, step: int, output_dir: Path) -> Checkpoint:
    """The checkpoint as a local HF folder: vLLM and transformers load local paths, so one that
    Ray Train keeps on object storage (``ray.storage_path=s3://...``) is downloaded into
    ``output_dir``, without its DeepSpeed resume state (that stays with Ray Train)."""
    import pyarrow.fs as pafs

    from cft_ray.train.checkpoint import STATE_DIR

    fs, root = checkpoint.filesystem, checkpoint.path.rstrip("/")
    if isinstance(fs, pafs.LocalFileSystem):
        return Checkpoint.at_step(step, root)
    local = output_dir / checkpoint_name(step)
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        relative = info.path[len(root) + 1:]
        if info.type == pafs.FileType.File and not relative.startswith(f"{STATE_DIR}/"):
            (local / relative).parent.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(info.path, str(local / relative), source_filesystem=fs)
    return Checkpoint.at_step(step, str(local))


def _dedupe_metrics(path: Path) -> Path:
    """Steps redone after a restart appear twice in the log; keep the last record of each."""
    by_step = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        by_step[record["step"]] = record
    path.write_text("".join(json.dumps(by_step[s]) + "\n" for s in sorted(by_step)))
    return path


def plot_loss_curve(metrics_path: Path, png: Path) -> Path:
    records = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    with png_figure(png, dpi=110, ncols=2, figsize=(10, 3.5)) as (_, (ax_loss, ax_lr)):
        ax_loss.plot([r["step"] for r in records], [r["loss"] for r in records], marker=".")
        ax_loss.set(xlabel="optimizer step", ylabel="loss (mean per target token)", title="training loss")
        ax_lr.plot([r["step"] for r in records], [r["lr"] for r in records], color="tab:orange")
        ax_lr.set(xlabel="optimizer step", ylabel="learning rate", title="schedule")
    return png
