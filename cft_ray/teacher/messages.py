"""Versioned teacher prompt templates (reference sections 2 and 3).

A template's name is part of every cached request through the messages it builds, so editing a
template's text must come with a new name (``-v2``): old results stay valid under the old name.
"""

from __future__ import annotations

from dataclasses import dataclass

from cft_ray.core.errors import ConfigError


@dataclass(frozen=True)
class Template:
    name: str
    system: str
    user: str  # str.format with the row's fields
    output_column: str  # where the reply goes: `critique` or `teacher_answer`
    fields: tuple[str, ...]  # row fields the template needs (each a non-empty string)


TEACHER_TEMPLATES = {
    t.name: t
    for t in [
        # The paper's teacher call (GPT-4o), exact strings.
        Template(
            name="cft-critique-v1",
            system=(
                "You are a science expert. A student is trying to solve a question, please explain briefly "
                "whether his solution is correct or not. Finally, conclude your judgement with "
                "'Conclusion: right/wrong [END]'."
            ),
            user="\nQuestion: {question}\n\nSolution: {response}\n",
            output_column="critique",
            fields=("question", "response"),
        ),
        # The SFT-GPT4o baseline: the teacher writes its own answer.
        Template(
            name="sft-teacher-answer-v1",
            system=(
                "You are a science expert. You need to answer a given question clearly and conclude your "
                "answer with 'Answer: [YOUR ANSWER]'"
            ),
            user="Question: {question}",
            output_column="teacher_answer",
            fields=("question",),
        ),
    ]
}


def get_template(name: str) -> Template:
    try:
        return TEACHER_TEMPLATES[name]
    except KeyError:
        raise ConfigError(f"unknown teacher prompt {name!r}; known: {', '.join(TEACHER_TEMPLATES)}") from None


def build_messages(template: Template, row: dict) -> list[dict[str, str]]:
    """The chat messages for one row (the caller has checked the fields)."""
    return [
        {"role": "system", "content": template.system},
        {"role": "user", "content": template.user.format(**{f: row[f] for f in template.fields})},
    ]
