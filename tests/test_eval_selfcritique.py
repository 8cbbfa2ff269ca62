"""Two-stage self-critique (reference section 7) with a real vLLM engine on the tiny model."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from cft_ray.core.formats import render_chat
from cft_ray.config import EvalConfig
from cft_ray.core.checkpoints import Checkpoint
from cft_ray.eval.selfcritique import critique_prompt


def test_critique_prompt_is_the_cft_training_prompt():
    # The prompt the model critiques with is its training text up to the critique.
    training_text = render_chat(
        "Please critique whether the following solution to the question is correct.\n\n",
        "Question:\nWhat is 2+3?\n\nSolution:\n2+3=6\n", "Critique:\nwrong",
    )
    assert training_text.startswith(critique_prompt("What is 2+3?", "2+3=6"))
    assert critique_prompt("Q", "S").endswith("<|im_start|>assistant\n")


@pytest.mark.slow
def test_two_stage_resolves_until_judged_right_or_out_of_attempts(tmp_path, tiny_model_dir, ray_cluster):
    from cft_ray.eval import evaluate

    config = EvalConfig(benchmarks=["synthetic-arith"], select_on="synthetic-arith", limit=4, max_tokens=12,
                        self_critique="two-stage", self_critique_attempts=3, self_critique_temperature=1.0)
    result = evaluate(tmp_path, checkpoints=[Checkpoint(name="tiny", path=str(tiny_model_dir))], eval=config)
    rows = pq.read_table(tmp_path / "samples" / "tiny").to_pylist()
    assert len(rows) == 4 and result.scores["tiny"]["synthetic-arith"]["n"] == 4
    for row in rows:
        assert row["self_verdict"] in {"right", "wrong", "none"}
        assert 1 <= row["attempts"] <= 3
        # A solution is kept early only when its critique concluded right.
        assert row["attempts"] == 3 or row["self_verdict"] == "right"
        assert row["completion_tokens"] > 0
