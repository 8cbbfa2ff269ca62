"""cft-ray train: CFT and SFT fine-tuning with DeepSpeed ZeRO on Ray Train.

``train(config, dataset_path, output_dir)`` checks the data and the model before any worker
starts, plans every optimizer step, runs a ``TorchTrainer`` whose workers each read their planned
micro batches from their own Ray Dataset and which resumes from its latest checkpoint after a
failure, and returns the checkpoints (``checkpoint-<step>`` Hugging Face folders that vLLM
loads), the per-step metrics and a loss curve. Every method (CFT, SFT, SFT-verified,
SFT-teacher) is this trainer on a different dataset.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cft_ray.train.dataset import TrainDataError, plan_steps, rank_rows, read_rows, tokenize_rows, write_dropped

if TYPE_CHECKING:  # cft_ray.config imports this package's config module
    from cft_ray.config import PipelineConfig

log = logging.getLogger(__name__)

__all__ = ["TrainDataError", "TrainResult", "train"]


@dataclass
class TrainResult:
    checkpoints: list[tuple[int, Path]]  # (optimizer step, HF model folder), by step
    metrics_path: Path
    loss_curve_png: Path
    total_steps: int
    data: dict = field(default_factory=dict)  # DataReport summary: kept / truncated / dropped rows

    @property
    def final_checkpoint(self) -> Path:
        return self.checkpoints[-1][1]

    def to_json(self) -> dict:
        d = asdict(self)
        d["checkpoints"] = [[s, str(p)] for s, p in self.checkpoints]
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}

    @classmethod
    def from_json(cls, d: dict) -> "TrainResult":
        d = dict(d)
        d["checkpoints"] = [(int(s), Path(p)) for s, p in d["checkpoints"]]
        return cls(**{k: Path(v) if k in ("metrics_path", "loss_curve_png") else v for k, v in d.items()})


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


def train(config: PipelineConfig, dataset_path: str | Path, output_dir: str | Path) -> TrainResult:
    """Fine-tune ``config.model`` on the alpaca rows at ``dataset_path``; artifacts go to
    ``output_dir`` (checkpoints too, unless ``ray.storage_path`` is set)."""
    from cft_ray.models.tiny import resolve_model

    t = config.train
    output_dir = Path(output_dir).expanduser().resolve()
    done = output_dir / "train_result.json"
    if done.exists() and json.loads(done.read_text()).get("config_sha256") == config.sha256():
        log.info("training already finished in %s; nothing to do", output_dir)
        return TrainResult.from_json(json.loads(done.read_text())["result"])

    # Every check that can fail runs here, before a worker starts.
    model_path = resolve_model(config.model)
    tokenizer = load_tokenizer(model_path)
    samples, report = tokenize_rows(read_rows(dataset_path), tokenizer, t.system_prompt, t.cutoff_len)
    plan = plan_steps(
        samples.lengths(), global_batch_size=t.global_batch_size, num_workers=t.num_workers,
        micro_batch_size=t.micro_batch_size, num_epochs=t.num_epochs, max_steps=t.max_steps,
        packing=t.packing, cutoff_len=t.cutoff_len, seed=t.seed,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    write_dropped(report, output_dir / "dropped_rows.jsonl")
    log.info("training data: %s; %d optimizer steps", report.summary(), len(plan))

    rows = rank_rows(samples, plan, tokenizer.pad_token_id)
    checkpoints = _fit(config, model_path, rows, len(plan), float(samples.lengths().mean()), output_dir)
    metrics_path = _dedupe_metrics(output_dir / "metrics.jsonl")
    result = TrainResult(
        checkpoints=checkpoints, metrics_path=metrics_path,
        loss_curve_png=plot_loss_curve(metrics_path, output_dir / "loss_curve.png"),
        total_steps=len(plan), data=report.summary(),
    )
    done.write_text(json.dumps({"config_sha256": config.sha256(), "result": result.to_json()}, indent=1) + "\n")
    return result


def _fit(config: PipelineConfig, model_path: str, rows: list[list[dict]], total_steps: int, mean_sample_len: float,
         output_dir: Path) -> list[tuple[int, Path]]:
    """Run the workers; ``rows[rank]`` (see :func:`~cft_ray.train.dataset.rank_rows`) becomes the
    Ray Dataset ``rank<rank>``, read whole and in order by that rank alone."""
    import ray.data
    from ray.data import ExecutionOptions
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from cft_ray.raycluster import connect, require_gpus
    from cft_ray.train.trainer import KILL_ENV, train_loop_per_worker

    t = config.train
    connect(config.ray)
    if t.use_gpu:
        require_gpus(t.num_workers, "training")
    # Named after the output folder (the pipeline's is keyed by the train config), so a changed
    # config never resumes another run's checkpoints from a shared storage_path.
    storage, name = (config.ray.storage_path, f"{config.name}-{output_dir.name}") if config.ray.storage_path else (
        str(output_dir.parent), output_dir.name)
    kill_at = os.environ.get(KILL_ENV)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "train": t.model_dump(),
            "model_path": model_path,
            "attn_implementation": attention_implementation(t.attn_implementation, t.use_gpu),
            "grad_accum_steps": config.grad_accum_steps,
            "total_steps": total_steps,
            "mean_sample_len": mean_sample_len,
            "output_dir": str(output_dir),
            "run_dir": f"{storage.rstrip('/')}/{name}",
            "kill_at_step": int(kill_at) if kill_at else None,
        },
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
    return sorted(_local_checkpoint(c, int(m["step"]), output_dir) for c, m in result.best_checkpoints)


def _rank_dataset(rows: list[dict]):
    import ray.data

    ds = ray.data.from_items(rows)
    # No Ray Data progress bars in the workers' logs: the trainer prints its own line per step.
    ds.context.enable_progress_bars = False
    return ds


def _local_checkpoint(checkpoint, step: int, output_dir: Path) -> tuple[int, Path]:
    """(step, a local HF folder): vLLM and transformers load local paths, so a checkpoint that
    Ray Train keeps on object storage (``ray.storage_path=s3://...``) is downloaded into
    ``output_dir``, without its DeepSpeed resume state (that stays with Ray Train)."""
    import pyarrow.fs as pafs

    from cft_ray.train.checkpoint import STATE_DIR, checkpoint_name

    fs, root = checkpoint.filesystem, checkpoint.path.rstrip("/")
    if isinstance(fs, pafs.LocalFileSystem):
        return step, Path(root)
    local = output_dir / checkpoint_name(step)
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        relative = info.path[len(root) + 1:]
        if info.type == pafs.FileType.File and not relative.startswith(f"{STATE_DIR}/"):
            (local / relative).parent.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(info.path, str(local / relative), source_filesystem=fs)
    return step, local


def _dedupe_metrics(path: Path) -> Path:
    """Steps redone after a restart appear twice in the log; keep the last record of each."""
    by_step = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        by_step[record["step"]] = record
    path.write_text("".join(json.dumps(by_step[s]) + "\n" for s in sorted(by_step)))
    return path


def plot_loss_curve(metrics_path: Path, png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot([r["step"] for r in records], [r["loss"] for r in records], marker=".")
    ax_loss.set(xlabel="optimizer step", ylabel="loss (mean per target token)", title="training loss")
    ax_lr.plot([r["step"] for r in records], [r["lr"] for r in records], color="tab:orange")
    ax_lr.set(xlabel="optimizer step", ylabel="learning rate", title="schedule")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
