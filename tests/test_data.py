"""Data stage, fast parts: source loaders on local copies shaped like the real sets, quarantine,
stable ids, chat rendering, decontamination, dedup and subsets."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cft_ray.config import SourceConfig, SubsetConfig
from cft_ray.core.formats import CFT_INSTRUCTION, cft_row, render_chat
from cft_ray.data.sources import load_source
from cft_ray.data.validate import split_quarantine, validate_batch
from cft_ray.data import decontam
from cft_ray.data.subsets import subset_ids


def _load(cfg: SourceConfig, max_chars: int = 20_000):
    df = validate_batch(load_source(cfg), max_chars, max_chars)
    good, bad = split_quarantine(df)
    assert len(good) + len(bad) == len(df)  # every row ends somewhere
    return good, bad


def _jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_released_cft_rows_parse_back_to_question_response_critique(tmp_path):
    rows = [
        cft_row("What is 2+2?", "2+2=4. The answer is 4.", "The step is right.\nConclusion: right [END]"),
        cft_row("Solve x+1=3.", "x = 3 - 1 = 1", "Subtraction slip.\nConclusion: wrong [END]"),
        {"instruction": CFT_INSTRUCTION, "input": "no question header here", "output": "Critique:\nx"},
        {"instruction": CFT_INSTRUCTION, "input": "Question:\nq\n\nSolution:\nr\n"},  # no output
    ]
    rows[0]["instruction"] = CFT_INSTRUCTION.strip()  # the data card's form, without "\n\n"
    good, bad = _load(SourceConfig(kind="webinstruct-cft", path=str(_jsonl(tmp_path / "cft.jsonl", rows))))
    assert list(good["question"]) == ["What is 2+2?", "Solve x+1=3."]
    assert list(good["response"]) == ["2+2=4. The answer is 4.", "x = 3 - 1 = 1"]
    assert good["critique"].iloc[1] == "Subtraction slip.\nConclusion: wrong [END]"
    assert (good["source"] == "TIGER-Lab/WebInstruct-CFT").all()
    # Parsing is the exact inverse of the builder's row format.
    rebuilt = cft_row(good["question"].iloc[1], good["response"].iloc[1], good["critique"].iloc[1])
    assert rebuilt == rows[1]
    assert len(bad) == 2 and bad["quarantine_reason"].str.startswith("webinstruct-cft").all()


def test_metamathqa_jsonl_with_broken_lines(tmp_path):
    rows = [
        {"query": "Tom has 3 apples and buys 2. How many?", "response": "3 + 2 = 5\nThe answer is: 5",
         "type": "GSM_AnsAug", "original_question": "Tom has 3 apples..."},
        {"query": 17, "response": "x", "type": "MATH_SV", "original_question": ""},
        "{not json",
        {"query": "Missing response", "type": "GSM_Rephrased", "original_question": ""},
    ]
    good, bad = _load(SourceConfig(kind="metamathqa", path=str(_jsonl(tmp_path / "mm.jsonl", rows))))
    assert len(good) == 1
    row = good.iloc[0]
    assert (row["question"], row["reference_answer"], row["type"]) == (rows[0]["query"], "5", "GSM_AnsAug")
    reasons = sorted(bad["quarantine_reason"])
    assert reasons[0].startswith("line 3: not valid JSON")
    assert "question: expected a string, got int" in reasons
    assert "response: missing" in reasons


def test_numinamath_parquet_keeps_extra_columns(tmp_path):
    table = pa.table({
        "source": ["amc_aime", "olympiads", "cn_k12"],
        "problem": ["Find $1+1$.", "Compute $2 \\cdot 3$.", "Empty one"],
        "solution": ["We get $\\boxed{2}$.", "So $\\boxed{\\frac{6}{1}}$ holds.", "   "],
        "messages": [[{"role": "user", "content": "Find $1+1$."}]] * 3,
    })
    pq.write_table(table, tmp_path / "train-00000.parquet")
    good, bad = _load(SourceConfig(kind="numinamath", path=str(tmp_path)))
    assert list(good["reference_answer"]) == ["2", "\\frac{6}{1}"]
    assert list(good["orig_source"]) == ["amc_aime", "olympiads"]  # their `source` kept beside ours
    assert (good["source"] == "AI-MO/NuminaMath-CoT").all()
    assert "messages" in good.columns
    assert list(bad["quarantine_reason"]) == ["response: empty"]


def test_webinstruct_sub_and_absurd_lengths(tmp_path):
    table = pa.table({
        "orig_question": ["oq1", "oq2"], "orig_answer": ["oa1", "oa2"],
        "question": ["What is the derivative of x^2?", "Long one"], "answer": ["2x", "y" * 500],
        "source": ["socratic", "stackexchange"], "index": [0, 1],
    })
    pq.write_table(table, tmp_path / "webinstruct.parquet")
    good, bad = _load(SourceConfig(kind="webinstruct", path=str(tmp_path / "webinstruct.parquet")), max_chars=100)
    assert list(good["response"]) == ["2x"] and list(good["orig_question"]) == ["oq1"]
    assert list(bad["quarantine_reason"]) == ["response: longer than 100 characters"]


def test_local_json_with_column_map_and_stable_ids(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([
        {"prompt": "What is 3*3?", "completion": "9", "gold": "9", "tag": "a"},
        {"prompt": "What is 3*4?", "completion": "12", "gold": "12", "tag": "b"},
        {"prompt": "", "completion": "x", "gold": None, "tag": "c"},
    ]))
    cfg = SourceConfig(kind="local", path=str(path),
                       column_map={"question": "prompt", "response": "completion", "reference_answer": "gold"})
    good, bad = _load(cfg)
    assert list(good["tag"]) == ["a", "b"] and list(good["reference_answer"]) == ["9", "12"]
    assert list(bad["quarantine_reason"]) == ["question: empty"]
    again, _ = _load(cfg)
    assert list(again["id"]) == list(good["id"])  # same content, same ids
    assert good["id"].nunique() == 2


def test_synthetic_source_is_seeded():
    a, _ = _load(SourceConfig(kind="synthetic", num_rows=10, seed=3))
    b, _ = _load(SourceConfig(kind="synthetic", num_rows=10, seed=3))
    assert len(a) == 10 and list(a["id"]) == list(b["id"]) and "response_is_correct" in a.columns


REFERENCE_CHAT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "Please critique whether the following solution to the question is correct.\n\n\n"
    "Question:\nWhat is 1+1?\n\nSolution:\n1+1=3\n<|im_end|>\n<|im_start|>assistant\n"
    "Critique:\nWrong sum.\nConclusion: wrong [END]<|im_end|>\n"
)


def test_render_chat_matches_reference_and_tokenizer_template(tiny_model_dir):
    from transformers import AutoTokenizer

    row = cft_row("What is 1+1?", "1+1=3", "Wrong sum.\nConclusion: wrong [END]")
    text = render_chat(row["instruction"], row["input"], row["output"])
    assert text == REFERENCE_CHAT
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [
        {"role": "user", "content": row["instruction"] + "\n" + row["input"]},
        {"role": "assistant", "content": row["output"]},
    ]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == text


def test_decontamination_catches_planted_question_keeps_similar(benchdata_dir):
    questions, skipped = decontam.load_benchmark_questions(["math-500", "gsm8k"], benchdata_dir)
    assert not skipped and len(questions["math-500"]) == 500
    index = decontam.BenchmarkIndex(questions, n=13)
    original = next(q for q in questions["gsm8k"] if len(decontam.words(q)) > 40)
    planted = "  " + original.upper().replace(" ", "   \n ", 5) + "  "
    words = original.split()
    similar = " ".join("banana" if i % 8 == 0 else w for i, w in enumerate(words))  # no 13-gram left
    df = pd.DataFrame({"question": [planted, similar, "What is 2+2?"]})
    flagged = decontam.Decontaminate(index)(df)[decontam.CONTAMINATED].tolist()
    assert flagged == ["gsm8k", None, None]
    assert decontam.contamination_report(decontam.Decontaminate(index)(df)) == {"gsm8k": 1}


def test_ngram_length_is_configurable():
    index = decontam.BenchmarkIndex({"b": ["one two three four five six"]}, n=4)
    assert index.match("zero ONE two, three four!") == "b"
    assert index.match("one two three nine four") is None


def test_dedup_drops_case_and_punctuation_duplicates_keeps_first():
    df = pd.DataFrame({
        "question": ["What is 2+2?", "what is 2 + 2", "What is 2+2?", "What is 3+3?"],
        "response": ["It is 4.", "it is 4", "It is 5.", "It is 6."],
        "row_index": [0, 1, 2, 3],
    })
    assert decontam.duplicate_rows(decontam.dedup_key_batch(df)) == {1}


@pytest.mark.parametrize("strategy", ["random", "longest"])
def test_subsets_are_nested_and_seeded(strategy):
    rows = pd.DataFrame({"id": [f"r{i:03d}" for i in range(100)], "critique": ["x" * i for i in range(100)]})
    cfg = SubsetConfig(strategy=strategy, sizes=[40, 10, 4], seed=1)
    subsets = subset_ids(rows, cfg)
    assert set(subsets[4]) <= set(subsets[10]) <= set(subsets[40])
    assert [len(subsets[s]) for s in (4, 10, 40)] == [4, 10, 40]
    assert subset_ids(rows, cfg) == subsets
    if strategy == "longest":  # the 40 longest critiques are r060..r099
        assert set(subsets[40]) == {f"r{i:03d}" for i in range(60, 100)}
