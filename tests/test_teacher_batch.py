"""``teacher.mode: batch`` end to end: the official openai client against the offline teacher's
Files and Batches API over real HTTP, real Ray Data, real manifest and cache files."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pandas as pd
import pytest
import ray

from cft_ray.config import TeacherConfig
from cft_ray.core.synthetic import arithmetic_problems
from cft_ray.teacher import run_teacher
from cft_ray.teacher.batch import run_batches
from cft_ray.teacher.cache import ResponseCache
from cft_ray.teacher.client import Endpoint, Secret
from cft_ray.testing.teacher_server import OfflineTeacherServer

PROMPT_PRICE, COMPLETION_PRICE = 2.50 / 1e6, 10.00 / 1e6  # gpt-4o online


def _rows(n: int, seed: int = 0) -> list[dict]:
    rows = [{"id": f"r{seed}-{i}", **row} for i, row in enumerate(arithmetic_problems(n, seed))]
    assert len({(r["question"], r["response"]) for r in rows}) == n  # distinct requests, so counts reconcile
    return rows


def _config(srv, **kw) -> TeacherConfig:
    settings = dict(base_url=srv.base_url, model="gpt-4o", mode="batch", batch_poll_s=0.2, requests_per_minute=6000,
                    num_actors=2, batch_size=16, max_concurrency=16, request_timeout_s=5.0)
    return TeacherConfig(**{**settings, **kw})


def _all_ok(summary, rows: list[dict]) -> pd.DataFrame:
    df = pd.read_parquet(summary.output_path)
    assert sorted(df["id"]) == sorted(r["id"] for r in rows)
    assert (df["status"] == "ok").all() and summary.ok == len(rows)
    assert (df["verdict"] == df["response_is_correct"].map({True: "right", False: "wrong"})).all()
    return df


def _manifests(cache: Path, folder: str = "") -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((cache / "batches" / folder).glob("*.json"))]


def test_batch_mode_answers_every_row_at_half_price(ray_cluster, tmp_path):
    rows, cache = _rows(40), tmp_path / "cache"
    with OfflineTeacherServer(batch_seconds=0.5) as srv:
        summary = run_teacher(tmp_path / "out", rows=ray.data.from_items(rows),
                              teacher=_config(srv, batch_max_requests=15, cache_dir=str(cache)))
        stats = srv.stats()
    df = _all_ok(summary, rows)
    assert stats["request_count"] == 0  # not one online chat request: the batches answered all
    assert stats["batches_created"] == 3 and stats["files_uploaded"] == 3 and stats["batch_requests"] == 40
    b = summary.batch
    assert (len(b.batch_ids), b.resumed, b.requests, b.ok, b.failed) == (3, 0, 40, 40, 0)
    online = (df["prompt_tokens"] * PROMPT_PRICE + df["completion_tokens"] * COMPLETION_PRICE).sum()
    assert online > 0 and b.dollars == pytest.approx(online / 2)
    assert summary.dollars == pytest.approx(b.dollars)
    # every batch collected: no manifest left open, and the manifests are no cache entries
    assert _manifests(cache) == [] and len(_manifests(cache, "collected")) == 3
    assert {m["collected"]["status"] for m in _manifests(cache, "collected")} == {"completed"}
    assert len(ResponseCache(str(cache)).keys()) == 40


def test_batches_respect_both_size_limits_and_a_rerun_sends_nothing(ray_cluster, tmp_path):
    rows = ray.data.from_items(_rows(12))
    with OfflineTeacherServer() as srv:
        config = _config(srv, batch_max_requests=4, batch_max_bytes=2_500)
        endpoint = Endpoint(srv.base_url, config.prompt, str(tmp_path / "cache"))
        first = run_batches(rows, config, endpoint, Secret("EMPTY"))
        inputs = [srv.batch.contents[b["input_file_id"]] for b in srv.batch.batches.values()]
        again = run_batches(rows, config, endpoint, Secret("EMPTY"))
        assert srv.batch.batches_created == len(inputs)
    assert first.ok == first.requests == 12 and len(first.batch_ids) == len(inputs)
    assert all(len(data) <= 2_500 and 1 <= data.count(b"\n") <= 4 for data in inputs)
    assert len(inputs) > 12 / 4  # the bytes limit cut them (a request is ~800 bytes)
    custom_ids = [json.loads(line)["custom_id"] for data in inputs for line in data.splitlines()]
    assert len(custom_ids) == len(set(custom_ids)) == 12
    assert (again.requests, again.batch_ids) == (0, [])  # all cached: no batch at all


@pytest.mark.parametrize("faults", [{"batch_fail_rate": 0.2}, {"batch_expire_fraction": 0.5}],
                         ids=["failed-lines", "expired-batch"])
def test_what_a_batch_fails_goes_online_once(ray_cluster, tmp_path, faults):
    rows = _rows(50)
    with OfflineTeacherServer(batch_seconds=0.5, seed=4, **faults) as srv:
        summary = run_teacher(tmp_path, rows=ray.data.from_items(rows), teacher=_config(srv, batch_max_requests=25))
        stats = srv.stats()
    _all_ok(summary, rows)
    b = summary.batch
    assert b.ok + b.failed == b.requests == 50 and 0 < b.failed < 50
    assert stats["request_count"] == b.failed  # the fallback asked each failed request once
    assert stats["distinct_requests"] == b.failed and stats["max_sends_of_one_request"] == 1


class FirstReplyTruncated(OfflineTeacherServer):
    """The first answer to each request is cut at max_tokens; a second one is whole."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen: set[str] = set()

    def complete(self, body: dict, truncated: bool = False) -> dict:
        key = json.dumps(body["messages"])
        first = key not in self.seen
        self.seen.add(key)
        return super().complete(body, truncated=truncated or first)


def test_truncated_batch_replies_are_paid_for_but_retried_online(ray_cluster, tmp_path):
    rows = _rows(10)
    with FirstReplyTruncated() as srv:
        summary = run_teacher(tmp_path, rows=ray.data.from_items(rows), teacher=_config(srv))
        assert srv.request_count == 10
    df = _all_ok(summary, rows)
    assert (df["finish_reason"] == "stop").all() and df["critique"].str.endswith("[END]").all()
    assert (summary.batch.ok, summary.batch.failed) == (0, 10) and summary.batch.dollars > 0
    assert summary.dollars == pytest.approx(summary.batch.dollars + df["cost_usd"].sum())


def test_killed_driver_resumes_its_batch_instead_of_recreating_it(kill_critique_job, tmp_path):
    n, cache = 60, tmp_path / "cache"
    with OfflineTeacherServer(batch_seconds=8) as srv:  # outlives the killed driver
        sets = [f"teacher.base_url={srv.base_url}", "teacher.model=gpt-4o", f"teacher.cache_dir={cache}",
                "teacher.mode=batch", "teacher.batch_poll_s=0.2"]
        kill_critique_job(n, sets, tmp_path / "killed", lambda: any(m.get("batch_id") for m in _manifests(cache)), 120)
        [manifest] = _manifests(cache)
        assert srv.batch.batches[manifest["batch_id"]]["status"] != "completed"  # killed while it ran
        rows = [{"id": f"synthetic-{i}", **r} for i, r in enumerate(arithmetic_problems(n, 0))]
        summary = run_teacher(tmp_path / "restarted", rows=ray.data.from_items(rows),
                              teacher=_config(srv, cache_dir=str(cache)))
        stats = srv.stats()
    _all_ok(summary, rows)
    assert stats["batches_created"] == 1 and stats["files_uploaded"] == 1  # resumed, not paid for twice
    assert stats["request_count"] == 0
    b = summary.batch
    assert b.batch_ids == [manifest["batch_id"]] and b.resumed == 1 and b.ok == n
    assert _manifests(cache) == []


class DriverDied(BaseException):
    """Stands in for a kill: nothing after it runs."""


def test_batch_created_but_not_recorded_is_found_by_its_input_file(ray_cluster, tmp_path, monkeypatch):
    rows = ray.data.from_items(_rows(8))
    cache = tmp_path / "cache"
    create = openai.resources.batches.Batches.create

    def create_then_die(self, **kw):
        create(self, **kw)
        raise DriverDied  # the batch exists at the API; this driver never learns its id

    with OfflineTeacherServer(batch_seconds=0.3) as srv:
        config = _config(srv)
        endpoint = Endpoint(srv.base_url, config.prompt, str(cache))
        with monkeypatch.context() as patched:
            patched.setattr(openai.resources.batches.Batches, "create", create_then_die)
            with pytest.raises(DriverDied):
                run_batches(rows, config, endpoint, Secret("EMPTY"))
        [pending] = _manifests(cache)
        assert pending["batch_id"] is None and len(pending["custom_ids"]) == 8
        [created] = srv.batch.batches.values()
        assert created["metadata"] == {"cft_ray_manifest": pending["name"]}
        summary = run_batches(rows, config, endpoint, Secret("EMPTY"))
        assert srv.batch.batches_created == 1 and srv.request_count == 0
    assert summary.batch_ids == [created["id"]] and summary.resumed == 1 and summary.ok == 8
    assert len(ResponseCache(str(cache)).keys()) == 8
