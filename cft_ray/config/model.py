"""The base model to fine-tune, and the settings of the offline tiny model."""

from __future__ import annotations

from pydantic import Field, model_validator

from cft_ray.config.base import StrictModel


class TinyModelConfig(StrictModel):
    """Settings of the offline tiny Qwen2 model (see :mod:`cft_ray.models.tiny`)."""

    vocab_size: int = Field(1024, ge=300, description="BPE vocabulary incl. special tokens")
    hidden_size: int = Field(128, ge=64)
    num_hidden_layers: int = Field(2, ge=1)
    num_attention_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(256, ge=16)
    max_position_embeddings: int = Field(2048, ge=128)
    seed: int = 0

    @model_validator(mode="after")
    def _head_dim_supported(self) -> "TinyModelConfig":
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if self.hidden_size // self.num_attention_heads < 32:
            # vLLM's CPU attention refuses head_dim=16 (stack notes); 64 is known to work.
            raise ValueError(
                "head dim hidden_size/num_attention_heads must be >= 32 (vLLM CPU refuses 16); "
                "use e.g. hidden_size=128, num_attention_heads=2"
            )
        return self


class ModelConfig(StrictModel):
    """The base model to fine-tune: a hub id, a local folder, or ``tiny`` (built offline)."""

    name_or_path: str = "tiny"
    tiny: TinyModelConfig = TinyModelConfig()
    cache_dir: str = Field(
        "~/.cache/cft-ray/models", description="where built tiny models are cached by settings"
    )
