"""Finding the final answer in a model's completion (and in a reference solution).

Order, as the Qwen2.5-Math harness the CFT authors forked (reference section 6): the Minerva
form ``final answer is $...$. I hope``; the last ``\\boxed{...}`` with matched braces (or, cut at
the token limit, what follows an unclosed one); text after ``he answer is``; after ``final answer
is``; else the last number. One step beyond the harness: boxes written side by side as one
answer (``\\boxed{1}, \\boxed{2}``, ``\\boxed{x=1} \\quad \\text{and} \\quad \\boxed{x=2}``) are that
list, where the harness would keep the last alone; boxes with prose between them stay apart. Multiple-choice answers
(GPQA, MMLU-Pro) take the first letter after ``The answer is``, else the last standalone letter.
"""

from __future__ import annotations

import re

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


# What may stand between two boxes of one answer: separators, math delimiters, "and", "or".
_JOINERS = (",", ";", "$", "\\quad", "\\qquad", "\\,", "\\;", "\\:", "\\ ", "\\(", "\\)", "\\[", "\\]",
            "\\text{and}", "\\text{ and }", "\\text{or}", "\\text{ or }", "\\text{,}", "and", "or", "&")


def _joined_before(head: str) -> int | None:
    """If ``head`` ends with a closed box followed only by joiners, the index where that box starts."""
    tail = head[-300:]
    while True:  # strip joiners and spaces from the end
        stripped = tail.rstrip()
        for joiner in _JOINERS:
            if stripped.endswith(joiner):
                stripped = stripped[: -len(joiner)]
                break
        if stripped == tail:
            break
        tail = stripped
    end = len(head) - (len(head[-300:]) - len(tail))
    if end == 0 or head[end - 1] != "}":
        return None
    depth = 0
    for i in range(end - 1, max(-1, end - 2000), -1):  # the box's opening brace, backwards
        depth += (head[i] == "}") - (head[i] == "{")
        if depth == 0:
            return i - len("\\boxed") if head[:i].endswith("\\boxed") else None
    return None


def final_boxes(text: str) -> str | None:
    """The last box's content, joined with the boxes written right before it as one answer."""
    last = last_boxed(text)
    if last is None:
        return None
    answers, head = [last], text[: text.rfind("\\boxed")]
    while len(answers) < 20 and (start := _joined_before(head)) is not None:
        answers.insert(0, last_boxed(head[start:]) or "")
        head = head[:start]
    return ", ".join(dict.fromkeys(a.strip() for a in answers))


def _after(text: str, marker: str) -> str | None:
    """Text after the last ``marker``: a braced group if it starts one, else up to a blank line."""
    pos = text.rfind(marker)
    if pos < 0:
        return None
    tail = text[pos + len(marker) :].strip().removeprefix(":").strip()  # "The answer is: $64$"
    if tail.startswith("{"):
        return last_boxed("\\boxed" + tail)
    tail = tail.split("\n\n")[0].split(". I hope")[0]  # the Minerva closing, after any delimiters
    return tail.strip().rstrip(".").strip() or None


def last_number(text: str) -> str | None:
    matches = _NUMBER.findall(text.replace("$", " "))
    return matches[-1].rstrip(".").replace(",", "") if matches else None


def _unclosed_box(text: str) -> str | None:
    """What follows the last box's ``{`` when it never closes (the harness keeps it all: a
    completion cut at its token limit inside ``\\boxed{42``)."""
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    rest = text[start:].split("{", 1) if start >= 0 else []
    return rest[1].strip() or None if len(rest) == 2 and last_boxed(text) is None else None


def extract_answer(completion: str) -> str:
    """The final answer of a math completion, in the reference order; "" when none."""
    if "final answer is $" in completion and "$. I hope" in completion:  # the harness's split, linear in length
        return completion.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    for found in (
        final_boxes(completion),
        _unclosed_box(completion),
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
