"""Finding the final answer in a model's completion (and in a reference solution).

Order, as the Qwen2.5-Math harness the CFT authors forked (reference section 6): the Minerva
form ``final answer is $...$. I hope``; the last ``\\boxed{...}`` with matched braces; text after
``he answer is``; after ``final answer is``; else the last number. Multiple-choice answers
(GPQA, MMLU-Pro) take the first letter after ``The answer is``, else the last standalone letter.
"""

from __future__ import annotations

import re

_MINERVA = re.compile(r"final answer is \$(.+?)\$\. I hope", re.DOTALL)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")
_BOX_COMMANDS = ("\\boxed", "\\fbox")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox``) with matched braces, or None.

    ``\\boxed 5`` (no braces) yields ``5``; an unclosed box yields None.
    """
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    if start < 0:
        return None
    rest = text[start:]
    rest = rest[rest.index("x") + 1 :] if rest.startswith("\\fbox") else rest[len("\\boxed") :]
    if not rest.startswith("{"):
        # "\boxed 5" form: up to the next "$" or whitespace after the first token.
        token = rest.strip().split("$")[0].split()
        return token[0] if token else None
    depth = 0
    for i, ch in enumerate(rest):
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            return rest[1:i]
    return None


def _after(text: str, marker: str) -> str | None:
    """Text after the last ``marker``: a braced group if it starts one, else up to a blank line."""
    pos = text.rfind(marker)
    if pos < 0:
        return None
    tail = text[pos + len(marker) :].strip()
    if tail.startswith("{"):
        return last_boxed("\\boxed" + tail)
    tail = tail.split("\n\n")[0]
    return tail.strip().rstrip(".").strip() or None


def last_number(text: str) -> str | None:
    matches = _NUMBER.findall(text.replace("$", " "))
    return matches[-1].rstrip(".").replace(",", "") if matches else None


def extract_answer(completion: str) -> str:
    """The final answer of a math completion, in the reference order; "" when none."""
    minerva = _MINERVA.findall(completion)
    if minerva:
        return minerva[-1].strip()
    for found in (
        last_boxed(completion),
        _after(completion, "he answer is"),
        _after(completion, "final answer is"),
        last_number(completion),
    ):
        if found:
            return found.strip()
    return ""


def extract_choice(completion: str, letters: str = "ABCD") -> str:
    """Option letter of a multiple-choice completion; "" when none.

    The first letter after the last ``The answer is`` (boxed or in parentheses allowed),
    else the last standalone option letter anywhere.
    """
    pos = completion.rfind("he answer is")
    if pos >= 0:
        match = re.search(rf"\b([{letters}])\b", completion[pos:])
        if match:
            return match.group(1)
    boxed = last_boxed(completion)
    if boxed and re.fullmatch(rf"\(?([{letters}])\)?", boxed.strip()):
        return boxed.strip().strip("()")
    standalone = re.findall(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z])", completion)
    return standalone[-1] if standalone else ""
