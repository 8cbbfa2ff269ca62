"""The offline teacher over real HTTP: critiques, the OpenAI protocol, faults, its own limit."""

import json
import socket
import subprocess
import sys
import urllib.request

import openai
import pytest

from cft_ray.teacher.messages import build_messages, get_template
from cft_ray.testing.teacher_server import OfflineTeacherServer
from cft_ray.core.verdict import parse_verdict

CRITIQUE = get_template("cft-critique-v1")


def _ask(srv, question, response, **kw):
    client = openai.OpenAI(base_url=srv.base_url, api_key=kw.pop("api_key", "k"), max_retries=0)
    return client.chat.completions.create(
        model="gpt-4o", messages=build_messages(CRITIQUE, {"question": question, "response": response}), **kw
    )


def test_critique_against_reference_and_by_recomputing():
    with OfflineTeacherServer(references={"What is 6 x 7?": "42"}) as srv:
        right = _ask(srv, "What is 6 x 7?", "6 x 7 = 42, so \\boxed{42}.")
        wrong = _ask(srv, "What is 6 x 7?", "6 x 7 = 43, so the answer is 43")
        # no reference for this one: the server re-checks the steps
        slip = _ask(srv, "Ann has 3 and gets 4.", "Then 3 + 4 gives 8.\nThe answer is \\boxed{8}.")
        models = openai.OpenAI(base_url=srv.base_url, api_key="k").models.list()
        assert srv.request_count == 3 and srv.ok_count == 3
    assert parse_verdict(right.choices[0].message.content) == "right"
    assert right.choices[0].message.content.endswith("Conclusion: right [END]")
    assert parse_verdict(wrong.choices[0].message.content) == "wrong"
    assert "not 8" in slip.choices[0].message.content and parse_verdict(slip.choices[0].message.content) == "wrong"
    assert right.usage.prompt_tokens > 0 and right.usage.completion_tokens > 0
    assert right.choices[0].finish_reason == "stop"
    assert [m.id for m in models.data] == ["cft-ray-offline-teacher"]


@pytest.mark.parametrize(
    "fault, error",
    [
        ({"rate_429": 1.0, "retry_after_s": 2}, openai.RateLimitError),
        ({"rate_500": 1.0}, openai.InternalServerError),
        ({"rate_drop": 1.0}, openai.APIConnectionError),
        ({"rate_hang": 1.0, "hang_s": 5}, openai.APITimeoutError),
        ({"rate_malformed": 1.0}, ValueError),
    ],
)
def test_faults(fault, error):
    with OfflineTeacherServer(**fault) as srv:
        with pytest.raises(error) as caught:
            _ask(srv, "Q?", "A.", timeout=0.5)
        assert srv.request_count == 1
    if "retry_after_s" in fault:
        assert caught.value.response.headers["retry-after"] == "2.000"


@pytest.mark.parametrize("style, headers", [("whole", {"retry-after": "1"}),
                                            ("ms", {"retry-after": "1", "retry-after-ms": "300"}),
                                            ("none", {})])
def test_retry_after_styles(style, headers):
    with OfflineTeacherServer(rate_429=1.0, retry_after_s=0.3, retry_after=style) as srv:
        with pytest.raises(openai.RateLimitError) as caught:
            _ask(srv, "Q?", "A.")
    got = {k: v for k, v in caught.value.response.headers.items() if k.startswith("retry-after")}
    assert got == headers


def test_length_fault_and_bad_key():
    with OfflineTeacherServer(rate_length=1.0, api_key="right-key") as srv:
        reply = _ask(srv, "Q?", "Then 1 + 1 gives 2.", api_key="right-key")
        assert reply.choices[0].finish_reason == "length"
        with pytest.raises(openai.AuthenticationError):
            _ask(srv, "Q?", "A.", api_key="wrong-key")


def test_own_rate_limit_rejects_above_it():
    with OfflineTeacherServer(requests_per_minute=120) as srv:  # 2/s, burst 2
        statuses = []
        for _ in range(5):
            try:
                _ask(srv, "Q?", "A.")
                statuses.append(200)
            except openai.RateLimitError as exc:
                statuses.append(429)
                assert float(exc.response.headers["retry-after"]) > 0
        assert statuses.count(429) >= 2 and srv.rejected_count == statuses.count(429)
        assert srv.requests_by_hash.most_common(1)[0][1] == 5  # the same body, counted per hash


def test_small_burst_and_openai_limit_headers():
    # 6,000/min with a burst of 3: a quick run of 6 gets 3 through, and every reply says what is left
    with OfflineTeacherServer(requests_per_minute=6000, burst=3, retry_after="whole", ratelimit_headers=True) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="k", max_retries=0)
        replies = []
        for _ in range(6):
            try:
                replies.append(client.chat.completions.with_raw_response.create(
                    model="m", messages=[{"role": "user", "content": "Q?"}]).headers)
            except openai.RateLimitError as exc:
                replies.append(exc.response.headers)
        assert srv.ok_count + srv.rejected_count == 6 and 3 <= srv.ok_count <= 4
        assert {h["x-ratelimit-limit-requests"] for h in replies} == {"6000"}
        remaining = [int(h["x-ratelimit-remaining-requests"]) for h in replies]
        assert remaining[0] == 2 and min(remaining) == 0
        refused = [h for h in replies if "retry-after" in h]
        assert refused and {h["retry-after"] for h in refused} == {"1"}  # whole seconds, as many providers say


def test_runs_as_a_module(tmp_path):
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"question": "What is 1+1?", "reference_answer": "2"}) + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cft_ray.testing.teacher_server", "--port", str(port), "--references", str(refs)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert "serving" in proc.stdout.readline()
        base = f"http://127.0.0.1:{port}/v1"
        client = openai.OpenAI(base_url=base, api_key="k")
        reply = client.chat.completions.create(
            model="m", messages=build_messages(CRITIQUE, {"question": "What is 1+1?", "response": "\\boxed{3}"})
        )
        assert parse_verdict(reply.choices[0].message.content) == "wrong"
        stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats"))
        assert stats["request_count"] == 1
    finally:
        proc.terminate()
        proc.wait(10)
