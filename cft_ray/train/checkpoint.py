"""Checkpoints: a Hugging Face model folder that transformers and vLLM load as it is, with the
DeepSpeed state needed to resume inside it (``deepspeed/``), reported to Ray Train.

Layout of ``checkpoint-<step>/``: ``pytorch_model.bin`` (weights gathered from every rank,
16-bit under bf16), ``config.json``, ``generation_config.json``, the tokenizer files,
``trainer_state.json`` (step, loss) and ``deepspeed/`` (ZeRO partitions, optimizer and
scheduler). Only the two newest checkpoints keep ``deepspeed/`` on local storage: the older ones
are for evaluation, and optimizer state is 12 bytes per parameter. Two, not one: a worker's
report returns before Ray Train's controller has recorded the checkpoint, so a run killed right
after a report resumes from the checkpoint before it, whose state must still be there.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from cft_ray.core.checkpoints import checkpoint_name

STATE_DIR = "deepspeed"
STATE_TAG = "state"


def save_and_report(engine, tokenizer, step: int, metrics: dict, rank: int, run_dir: str | None, stale_step: int | None) -> None:
    """Every rank: gather and write the weights and its ZeRO partition into a local folder,
    then report it (a barrier; Ray Train merges the ranks' folders into ``checkpoint-<step>``).
    Rank 0 then drops the resume state of ``stale_step`` (the checkpoint two saves back)."""
    import ray.train

    local = Path(tempfile.mkdtemp(prefix=f"cft-ray-ckpt-{step}-rank{rank}-"))
    try:
        engine.save_16bit_model(str(local))  # collective under ZeRO-3; rank 0 writes the file
        engine.save_checkpoint(str(local / STATE_DIR), tag=STATE_TAG, client_state={"step": step}, save_latest=False)
        if rank == 0:
            engine.module.config.save_pretrained(local)
            if engine.module.generation_config is not None:
                engine.module.generation_config.save_pretrained(local)
            tokenizer.save_pretrained(local)
            (local / "trainer_state.json").write_text(json.dumps({"step": step, "loss": metrics["loss"]}) + "\n")
        ray.train.report(
            metrics, checkpoint=ray.train.Checkpoint.from_directory(str(local)), checkpoint_dir_name=checkpoint_name(step)
        )
    finally:
        shutil.rmtree(local, ignore_errors=True)
    if rank == 0 and stale_step is not None and run_dir is not None and "://" not in run_dir:
        shutil.rmtree(Path(run_dir) / checkpoint_name(stale_step) / STATE_DIR, ignore_errors=True)


def restore(engine) -> int:
    """Load the latest reported checkpoint's DeepSpeed state (model, optimizer, scheduler);
    returns the optimizer step to continue from (0 on a fresh start)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        _, client_state = engine.load_checkpoint(str(Path(folder) / STATE_DIR), tag=STATE_TAG)
    return int(client_state["step"])
