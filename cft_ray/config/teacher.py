"""Config of the teacher stage: which OpenAI-compatible endpoint, prompts, limits, cache, cost."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cft_ray.config.base import StrictModel


class TeacherConfig(StrictModel):
    base_url: str | None = Field(
        None, description="OpenAI-compatible base URL (…/v1); None starts the built-in offline teacher"
    )
    model: str = "gpt-4o-2024-11-20"
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key")
    api_key_file: str | None = Field(None, description="file holding the key (read, never written anywhere)")
    prompt: str = Field("cft-critique-v1", description="versioned prompt template name")
    temperature: float = Field(0.3, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(3200, ge=1)
    requests_per_minute: float = Field(500, gt=0)
    tokens_per_minute: float = Field(2_000_000, gt=0)
    max_concurrency: int = Field(128, ge=1, description="in-flight requests per actor")
    num_actors: int = Field(2, ge=1, description="teacher actors (one asyncio actor sends hundreds of requests a second)")
    batch_size: int = Field(256, ge=1, description="rows per Ray Data batch")
    max_attempts: int = Field(6, ge=1, description="sends of a request that fail (429s count a tenth: the server said 'not now')")
    request_timeout_s: float = Field(120.0, gt=0)
    max_length_retries: int = Field(1, ge=0, description="retries of finish_reason=length replies")
    max_context_tokens: int = Field(128_000, ge=16, description="the model's context; longer rows become errors")
    est_completion_tokens: int = Field(400, ge=1, description="completion tokens per row for estimates and budget")
    actor_num_cpus: float = Field(0.25, gt=0, description="logical CPUs per actor (the work is network waiting)")
    budget_usd: float | None = Field(None, gt=0, description="stop sending when spent")
    mode: Literal["online", "batch"] = Field(
        "online", description="online: chat completions as fast as the limits allow; batch: OpenAI's Batch API "
        "(half price, answers within batch_completion_window), then online for what the batch failed"
    )
    batch_max_requests: int = Field(50_000, ge=1, description="requests per batch (OpenAI's limit: 50,000)")
    batch_max_bytes: int = Field(200_000_000, ge=1_000, description="input file size per batch (OpenAI's limit: 200 MB)")
    batch_completion_window: str = Field("24h", description="the batch's completion_window")
    batch_poll_s: float = Field(30.0, gt=0, description="seconds between polls of a running batch")
    batch_price_factor: float = Field(0.5, gt=0, le=1, description="batch price as a share of the online price")
    cache_dir: str | None = Field(
        None, description="response cache: a path or any pyarrow filesystem URI; default <output_dir>/teacher-cache"
    )
    prices_per_million: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "gpt-4o-2024-11-20": (2.50, 10.00),
            "gpt-4o": (2.50, 10.00),
            "gpt-4o-mini": (0.15, 0.60),
            "cft-ray-offline-teacher": (0.0, 0.0),
        },
        description="model -> (prompt $/M tokens, completion $/M tokens)",
    )

    @property
    def sampling(self) -> dict[str, float | int]:
        """The request's sampling parameters (part of every cache key)."""
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}

    @property
    def price_per_token(self) -> tuple[float, float]:
        """(prompt, completion) dollars per token of ``model``; (0, 0) when it has no price."""
        prompt, completion = self.prices_per_million.get(self.model, (0.0, 0.0))
        return prompt / 1e6, completion / 1e6
