"""The exact training-row formats of the paper (reference sections 1 and 3) and the chat
rendering the trainer sees. One definition, used by the dataset builders and the trainer,
so the text trained on is byte-identical to LLaMA-Factory's alpaca + ``qwen`` rendering."""

from __future__ import annotations

CFT_INSTRUCTION = "Please critique whether the following solution to the question is correct.\n\n"
SFT_INSTRUCTION = "Please analyze and answer the following question step by step:"
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."


def cft_input(question: str, response: str) -> str:
    """The input of a CFT row: the question and the solution to critique."""
    return f"Question:\n{question}\n\nSolution:\n{response}\n"


def cft_row(question: str, response: str, critique: str) -> dict[str, str]:
    """instruction / input / output of one CFT row; ``critique`` is the teacher's text."""
    return {"instruction": CFT_INSTRUCTION, "input": cft_input(question, response), "output": f"Critique:\n{critique}"}


def sft_row(question: str, answer: str) -> dict[str, str]:
    """instruction / input / output of one SFT-baseline row (original or teacher answer)."""
    return {"instruction": SFT_INSTRUCTION, "input": question, "output": answer}


def user_text(instruction: str, input_text: str) -> str:
    """Alpaca -> user message, as LLaMA-Factory joins them."""
    return f"{instruction}\n{input_text}" if input_text else instruction


def render_prompt(instruction: str, input_text: str, system: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """The ChatML text up to and including the assistant header (no loss on any of it)."""
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{user_text(instruction, input_text)}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def render_target(output: str) -> str:
    """The assistant part that carries the loss: the output and its end-of-turn token."""
    return f"{output}<|im_end|>"


def render_chat(instruction: str, input_text: str, output: str, system: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """The full training text of one row, byte for byte as in reference section 1."""
    return render_prompt(instruction, input_text, system) + render_target(output) + "\n"
