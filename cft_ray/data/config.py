"""Config of the data stage: sources, noisy-response generation, builders, subsets, decontamination."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cft_ray.config_base import StrictModel

SourceKind = Literal["webinstruct", "metamathqa", "numinamath", "webinstruct-cft", "local", "synthetic"]
BuilderName = Literal["cft", "sft", "sft-verified", "sft-teacher"]


class SourceConfig(StrictModel):
    """One input set, normalised to id / question / response / reference_answer / source."""

    kind: SourceKind = "synthetic"
    path: str | None = Field(None, description="local file or folder (kind=local), or a local copy of a hub set")
    hub_id: str | None = Field(None, description="hub dataset id; default per kind")
    hub_config: str | None = None
    split: str = "train"
    limit: int | None = Field(None, ge=1, description="read at most this many rows")
    column_map: dict[str, str] = Field(default_factory=dict, description="our column -> source column")
    num_rows: int = Field(64, ge=1, description="kind=synthetic: how many problems to generate")
    seed: int = 0


class GenerationConfig(StrictModel):
    """Noisy responses written by a model with vLLM (the self-generated ablation)."""

    enabled: bool = False
    model: str | None = Field(None, description="default: the run's base model")
    prompt: str = Field("self-generated", description="prompt template name")
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(2048, ge=1)
    samples_per_question: int = Field(1, ge=1)
    num_engines: int = Field(1, ge=1)
    tensor_parallel_size: int = Field(1, ge=1)
    use_gpu: bool = False
    seed: int = 0


class SubsetConfig(StrictModel):
    """Which rows a training set keeps: all, a seeded random cut, or the longest critiques."""

    strategy: Literal["all", "random", "longest"] = "all"
    sizes: list[int] = Field(default_factory=list, description="nested sizes, e.g. [4000, 10000, 50000]")
    seed: int = 42


class DecontamConfig(StrictModel):
    enabled: bool = True
    ngram: int = Field(13, ge=4)
    benchmarks_dir: str | None = Field(None, description="a data/{name}/test.jsonl folder; None: the eval stage's")
    dedup: bool = True


class DataConfig(StrictModel):
    sources: list[SourceConfig] = Field(default_factory=lambda: [SourceConfig()])
    generation: GenerationConfig = GenerationConfig()
    builders: list[BuilderName] = Field(default_factory=lambda: ["cft", "sft", "sft-verified"])
    subset: SubsetConfig = SubsetConfig()
    decontaminate: DecontamConfig = DecontamConfig()
    max_question_chars: int = Field(20_000, ge=1, description="longer questions are quarantined")
    max_response_chars: int = Field(40_000, ge=1, description="longer responses are quarantined")
