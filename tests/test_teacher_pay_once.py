"""Pay once: `cft-ray data build` reruns after a changed setting send no request already answered.

The server counts every chat request it receives, so each assertion is about what reached it.
"""

from __future__ import annotations

import pytest

from cft_ray.cli import main
from cft_ray.config import load_config
from cft_ray.core.synthetic import arithmetic_problems
from cft_ray.stages import stage_key
from cft_ray.testing.teacher_server import OfflineTeacherServer

# Settings that only pace the same requests: the critique step is not even rerun.
PACING = {"teacher.num_actors": 1, "teacher.max_concurrency": 3, "teacher.batch_size": 5,
          "teacher.requests_per_minute": 1234, "teacher.tokens_per_minute": 99_999, "teacher.actor_num_cpus": 0.5,
          "teacher.mode": "batch"}
# Settings that can change which rows end as errors: the step reruns, and the cache answers it.
RERUN = {"teacher.budget_usd": 100.0, "teacher.max_attempts": 9, "teacher.request_timeout_s": 33.0}


@pytest.mark.parametrize("dotted, value", list(PACING.items()))
def test_a_pacing_setting_keeps_the_critique_key(dotted, value):
    base = load_config("smoke")
    changed = load_config("smoke", overrides=[f"{dotted}={value}"])
    assert stage_key("critique", changed, "upstream") == stage_key("critique", base, "upstream")


@pytest.mark.slow
def test_data_build_reruns_send_only_what_was_never_answered(ray_cluster, tmp_path):
    refs = {r["question"]: r["reference_answer"] for r in arithmetic_problems(40, 0)}
    with OfflineTeacherServer(references=refs) as srv:
        base = [f"output_dir={tmp_path}", f"teacher.base_url={srv.base_url}", "teacher.model=gpt-4o",
                "data.sources=[{kind: synthetic, num_rows: 30, seed: 0}]"]

        def build(*overrides: str) -> int:
            before = srv.request_count
            args = [arg for o in [*base, *overrides] for arg in ("--set", o)]
            assert main(["data", "build", "--preset", "smoke", *args]) == 0
            return srv.request_count - before

        first = build()
        assert first == 30
        assert build(*(f"{k}={v}" for k, v in PACING.items())) == 0
        for dotted, value in RERUN.items():
            assert build(f"{dotted}={value}") == 0, dotted
        # 10% more rows (the synthetic source's first 30 rows are the same rows): only the 3 new ones
        assert build("data.sources=[{kind: synthetic, num_rows: 33, seed: 0}]") == 3
        assert srv.stats()["max_sends_of_one_request"] == 1
    # the run's cache, beside the keyed step folders rather than inside one
    assert [p.relative_to(tmp_path).parts[1:] for p in tmp_path.rglob("teacher-cache")] == [("teacher-cache",)]
