"""Data stage with its real parts: vLLM (CPU) noisy responses on the tiny model, and the whole
build against the offline teacher over real HTTP, cards checked against the data."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cft_ray.config import load_config
from cft_ray.data.builders import token_lengths
from cft_ray.config import DataConfig, DecontamConfig, GenerationConfig, SourceConfig, SubsetConfig, UserTemplate
from cft_ray.core.formats import cft_row
from cft_ray.core.synthetic import arithmetic_problems


@pytest.mark.slow
def test_noisy_responses_with_vllm_on_tiny_model(ray_cluster, tiny_model_dir):
    from cft_ray.data.generate import generate_responses
    from cft_ray.data.sources import load_source

    rows = load_source(SourceConfig(kind="synthetic", num_rows=3, seed=1))
    cfg = GenerationConfig(enabled=True, temperature=0.8, samples_per_question=2, max_tokens=8, batch_size=4)
    out = generate_responses(rows, cfg, str(tiny_model_dir), "tiny").to_pandas()
    assert len(out) == 6
    assert sorted(out.groupby("question")["sample_index"].apply(sorted).tolist()) == [[0, 1]] * 3
    assert out["gen_tokens"].between(1, 8).all()
    assert (out["source"] == "synthetic+gen:tiny").all()
    by_question = dict(zip(rows["question"], rows["response"]))
    assert (out["original_response"] == out["question"].map(by_question)).all()
    assert not set(out["id"]) & set(rows["id"])  # new responses, new content ids


def _card(path: str) -> tuple[pd.DataFrame, dict]:
    return pd.read_parquet(Path(path) / "data.parquet"), json.loads((Path(path) / "card.json").read_text())


@pytest.mark.slow
def test_build_end_to_end_with_offline_teacher(ray_cluster, tmp_path, tiny_model_dir, benchdata_dir):
    from transformers import AutoTokenizer

    from cft_ray.stages import run_stage
    from cft_ray.core.benchmarks import get_benchmark
    from cft_ray.testing.teacher_server import OfflineTeacherServer
    from cft_ray.core.verdict import parse_verdict

    synthetic = arithmetic_problems(12, seed=5)
    benchmark_q = get_benchmark("gsm8k").load(benchdata_dir)[0].question
    released = cft_row("What is 7*6?", "7*6 = 42. The answer is \\boxed{42}.", "Correct product.\nConclusion: right [END]")
    local = tmp_path / "extra.jsonl"
    local.write_text("\n".join(json.dumps(r) for r in [
        {"question": synthetic[0]["question"].upper(), "response": synthetic[0]["response"] + " "},  # near duplicate
        {"question": "  " + benchmark_q.lower() + "\n", "response": "It is 3."},  # contaminated
        {"question": "Broken row", "response": ""},  # quarantined
    ]) + "\n")
    released_path = tmp_path / "released.jsonl"
    released_path.write_text(json.dumps(released) + "\n")

    config = load_config("smoke")
    data = DataConfig(
        sources=[SourceConfig(kind="synthetic", num_rows=12, seed=5),
                 SourceConfig(kind="local", path=str(local)),
                 SourceConfig(kind="webinstruct-cft", path=str(released_path))],
        builders=["cft", "sft", "sft-verified", "sft-teacher", "wrong-only"],
        templates={"wrong-only": UserTemplate(instruction="Fix this answer.", input="{question}\n{response}",
                                              output="{critique}", verdict="wrong")},
        subset=SubsetConfig(strategy="longest", sizes=[8, 4], seed=0),
        decontaminate=DecontamConfig(benchmarks=["gsm8k"], benchmarks_dir=str(benchdata_dir)),
    )
    refs = {r["question"]: r["reference_answer"] for r in synthetic}
    with OfflineTeacherServer(references=refs) as srv:
        teacher = config.teacher.model_copy(update={"base_url": srv.base_url, "num_actors": 1})
        config = config.model_copy(update={"data": data, "teacher": teacher})
        summary = run_stage("data", config, tmp_path / "out")
        requests = srv.request_count
        steps = summary.steps
        # Every row is accounted for: kept, quarantined or removed with a reason.
        assert steps["load"]["loaded_in"] == 16 and steps["load"]["quarantined"] == 1
        assert steps["clean"]["in"] == 15 and steps["clean"]["duplicates"] == 1
        assert steps["clean"]["contaminated"] == {"gsm8k": 1}
        assert steps["clean"]["rows"] == 13 and steps["critique"]["given_critiques"] == 1
        # 12 synthetic rows critiqued + 13 questions answered; the released row needs no teacher.
        assert requests == 12 + 13

        critiqued = pd.read_parquet(next((tmp_path / "out" / "work").glob("critique-*")) / "rows.parquet")
        truth = dict(zip([r["question"] for r in synthetic], [r["response_is_correct"] for r in synthetic]))
        for q, v in zip(critiqued["question"], critiqued["verdict"]):
            if q in truth:
                assert v == ("right" if truth[q] else "wrong")
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        for name in data.builders:
            rows, card = _card(summary.datasets[name])
            assert card["rows"] == len(rows) and card["config_hash"]
            assert card["verdicts"] == rows["verdict"].value_counts().to_dict()
            assert card["sources"] == rows["source"].value_counts().to_dict()
            assert card["tokens"] == token_lengths(rows, tokenizer)
        cft, card = _card(summary.datasets["cft"])
        assert len(cft) == 13 and cft["output"].str.startswith("Critique:\n").all()
        assert [parse_verdict(o) for o in cft["output"]] == cft["verdict"].tolist()
        assert card["right_ratio"] == round((cft["verdict"] == "right").mean(), 4)
        assert released["output"] in set(cft["output"])  # the released critique, not re-paid
        verified, _ = _card(summary.datasets["sft-verified"])
        assert len(verified) == (cft["verdict"] == "right").sum() and (verified["verdict"] == "right").all()
        teacher_sft, _ = _card(summary.datasets["sft-teacher"])
        for q, out in zip(teacher_sft["input"], teacher_sft["output"]):
            if q in refs:
                assert out.endswith(f"Answer: {refs[q]}")
        wrong_only, _ = _card(summary.datasets["wrong-only"])
        assert (wrong_only["verdict"] == "wrong").all() and (wrong_only["instruction"] == "Fix this answer.").all()
        small, large = _card(summary.datasets["cft/4"])[0], _card(summary.datasets["cft/8"])[0]
        assert len(small) == 4 and len(large) == 8 and set(small["id"]) <= set(large["id"])
        assert set(_card(summary.datasets["sft/4"])[0]["id"]) == set(small["id"])  # like with like

        # A second build finds every step done: no teacher call, same outputs.
        again = run_stage("data", config, tmp_path / "out")
        assert srv.request_count == requests and again.steps == summary.steps
