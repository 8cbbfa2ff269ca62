"""The benchmark registry on the real public test files (and a local MMLU-Pro file shaped like the hub's)."""

from __future__ import annotations

import json

import pytest

from cft_ray.core.errors import ConfigError
from cft_ray.core.benchmarks import BENCHMARKS, get_benchmark

FILE_BACKED = [n for n in BENCHMARKS if n not in ("mmlu-pro", "synthetic-arith")]
EXPECTED_SIZES = {"math": 5000, "math-500": 500, "minerva_math": 272, "gsm8k": 1319, "olympiadbench": 675,
                  "aime24": 30, "amc23": 40, "theoremqa": 800, "gpqa": 198}


@pytest.mark.parametrize("name", FILE_BACKED)
def test_every_row_parses_with_a_reference(name, benchdata_dir):
    samples = get_benchmark(name).load(benchdata_dir)
    assert len(samples) == EXPECTED_SIZES[name]
    assert all(s.reference and s.question for s in samples)
    assert len({s.id for s in samples}) == len(samples)


def test_reference_parsing_matches_the_harness(benchdata_dir):
    first = {name: get_benchmark(name).load(benchdata_dir)[0] for name in FILE_BACKED}
    assert first["math-500"].reference == "\\left( 3, \\frac{\\pi}{2} \\right)"  # nested braces kept
    assert first["gsm8k"].reference == "18"  # text after ####
    assert first["amc23"].reference == "27"  # float 27.0 in the file
    assert first["olympiadbench"].reference == "2"
    assert first["minerva_math"].reference == "1.6"
    tf = [s for s in get_benchmark("theoremqa").load(benchdata_dir) if s.reference == "True"]
    assert tf and all(s.question.endswith(" (True or False)") for s in tf)


def test_gpqa_shuffle_is_seeded_and_reference_points_at_the_correct_answer(benchdata_dir):
    rows = [json.loads(line) for line in (benchdata_dir / "gpqa" / "test.jsonl").open()]
    a = get_benchmark("gpqa").load(benchdata_dir, seed=0)
    assert a == get_benchmark("gpqa").load(benchdata_dir, seed=0)
    b = get_benchmark("gpqa").load(benchdata_dir, seed=1)
    assert [s.reference for s in a] != [s.reference for s in b]
    for sample, row in zip(a, rows):
        assert sample.choices["ABCD".index(sample.reference)] == row["Correct Answer"].strip()
        assert "\nAnswer Choices: (A) " in sample.question and sample.kind == "choice"
    # Seeded, yet spread over the four letters.
    assert len({s.reference for s in a}) == 4


def test_mmlu_pro_reads_a_local_file_shaped_like_the_hub(tmp_path):
    rows = [
        {"question_id": 70, "question": "Which is a prime?", "options": ["4", "6", "7", "8", "9", "10", "12", "14", "15", "16"],
         "answer": "C", "answer_index": 2, "cot_content": "", "category": "math", "src": "ori_mmlu"},
        {"question_id": 71, "question": "Pick B.", "options": ["x", "y", "z"], "answer": "B", "answer_index": 1,
         "cot_content": "", "category": "other", "src": "stemez"},
    ]
    (tmp_path / "mmlu-pro").mkdir()
    (tmp_path / "mmlu-pro" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = get_benchmark("mmlu-pro").load(tmp_path)
    assert [s.reference for s in samples] == ["C", "B"]
    assert samples[0].question.endswith("(I) 15 (J) 16") and len(samples[1].choices) == 3


def test_synthetic_arith_needs_no_files_and_is_disjoint_from_training_seeds():
    from cft_ray.core.synthetic import arithmetic_problems

    samples = get_benchmark("synthetic-arith").load(None)
    assert len(samples) == 200 and all(s.reference.lstrip("-").isdigit() for s in samples)
    training = {p["question"] for p in arithmetic_problems(500, seed=0)}
    assert not training & {s.question for s in samples}


def test_unknown_benchmark_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown benchmark 'mathh'"):
        get_benchmark("mathh")
    with pytest.raises(ConfigError, match="test.jsonl not found"):
        get_benchmark("gsm8k").load(tmp_path)
