"""Config of the data stage: sources, noisy-response generation, builders, subsets, decontamination."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cft_ray.config.base import StrictModel

SourceKind = Literal["webinstruct", "metamathqa", "numinamath", "webinstruct-cft", "local", "synthetic"]
BUILTIN_BUILDERS = ("cft", "sft", "sft-verified", "sft-teacher")


class SourceConfig(StrictModel):
    """One input set, normalised to id / question / response / reference_answer / source."""

    kind: SourceKind = "synthetic"
    path: str | None = Field(
        None, description="local file or folder (kind=local), or a local copy of a hub set (any kind)"
    )
    hub_id: str | None = Field(None, description="hub dataset id; default per kind")
    hub_config: str | None = Field(None, description="hub config (subset); default per kind")
    split: str = "train"
    limit: int | None = Field(None, ge=1, description="read at most this many rows")
    column_map: dict[str, str] = Field(
        default_factory=dict, description="our column -> source column (question, response, reference_answer)"
    )
    name: str | None = Field(None, description="value of the `source` column; default the kind (or hub id)")
    num_rows: int = Field(64, ge=1, description="kind=synthetic: how many problems to generate")
    seed: int = 0


class GenerationConfig(StrictModel):
    """Noisy responses written by a model with vLLM (the self-generated ablation, reference section 4)."""

    enabled: bool = False
    model: str | None = Field(None, description="default: the run's base model")
    prompt: str = Field("self-generated", description="prompt template name (see cft_ray.data.generate.PROMPTS)")
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(2048, ge=1)
    samples_per_question: int = Field(1, ge=1)
    num_engines: int = Field(1, ge=1)
    tensor_parallel_size: int = Field(1, ge=1)
    batch_size: int = Field(64, ge=1, description="questions per engine call")
    use_gpu: bool = False
    seed: int = 0


class SubsetConfig(StrictModel):
    """Which rows a training set keeps: all, a seeded random cut, or the longest critiques.

    ``sizes`` are nested: every smaller subset is inside every larger one. With ``longest`` the
    largest size takes the longest critiques and smaller sizes are seeded random cuts of it
    (how the released 50K and 4K were made)."""

    strategy: Literal["all", "random", "longest"] = "all"
    sizes: list[int] = Field(default_factory=list, description="nested sizes, e.g. [4000, 10000, 50000]")
    seed: int = 42


class DecontamConfig(StrictModel):
    enabled: bool = True
    ngram: int = Field(13, ge=4, description="word n-gram length shared with a benchmark question")
    benchmarks: list[str] | None = Field(None, description="benchmark names; None: the run's eval.benchmarks")
    benchmarks_dir: str | None = Field(None, description="a {name}/test.jsonl folder; None: eval.data_dir")
    dedup: bool = Field(True, description="drop exact and near duplicates (case/space/punctuation) inside the set")


class UserTemplate(StrictModel):
    """A user-defined training format: ``str.format`` templates over the critiqued row's columns."""

    instruction: str
    input: str = "{question}"
    output: str = "{response}"
    verdict: Literal["right", "wrong"] | None = Field(None, description="keep only rows with this verdict")


class DataConfig(StrictModel):
    sources: list[SourceConfig] = Field(default_factory=lambda: [SourceConfig()])
    generation: GenerationConfig = GenerationConfig()
    builders: list[str] = Field(
        default_factory=lambda: ["cft", "sft", "sft-verified"],
        description=f"built-in ({', '.join(BUILTIN_BUILDERS)}) or a key of `templates`",
    )
    templates: dict[str, UserTemplate] = Field(default_factory=dict)
    subset: SubsetConfig = SubsetConfig()
    decontaminate: DecontamConfig = DecontamConfig()
    max_question_chars: int = Field(20_000, ge=1, description="longer questions are quarantined")
    max_response_chars: int = Field(40_000, ge=1, description="longer responses are quarantined")
    batch_size: int = Field(4096, ge=1, description="rows per Ray Data batch in the cleaning steps")

    @model_validator(mode="after")
    def _builders_known(self) -> "DataConfig":
        known = [*BUILTIN_BUILDERS, *self.templates]
        unknown = [b for b in self.builders if b not in known]
        if unknown:
            raise ValueError(f"unknown builder(s) {unknown}; known: {known} (add user ones under data.templates)")
        return self
