"""run_teacher end to end: real Ray Data actor pool, real HTTP to the offline teacher, real files."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import ray

from cft_ray.core.synthetic import arithmetic_problems
from cft_ray.teacher import TeacherAuthError, run_teacher
from cft_ray.teacher.cache import ResponseCache
from cft_ray.config import TeacherConfig
from cft_ray.testing.teacher_server import OfflineTeacherServer



def _rows(n: int, seed: int = 0) -> list[dict]:
    rows = [{"id": f"r{seed}-{i}", **row} for i, row in enumerate(arithmetic_problems(n, seed))]
    assert len({(r["question"], r["response"]) for r in rows}) == n  # distinct requests, so counts reconcile
    return rows


def _config(srv, **kw) -> TeacherConfig:
    settings = dict(base_url=srv.base_url, model="gpt-4o", requests_per_minute=6000, num_actors=2,
                    batch_size=16, max_concurrency=16, request_timeout_s=2.0)
    return TeacherConfig(**{**settings, **kw})


def _output(summary) -> pd.DataFrame:
    return pd.read_parquet(summary.output_path)


def test_faults_every_row_ok_or_error_and_nothing_duplicated(ray_cluster, tmp_path):
    rows = _rows(150)
    faults = dict(rate_429=0.1, retry_after_s=0.2, rate_500=0.05, rate_drop=0.03, rate_malformed=0.03,
                  rate_length=0.03, rate_hang=0.02, hang_s=30)
    with OfflineTeacherServer(latency_s=0.02, seed=1, **faults) as srv:
        summary = run_teacher(tmp_path, rows=ray.data.from_items(rows), teacher=_config(srv, max_attempts=4))
        stats = srv.stats()
    df = _output(summary)
    assert len(df) == len(rows) and sorted(df["id"]) == sorted(r["id"] for r in rows)  # none lost or doubled
    assert set(df["status"]) <= {"ok", "error"}
    assert summary.ok + summary.error == summary.rows == len(rows)
    ok = df[df["status"] == "ok"]
    assert len(ok) >= 0.9 * len(rows)
    # no error body or truncated reply counted as a result: every ok critique is a whole one
    assert ok["critique"].str.endswith("[END]").all() and (ok["finish_reason"] == "stop").all()
    expected = ok["response_is_correct"].map({True: "right", False: "wrong"})
    assert (ok["verdict"] == expected).all()
    errors = df[df["status"] == "error"]
    assert errors["error"].str.match(r"^\w+: ").all()
    assert stats["distinct_requests"] == len(rows)  # each row's request, once per attempt only
    assert stats["request_count"] == int(df["attempts"].sum())
    assert (df.loc[df["status"] == "ok", "attempts"] >= 1).all()


def test_cache_rerun_superset_and_changed_temperature(ray_cluster, tmp_path):
    small, big = _rows(20), _rows(30)
    assert big[:20] == small
    with OfflineTeacherServer() as srv:
        config = _config(srv, cache_dir=str(tmp_path / "cache"))
        run_teacher(tmp_path / "a", rows=ray.data.from_items(small), teacher=config)
        assert srv.request_count == 20
        again = run_teacher(tmp_path / "b", rows=ray.data.from_items(big), teacher=config)
        assert srv.request_count == 30 and again.cached == 20 and again.ok == 30  # only the 10 new rows sent
        # The estimate runs beside the sending (after its first request) yet describes the run as it
        # started: the 10 answers written meanwhile still count as to send.
        assert (again.estimate.rows, again.estimate.cached, again.estimate.to_send) == (30, 20, 10)
        assert again.estimate.prompt_tokens > 0 and again.estimate.dollars > 0
        warmer = run_teacher(tmp_path / "c", rows=ray.data.from_items(small),
                             teacher=config.model_copy(update={"temperature": 0.7}))
        assert srv.request_count == 50 and warmer.cached == 0
        assert run_teacher(tmp_path / "d", rows=ray.data.from_items(big), teacher=config).cached == 30
        assert srv.request_count == 50
        dry = run_teacher(tmp_path / "e", rows=ray.data.from_items(_rows(40)), teacher=config, dry_run=True)
        assert (dry.estimate.cached, dry.estimate.to_send) == (30, 10) and srv.request_count == 50
        assert srv.stats()["max_sends_of_one_request"] == 1
    assert len(ResponseCache(str(tmp_path / "cache")).keys()) == 50


def test_bad_rows_become_error_rows(ray_cluster, tmp_path):
    good = _rows(3)
    frame = pd.DataFrame(good + [
        {"id": "no-question", "question": None, "response": "\\boxed{1}"},
        {"id": "empty-response", "question": "What is 1+1?", "response": "  "},
        {"id": "number-question", "question": 12, "response": "\\boxed{1}"},
        {"id": "too-long", "question": "add " * 5000, "response": "\\boxed{1}"},
    ])
    with OfflineTeacherServer() as srv:
        summary = run_teacher(tmp_path, rows=ray.data.from_pandas(frame),
                              teacher=_config(srv, max_context_tokens=4000, max_tokens=512))
        assert srv.request_count == 3
    df = _output(summary).set_index("id")
    assert summary.rows == 7 and summary.ok == 3 and summary.error == 4
    assert df.loc["no-question", "error"] == "BadRow: missing question"
    assert df.loc["empty-response", "error"] == "BadRow: empty response"
    assert df.loc["number-question", "error"] == "BadRow: question is int, not a string"
    assert df.loc["too-long", "error"].startswith("ContextTooLong:")
    assert summary.errors_by_class == {"BadRow": 3, "ContextTooLong": 1}


def test_bad_api_key_is_one_clear_error(ray_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("CFT_TEST_KEY", "sk-wrong-key-0123456789")
    with OfflineTeacherServer(api_key="sk-right-key") as srv:
        with pytest.raises(TeacherAuthError, match="refused the API key") as caught:
            run_teacher(tmp_path, rows=ray.data.from_items(_rows(10)), teacher=_config(srv, api_key_env="CFT_TEST_KEY"))
        assert srv.request_count == 0  # not one chat request, let alone N retries
    assert "sk-wrong" not in str(caught.value)


def test_secret_key_never_reaches_outputs_or_logs(ray_cluster, tmp_path, monkeypatch, capfd):
    secret = "sk-test-SECRET-5d1f2c9a7b"
    monkeypatch.setenv("CFT_TEST_KEY", secret)
    with OfflineTeacherServer(api_key=secret, rate_500=0.2, seed=3) as srv:
        summary = run_teacher(tmp_path, rows=ray.data.from_items(_rows(20)), teacher=_config(srv, api_key_env="CFT_TEST_KEY"))
        assert srv.request_count >= 20
    assert summary.ok + summary.error == 20
    captured = capfd.readouterr()
    assert secret not in captured.out + captured.err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    session_logs = Path(ray._private.worker.global_worker.node.get_session_dir_path()) / "logs"
    for path in session_logs.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert secret.encode() not in path.read_bytes(), path


def test_budget_stops_sending_and_a_rerun_resumes(ray_cluster, tmp_path):
    rows = ray.data.from_items(_rows(40))
    prices = {"gpt-4o": (1000.0, 1000.0)}  # ~$0.15 a row with the offline teacher's token counts
    with OfflineTeacherServer() as srv:
        config = _config(srv, prices_per_million=prices, est_completion_tokens=20, budget_usd=2.0,
                         cache_dir=str(tmp_path / "cache"))
        first = run_teacher(tmp_path / "a", rows=rows, teacher=config)
        sent = srv.request_count
        assert 0 < first.ok < 40 and first.errors_by_class == {"BudgetExceeded": 40 - first.ok}
        assert first.dollars <= 2.0 + 0.5  # reserved up front, so at most the in-flight overrun
        second = run_teacher(tmp_path / "b", rows=rows, teacher=config.model_copy(update={"budget_usd": None}))
        assert second.ok == 40 and second.cached == first.ok
        assert srv.request_count == sent + (40 - first.ok)


def test_killed_job_restarts_without_resending(kill_critique_job, tmp_path):
    n = 240
    cache = tmp_path / "cache"
    with OfflineTeacherServer(latency_s=0.1, requests_per_minute=1200) as srv:
        sets = [f"teacher.base_url={srv.base_url}", "teacher.model=gpt-4o", f"teacher.cache_dir={cache}",
                "teacher.num_actors=2", "teacher.batch_size=16", "teacher.requests_per_minute=1200"]
        kill_critique_job(n, sets, tmp_path / "killed", lambda: len(ResponseCache(str(cache)).keys()) >= 40, 240)
        answered = len(ResponseCache(str(cache)).keys())
        assert 40 <= answered < n
        time.sleep(1)  # replies in flight at the kill land on a dead socket
        before = srv.request_count
        rows = ray.data.from_items([{"id": f"synthetic-{i}", **r} for i, r in enumerate(arithmetic_problems(n, 0))])
        config = _config(srv, cache_dir=str(cache), requests_per_minute=1200)
        summary = run_teacher(tmp_path / "restarted", rows=rows, teacher=config)
        assert srv.request_count - before == n - answered  # nothing answered before the kill sent again
    assert summary.ok == n and summary.cached == answered
    assert sorted(_output(summary)["id"]) == sorted(f"synthetic-{i}" for i in range(n))


def test_sft_teacher_answer_template(ray_cluster, tmp_path):
    rows = _rows(5)
    with OfflineTeacherServer(references={r["question"]: r["reference_answer"] for r in rows}) as srv:
        summary = run_teacher(tmp_path, rows=ray.data.from_items(rows), teacher=_config(srv), template="sft-teacher-answer-v1")
    df = _output(summary)
    assert summary.ok == 5 and (df["verdict"] == "none").all() and (df["critique"] == "").all()
    assert [a.rsplit("Answer: ", 1)[1] for a in df.sort_values("id")["teacher_answer"]] == [
        r["reference_answer"] for r in sorted(rows, key=lambda r: r["id"])]
