"""Config of the training stage (DeepSpeed ZeRO on Ray Train)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cft_ray.config.base import StrictModel
from cft_ray.core.formats import DEFAULT_SYSTEM_PROMPT


class TrainConfig(StrictModel):
    method: Literal["cft", "sft", "sft-verified", "sft-teacher"] = Field(
        "cft", description="which built dataset to train on; the trainer is the same for all"
    )
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    zero_stage: Literal[2, 3] = 3
    bf16: bool = Field(False, description="bf16 on GPU; CPU runs in fp32")
    learning_rate: float = Field(5e-6, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    num_epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    micro_batch_size: int = Field(1, ge=1, description="samples (or packed sequences) per worker per forward")
    global_batch_size: int = Field(2, ge=1, description="micro batch x accumulation x workers")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 42
    cutoff_len: int = Field(2048, ge=16)
    packing: bool = Field(True, description="pack samples into cutoff_len sequences (exact: no cross-sample attention)")
    gradient_checkpointing: bool = False
    save_steps: int = Field(2, ge=1)
    num_to_keep: int | None = Field(None, ge=1, description="checkpoints kept (newest); None keeps all")
    max_failures: int = Field(2, ge=0, description="worker-group restarts from the latest checkpoint")
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto", description="auto: flash_attention_2 on GPU when flash-attn is installed, else sdpa"
    )
    peak_tflops_per_gpu: float = Field(989.0, gt=0, description="for MFU; 989 = H100 SXM dense bf16")

    @model_validator(mode="after")
    def _batch_divides(self) -> "TrainConfig":
        per_step = self.micro_batch_size * self.num_workers
        if self.global_batch_size % per_step:
            raise ValueError(
                f"train.global_batch_size={self.global_batch_size} is not divisible by "
                f"train.micro_batch_size x train.num_workers = {self.micro_batch_size} x "
                f"{self.num_workers} = {per_step}; pick a global batch that is a multiple of "
                f"{per_step}, or change the micro batch / worker count"
            )
        return self

    @property
    def grad_accum_steps(self) -> int:
        """Micro batches per worker per optimizer step."""
        return self.global_batch_size // (self.micro_batch_size * self.num_workers)
