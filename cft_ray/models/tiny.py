"""A tiny Qwen2-architecture causal LM built offline and deterministically.

It is the smoke preset's default model and the tests' fixture: an ordinary Hugging Face
model folder (config, safetensors weights, byte-level BPE tokenizer with a ChatML chat
template, generation config) that transformers loads, DeepSpeed trains and vLLM serves.
Built once per settings and cached on disk under a hash of those settings.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from cft_ray.config import ModelConfig, TinyModelConfig
from cft_ray.core.hashing import section_hash

# Bump when the build recipe changes, so cached folders from an older recipe are not reused.
RECIPE_VERSION = 1
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen2.5's ChatML template (default system prompt when none is given).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _training_corpus(seed: int) -> list[str]:
    """Text the BPE merges are learned from: the pipeline's own prompt shapes and arithmetic."""
    import random

    rng = random.Random(seed)
    words = (
        "Question Solution Critique Conclusion right wrong [END] Please critique whether the "
        "following solution to the question is correct . Answer answer step by step final "
        "reason put your within \\boxed{} The total cost number each how many apples has buys "
        "sells gives left remaining equals therefore so we compute is are of the a and + - * / = ."
    ).split()
    lines = []
    for _ in range(2000):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        lines.append(f"{a} + {b} = {a + b}. " + " ".join(rng.choices(words, k=12)))
    return lines


def build_tokenizer(vocab_size: int, seed: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(settings: TinyModelConfig, out_dir: str | Path) -> Path:
    """Build the model folder at ``out_dir`` (overwritten). Deterministic for given settings."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(settings.vocab_size, settings.seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_hidden_layers,
        num_attention_heads=settings.num_attention_heads,
        num_key_value_heads=settings.num_attention_heads,
        max_position_embeddings=settings.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(settings.seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def tiny_model_path(settings: TinyModelConfig, cache_dir: str | Path) -> Path:
    """The cached folder for these settings, built on first use (atomically, so concurrent
    Ray workers asking for the same model never see a half-written folder)."""
    key = section_hash({"recipe": RECIPE_VERSION, **settings.model_dump()})
    target = Path(cache_dir).expanduser() / f"tiny-qwen2-{key}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build_tiny_model(settings, staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process won the race; its folder is identical
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def resolve_model(model: ModelConfig) -> str:
    """The path or hub id to load: builds the tiny model when ``name_or_path == "tiny"``."""
    if model.name_or_path == "tiny":
        return str(tiny_model_path(model.tiny, model.cache_dir))
    return model.name_or_path
