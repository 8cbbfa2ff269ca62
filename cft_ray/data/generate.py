"""Noisy responses written by a model (the self-generated ablation, reference section 4).

Questions go through the shared vLLM actor pool (:func:`cft_ray.models.generation.generate`),
greedy or sampled, ``samples_per_question`` answers each; the completion becomes the row's
``response`` (the original one is kept as ``original_response``) and the id is re-derived.
"""

from __future__ import annotations

import logging

import pandas as pd

from cft_ray.config import GenerationConfig
from cft_ray.data.sources import content_id
from cft_ray.models.generation import EngineSpec, Sampling, generate

log = logging.getLogger(__name__)

# Exact prompt of the authors' self-generation run (their missing "system\n" included).
SELF_GENERATED = (
    "<|im_start|>Please reason step by step to find a solution to the following question, and put your "
    "final answer within \\boxed{{}}.<|im_end|>\n\n<|im_start|>user\nQuestion:\n{question}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
PROMPTS = {"self-generated": SELF_GENERATED}
STOP = ("<|im_end|>", "<|endoftext|>")


def render_generation_prompt(name: str, question: str) -> str:
    try:
        return PROMPTS[name].format(question=question)
    except KeyError:
        raise ValueError(f"unknown generation prompt {name!r}; known: {', '.join(PROMPTS)}") from None


def _to_rows(batch: pd.DataFrame, model: str) -> pd.DataFrame:
    """Completions -> our schema: response, original_response, a new id and source."""
    out = batch.drop(columns=["prompt", "completion", "finish_reason", "completion_tokens"])
    out["original_response"] = batch["response"]
    out["response"] = batch["completion"]
    out["source"] = batch["source"] + f"+gen:{model}"
    out["gen_finish_reason"] = batch["finish_reason"]
    out["gen_tokens"] = batch["completion_tokens"]
    out["id"] = [content_id(s, q, r) for s, q, r in zip(out["source"], out["question"], out["response"])]
    return out


def generate_responses(rows: pd.DataFrame, config: GenerationConfig, model_path: str, model_name: str):
    """A Ray Dataset of ``rows`` (one per question) answered by the model; one row per sample."""
    import ray

    if config.temperature == 0 and config.samples_per_question > 1:
        log.warning("samples_per_question=%d with greedy decoding gives identical samples "
                    "(they are removed as duplicates); set generation.temperature > 0",
                    config.samples_per_question)
    questions = rows.drop_duplicates("question").copy()
    questions["prompt"] = [render_generation_prompt(config.prompt, q) for q in questions["question"]]
    engine = EngineSpec.for_section(config, model_path)
    sampling = Sampling(temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens,
                        n=config.samples_per_question, stop=STOP, seed=config.seed)
    log.info("generating %d x %d responses with %s", len(questions), config.samples_per_question, model_name)
    ds = ray.data.from_pandas(questions.reset_index(drop=True))
    ds = generate(ds, engine, sampling, batch_size=config.batch_size)
    return ds.map_batches(_to_rows, fn_kwargs={"model": model_name}, batch_format="pandas")
