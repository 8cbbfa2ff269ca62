"""Seeded short arithmetic word problems with reference answers and worked solutions,
some deliberately flawed. The smoke run's offline question set (a user has no benchmark
files), its training source and its evaluation set (disjoint seeds), so the whole
pipeline runs with nothing but the package."""

from __future__ import annotations

import random

_NAMES = ["Ada", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jun"]
_ITEMS = ["apples", "marbles", "stamps", "books", "coins", "pencils", "cards", "shells"]

# (question template, steps) where each step is (description, op, operand name).
_TEMPLATES = [
    ("{n} has {a} {item}. {n} buys {b} more and then gives away {c}. How many {item} does {n} have now?",
     [("after buying", "+", "b"), ("after giving away", "-", "c")]),
    ("{n} packs {a} boxes with {b} {item} in each, then finds {c} loose {item}. How many {item} are there in all?",
     [("in the boxes", "*", "b"), ("with the loose ones", "+", "c")]),
    ("{n} shares {a} {item} equally among {b} friends and keeps {c} extra from another bag. How many {item} does each friend get plus {n}'s extra?",
     [("per friend", "//", "b"), ("adding the extra", "+", "c")]),
    ("A shop sells {item} at {b} dollars each. {n} buys {a} of them and pays with a coupon worth {c} dollars. How many dollars does {n} pay?",
     [("before the coupon", "*", "b"), ("after the coupon", "-", "c")]),
]


def _apply(value: int, op: str, operand: int) -> int:
    return {"+": value + operand, "-": value - operand, "*": value * operand, "//": value // operand}[op]


def arithmetic_problem(rng: random.Random, flawed: bool) -> dict:
    """One problem: question, worked response (wrong at one step when ``flawed``), reference."""
    template, steps = rng.choice(_TEMPLATES)
    b = rng.randint(2, 9)
    values = {"b": b, "c": rng.randint(1, 9)}
    values["a"] = b * rng.randint(2, 12) if steps[0][1] == "//" else rng.randint(10, 60)
    fields = {"n": rng.choice(_NAMES), "item": rng.choice(_ITEMS), **values}
    question = template.format(**fields)

    wrong_step = rng.randrange(len(steps)) if flawed else -1
    true_value = shown_value = values["a"]
    lines = [f"We start with {values['a']}."]
    for i, (what, op, name) in enumerate(steps):
        previous = shown_value
        true_value = _apply(true_value, op, values[name])
        shown_value = _apply(shown_value, op, values[name])
        if i == wrong_step:
            shown_value += rng.choice([-3, -2, -1, 1, 2, 3])  # the deliberate slip
        sym = {"//": "/", "*": "x"}.get(op, op)
        lines.append(f"Then {what}: {previous} {sym} {values[name]} gives {shown_value}.")
    lines.append(f"The answer is \\boxed{{{shown_value}}}.")
    return {
        "question": question,
        "response": "\n".join(lines),
        "reference_answer": str(true_value),
        "response_is_correct": shown_value == true_value,
    }


def arithmetic_problems(n: int, seed: int, flawed_fraction: float = 0.5) -> list[dict]:
    """``n`` problems, deterministic for ``seed``; about ``flawed_fraction`` have a slip."""
    rng = random.Random(seed)
    return [arithmetic_problem(rng, flawed=rng.random() < flawed_fraction) for _ in range(n)]
