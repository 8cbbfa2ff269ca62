"""The verdict parser and the versioned prompts."""

import pytest

from cft_ray.core.errors import ConfigError
from cft_ray.teacher.messages import build_messages, get_template
from cft_ray.core.verdict import parse_verdict


@pytest.mark.parametrize(
    "critique, verdict",
    [
        ("The steps are fine.\nConclusion: right [END]", "right"),
        ("The sum is off by one.\nConclusion: wrong [END]", "wrong"),
        ("Step 2 fails.\n**Conclusion: Incorrect**", "wrong"),
        ("All good.\nConclusion: right", "right"),  # missing [END]
        ("Conclusion: The solution is correct.", "right"),
        ("CONCLUSION: WRONG [END]", "wrong"),
        ("A wrong start, later fixed. Conclusion: right [END]", "right"),  # only the last part counts
        ("Conclusion: right... on reflection. Conclusion: wrong [END]", "wrong"),
        ("Conclusion: the answer is not correct", "wrong"),
        ("It looks right to me.", "none"),  # no Conclusion at all
        ("Conclusion: unclear [END]", "none"),
        ("", "none"),
        (None, "none"),
    ],
)
def test_parse_verdict(critique, verdict):
    assert parse_verdict(critique) == verdict


def test_paper_prompt_is_exact():
    messages = build_messages(get_template("cft-critique-v1"), {"question": "Q?", "response": "R."})
    assert messages[0]["content"].startswith("You are a science expert. A student is trying to solve a question")
    assert messages[0]["content"].endswith("'Conclusion: right/wrong [END]'.")
    assert messages[1]["content"] == "\nQuestion: Q?\n\nSolution: R.\n"


def test_sft_answer_prompt_and_unknown_name():
    template = get_template("sft-teacher-answer-v1")
    assert template.output_column == "teacher_answer"
    assert build_messages(template, {"question": "Q?"})[1]["content"] == "Question: Q?"
    with pytest.raises(ConfigError, match="cft-critique-v1"):
        get_template("nope")
