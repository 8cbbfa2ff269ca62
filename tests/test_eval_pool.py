"""The vLLM actor pool end to end: real Ray, real vLLM (CPU), the tiny model as two checkpoints,
a few samples of every benchmark; then a crash-resume and checkpoint selection on the same files.
Three engine starts in all."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from cft_ray.core.benchmarks import BENCHMARKS
from cft_ray.config import EvalConfig
from cft_ray.core.checkpoints import Checkpoint
from cft_ray.eval.evaluate import evaluate, select_checkpoint

pytestmark = pytest.mark.slow
LIMIT = 2


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_model_dir, benchdata_dir, ray_cluster):
    data_dir = tmp_path_factory.mktemp("benchdata")
    for name in BENCHMARKS:
        if (benchdata_dir / name).exists():
            (data_dir / name).symlink_to(benchdata_dir / name)
    (data_dir / "mmlu-pro").mkdir()
    (data_dir / "mmlu-pro" / "test.jsonl").write_text(json.dumps(
        {"question_id": 1, "question": "2+2?", "options": ["3", "4", "5"], "answer": "B", "answer_index": 1,
         "cot_content": "", "category": "math", "src": "test"}) + "\n")
    second = tmp_path_factory.mktemp("ckpt") / "checkpoint-8"
    shutil.copytree(tiny_model_dir, second)
    checkpoints = [Checkpoint.at_step(4, str(tiny_model_dir)), Checkpoint.at_step(8, str(second))]
    config = EvalConfig(benchmarks=list(BENCHMARKS), data_dir=str(data_dir), select_on="math-500", limit=LIMIT,
                        max_tokens=12, batch_size=8)
    out = tmp_path_factory.mktemp("eval")
    return evaluate(out, checkpoints=checkpoints, eval=config), checkpoints, config, out


def test_every_sample_of_every_benchmark_is_generated_graded_and_saved(scored):
    result, checkpoints, config, out = scored
    for name in (c.name for c in checkpoints):
        table = pq.read_table(out / "samples" / name).to_pandas()
        expected = {b: 1 if b == "mmlu-pro" else LIMIT for b in BENCHMARKS}
        assert table.groupby("benchmark").size().to_dict() == expected
        for column in ("prompt", "completion", "extracted", "reference", "correct_strict", "correct_cft_compat", "timed_out"):
            assert column in table.columns
        assert table["prompt"].str.startswith("<|im_start|>system\nPlease reason step by step").all()
        assert (table["completion_tokens"] <= 12).all() and table["id"].is_unique
        assert set(result.scores[name]) == {*BENCHMARKS, "AVG"}
        assert all(0 <= s["strict"] <= 100 for s in result.scores[name].values())
        assert result.scores[name]["AVG"]["n_benchmarks"] == 6
    # Same weights, greedy: the copy scores exactly as the original.
    a, b = (pq.read_table(out / "samples" / n).to_pandas().sort_values("id") for n in (c.name for c in checkpoints))
    assert list(a["completion"]) == list(b["completion"])


def test_tables_follow_the_paper_layout(scored):
    result, checkpoints, _, out = scored
    md = (out / "summary.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| checkpoint"))
    assert header.startswith("| checkpoint | MATH | Minerva | GSM8K | OlympiadB | AIME24 | AMC23 | AVG | math-500")
    assert md.count("| checkpoint-4 |") == 2 and "### Accuracy (strict)" in md
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scores"] == json.loads(json.dumps(result.scores))
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"


def test_crash_resume_regenerates_only_the_lost_samples(scored):
    result, checkpoints, config, out = scored
    folder = out / "samples" / "checkpoint-8"
    parts = sorted(folder.glob("part-*.parquet"))
    lost = pq.read_table(parts[0]).num_rows
    parts[0].unlink()  # as if the run had died before this batch was written
    untouched = {p.name for p in (out / "samples" / "checkpoint-4").glob("*.parquet")}
    again = evaluate(out, checkpoints=checkpoints, eval=config)
    assert {p.name for p in (out / "samples" / "checkpoint-4").glob("*.parquet")} == untouched
    new_parts = set(folder.glob("part-*.parquet")) - set(parts)
    assert sum(pq.read_table(p).num_rows for p in new_parts) == lost
    assert again.scores == result.scores


def test_selection_reuses_the_scored_samples_and_writes_the_curve(scored):
    _, checkpoints, config, out = scored
    before = {p for p in (out / "samples").rglob("*.parquet")}
    selection = select_checkpoint(out, checkpoints=checkpoints, eval=config)
    assert {p for p in (out / "samples").rglob("*.parquet")} == before  # nothing regenerated
    assert selection.best.name == "checkpoint-4"  # equal scores: the earliest wins
    assert [p.step for p in selection.curve] == [4, 8]
    saved = json.loads((out / "selection_curve.json").read_text())
    assert saved["best"]["name"] == selection.best.name and saved["select_on"] == "math-500"
    assert (out / "selection_curve.png").exists() and (out / "selection.md").exists()
