"""Evaluation prompts (reference section 6) and the harness's stop words.

``qwen25-math-cot`` is the exact string the CFT authors' harness uses; ``deepseek-math`` is the
DeepSeek-Math chain-of-thought form; ``chat-template`` renders the question with the model's
own tokenizer chat template. Multiple-choice questions (GPQA, MMLU-Pro) already carry their
``Answer Choices`` line; their system line asks for ``The answer is (X)``.
"""

from __future__ import annotations

from functools import lru_cache

from cft_ray.core.benchmarks import EvalSample

STOP_WORDS = ("</s>", "<|im_end|>", "<|endoftext|>", "(END)", "\\[END\\]", "**END**", "[END]")

MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
CHOICE_SYSTEM = "Please reason step by step, and finish your answer with 'The answer is (X)' where X is the correct option letter."
SINGLE_PASS_CRITIQUE = (
    " After solving, critique your own solution step by step; if you find it wrong, write a corrected solution."
)

EVAL_TEMPLATES = {
    "qwen25-math-cot": "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n",
    "deepseek-math": "User: {question}\n{system}\n\nAssistant:",
}
PROMPTS = (*EVAL_TEMPLATES, "chat-template")


@lru_cache(maxsize=4)
def _tokenizer(model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def render(sample: EvalSample, prompt: str, model: str | None = None, single_pass_critique: bool = False) -> str:
    """The full prompt text for one sample."""
    system = CHOICE_SYSTEM if sample.kind == "choice" else MATH_SYSTEM
    if single_pass_critique:
        system += SINGLE_PASS_CRITIQUE
    if prompt == "chat-template":
        if model is None:
            raise ValueError("prompt 'chat-template' needs the model folder for its tokenizer")
        messages = [{"role": "system", "content": system}, {"role": "user", "content": sample.question}]
        return _tokenizer(model).apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if prompt not in EVAL_TEMPLATES:
        raise ValueError(f"unknown prompt {prompt!r}; known: {', '.join(PROMPTS)}")
    return EVAL_TEMPLATES[prompt].format(system=system, question=sample.question)
