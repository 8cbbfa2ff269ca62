"""Batch generation with vLLM on Ray Data: one engine per actor, actors in a pool.

Shared by the data stage (noisy responses) and the eval stage (benchmark completions),
so both place engines, pick engine settings and report outputs the same way.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


ENGINE_READY = "cft-ray vllm engine ready in"


@dataclass(frozen=True)
class Sampling:
    """The vLLM ``SamplingParams`` we use; greedy by default."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 2048
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = 0


@dataclass(frozen=True)
class EngineSpec:
    """Where and how an engine runs. On CPU the KV cache size comes from
    ``VLLM_CPU_KVCACHE_SPACE`` (GiB); ``gpu_memory_utilization`` would mean a share of RAM."""

    model: str
    use_gpu: bool = False
    tensor_parallel_size: int = 1
    num_engines: int = 1
    max_model_len: int | None = None  # None: the model's own limit
    seed: int = 0
    kv_cache_gib: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_section(cls, section: Any, model: str) -> "EngineSpec":
        """The engine a config section asks for (``data.generation`` or ``eval``: both have
        ``use_gpu``, ``tensor_parallel_size``, ``num_engines``, ``seed``; eval adds ``max_model_len``)."""
        return cls(model=str(model), use_gpu=section.use_gpu, tensor_parallel_size=section.tensor_parallel_size,
                   num_engines=section.num_engines, seed=section.seed,
                   max_model_len=getattr(section, "max_model_len", None))

    def llm_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            model=self.model,
            tensor_parallel_size=self.tensor_parallel_size,
            seed=self.seed,
        )
        if self.max_model_len:
            kwargs["max_model_len"] = self.max_model_len
        if self.use_gpu:
            kwargs["gpu_memory_utilization"] = 0.9
        else:
            # vLLM's "auto" would run an fp32 checkpoint in half precision; on CPU keep what
            # the model was saved in (the tiny model and its CPU-trained checkpoints are fp32).
            kwargs["dtype"] = "float32" if saved_dtype(self.model) == "float32" else "bfloat16"
            # torch.compile warm-up takes longer than the short CPU jobs it would speed up.
            kwargs["enforce_eager"] = True
        return {**kwargs, **self.extra}


def saved_dtype(model: str) -> str | None:
    """The dtype in a local model folder's config.json (None for a hub id or no entry)."""
    config = Path(model) / "config.json"
    if not config.exists():
        return None
    saved = json.loads(config.read_text())
    return saved.get("dtype") or saved.get("torch_dtype")


class VLLMGenerator:
    """Ray Data ``map_batches`` actor: generates for the ``prompt`` column.

    Output columns: ``completion``, ``finish_reason``, ``completion_tokens``,
    ``sample_index`` (one row per sample when ``n > 1``; other columns repeated).
    """

    def __init__(self, engine: EngineSpec, sampling: Sampling):
        if not engine.use_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(engine.kv_cache_gib))
        from vllm import LLM, SamplingParams

        started = time.perf_counter()
        self.llm = LLM(**engine.llm_kwargs())
        # One line per engine start; the pipeline benchmark reads it to split engine start-up from work.
        print(f"{ENGINE_READY} {time.perf_counter() - started:.2f} s model={engine.model}", flush=True)
        self.params = SamplingParams(**{**asdict(sampling), "stop": list(sampling.stop)})

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.llm.generate(list(batch["prompt"]), self.params, use_tqdm=False)
        row_index, completions, reasons, tokens, samples = [], [], [], [], []
        for i, out in enumerate(outputs):
            for j, sample in enumerate(out.outputs):
                row_index.append(i)
                completions.append(sample.text)
                reasons.append(sample.finish_reason or "")
                tokens.append(len(sample.token_ids))
                samples.append(j)
        result = {name: np.asarray(col)[row_index] for name, col in batch.items()}
        result.update(
            completion=np.asarray(completions, dtype=object),
            finish_reason=np.asarray(reasons, dtype=object),
            completion_tokens=np.asarray(tokens, dtype=np.int64),
            sample_index=np.asarray(samples, dtype=np.int64),
        )
        return result


def generate(dataset, engine: EngineSpec, sampling: Sampling, batch_size: int = 64,
             generator: type[VLLMGenerator] = VLLMGenerator, **generator_kwargs):
    """Add completions to a Ray Dataset with a ``prompt`` column, using ``num_engines`` engines
    of ``generator`` (a :class:`VLLMGenerator` subclass may generate in several rounds)."""
    import ray

    return dataset.map_batches(
        generator,
        fn_constructor_kwargs={"engine": engine, "sampling": sampling, **generator_kwargs},
        compute=ray.data.ActorPoolStrategy(size=engine.num_engines),
        batch_size=batch_size,
        num_gpus=engine.tensor_parallel_size if engine.use_gpu else 0,
        num_cpus=1,
    )
