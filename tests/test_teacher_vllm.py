"""The teacher stage against a real vLLM OpenAI server (CPU build, tiny model with random weights).

The tiny model writes noise, so verdicts are 'none' and replies run to max_tokens; the point is
the protocol: real usage numbers come back, a length cut is flagged, vLLM's own 400 for a prompt
over its context is recorded without retries, and no rate-limit headers are needed.
"""

import pandas as pd
import pytest
import ray

from cft_ray.teacher import run_teacher
from cft_ray.config import TeacherConfig


@pytest.mark.slow
def test_run_teacher_against_vllm(ray_cluster, vllm_openai_server, tmp_path):
    rows = [{"id": f"v{i}", "question": f"What is {i} + {i}?", "response": f"It is \\boxed{{{2 * i}}}."}
            for i in range(6)]
    rows.append({"id": "over-context", "question": "one two three " * 900, "response": "\\boxed{1}"})
    config = TeacherConfig(base_url=vllm_openai_server, model="tiny", max_tokens=8, temperature=0.0,
                           num_actors=2, batch_size=4, max_concurrency=4, max_length_retries=0,
                           request_timeout_s=60)
    summary = run_teacher(tmp_path, rows=ray.data.from_items(rows), teacher=config)
    df = pd.read_parquet(summary.output_path).set_index("id")
    assert summary.rows == 7 and summary.ok + summary.error == 7
    sent = df.drop(index="over-context")
    assert (sent["prompt_tokens"] > 20).all()  # vLLM's tokenizer count, not our estimate
    assert (sent["completion_tokens"] <= 8).all() and (sent["completion_tokens"] > 0).all()
    assert (sent["attempts"] == 1).all()
    assert set(sent["verdict"]) == {"none"}
    length = sent[sent["finish_reason"] == "length"]
    assert (length["status"] == "error").all() and length["error"].str.startswith("LengthLimit").all()
    assert (sent.loc[sent["finish_reason"] == "stop", "status"] == "ok").all()
    # about 2,700 tokens against vLLM's 2,048: vLLM answers 400, recorded, not retried
    over = df.loc["over-context"]
    assert over["status"] == "error" and over["error"].startswith("BadRequestError") and over["attempts"] == 1
