"""Refusing, at load time, a config that asks for GPUs on a machine that has none."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING

from cft_ray.core.errors import ConfigError

if TYPE_CHECKING:
    from cft_ray.config.pipeline import PipelineConfig


def local_gpu_count() -> int:
    """GPUs on this machine, without importing torch (cheap enough for config loading)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def check_gpus(config: PipelineConfig) -> None:
    """GPUs asked for, none here and no cluster set: the config cannot run on this machine."""
    wants_gpu = config.train.use_gpu or config.eval.use_gpu or config.data.generation.use_gpu
    on_cluster = bool(config.ray.address or os.environ.get("RAY_ADDRESS"))
    if wants_gpu and not on_cluster and local_gpu_count() == 0:
        raise ConfigError(
            f"preset/config {config.preset or config.name!r} asks for GPUs (train.use_gpu="
            f"{config.train.use_gpu}, eval.use_gpu={config.eval.use_gpu}) but this machine has none "
            "and no Ray cluster is set. Submit it to a GPU cluster (RAY_ADDRESS / ray job submit), "
            "or run the CPU preset: --preset smoke"
        )
