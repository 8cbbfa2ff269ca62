"""An offline OpenAI-compatible teacher: real HTTP on loopback, deterministic critiques, faults on demand.

It stands in for the paid API (the smoke preset's teacher, the tests' and benchmarks' server) and speaks the
real protocol: ``POST /v1/chat/completions`` and ``GET /v1/models``, OpenAI JSON with ``usage``,
and OpenAI's Files and Batches API (:mod:`cft_ray.testing.batch_server`: batches answered by the
same teacher after ``batch_seconds``, lines failing at ``batch_fail_rate``).

How it writes a critique. The paper's prompt carries no reference answer, so the server is told
the references out of band: ``references`` maps question text to its reference answer (the
pipeline passes the rows' ``reference_answer`` column when it starts the server; a JSONL file of
``{"question", "reference_answer"}`` works from the command line). It takes the question and the
solution out of the user message, extracts the solution's final answer (last ``\\boxed{}``, else
the last number) and compares it with the reference. For a question it has no reference for, it
re-checks every ``a <op> b gives c`` / ``a <op> b = c`` step of the solution instead. Either way the
critique ends with the paper's ``Conclusion: right [END]`` or ``Conclusion: wrong [END]``.

Faults, each drawn per request at its configured rate: latency, 429 with ``Retry-After``, 500,
hangs, dropped connections, ``finish_reason=length`` and malformed JSON. ``requests_per_minute``
enforces the server's own limit, as providers do: a token bucket holding ``burst`` requests
(default one second's worth; many providers allow far less), 429 above it, injected faults
counting against it. How a 429 says when to come back is ``retry_after``, one of the styles real
services use: ``float`` (``Retry-After: 0.013``), ``whole`` (whole seconds, rounded up, never 0:
what most HTTP servers send), ``ms`` (``retry-after-ms`` beside whole seconds) or ``none``.
``ratelimit_headers`` adds OpenAI's ``x-ratelimit-limit/remaining/reset-requests`` to every reply,
429s included. The server counts every chat request it received
(``request_count``), those it answered with a result (``ok_count``) and how often each distinct
request body arrived (``requests_by_hash``), so a test can prove nothing was sent twice.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from cft_ray.core.extract import extract_answer
from cft_ray.ratelimit import TokenBucket
from cft_ray.testing.batch_server import BatchEndpoints

DEFAULT_MODEL = "cft-ray-offline-teacher"
RETRY_AFTER_STYLES = ("float", "whole", "ms", "none")
_STEP = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/x×])\s*(-?\d+(?:\.\d+)?)\s*(?:gives|=|is)\s*(-?\d+(?:\.\d+)?)")
_USER = re.compile(r"Question:\s*(?P<question>.*?)\n\s*\nSolution:\s*(?P<solution>.*)", re.S)


@dataclass
class Faults:
    """Per-request fault rates (0..1) and their parameters."""

    latency_s: float = 0.0
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    rate_500: float = 0.0
    rate_hang: float = 0.0
    hang_s: float = 3600.0
    rate_drop: float = 0.0
    rate_length: float = 0.0
    rate_malformed: float = 0.0


def count_tokens(text: str) -> int:
    """A rough, deterministic token count (words and punctuation marks)."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def _same_answer(a: str, b: str) -> bool:
    a, b = a.strip().strip("$").replace(",", ""), b.strip().strip("$").replace(",", "")
    try:
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))
    except ValueError:
        return a == b


def _check_steps(solution: str) -> tuple[list[str], int]:
    """Re-compute each arithmetic step; returns (notes on wrong steps, steps checked)."""
    ops = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
           "x": lambda x, y: x * y, "×": lambda x, y: x * y, "/": lambda x, y: x // y if x % y == 0 else x / y}
    wrong, checked = [], 0
    for a, op, b, c in _STEP.findall(solution):
        x, y, z = float(a), float(b), float(c)
        if op == "/" and y == 0:
            continue
        checked += 1
        if abs(ops[op](x, y) - z) > 1e-6:
            wrong.append(f"the step {a} {op} {b} gives {ops[op](x, y):g}, not {c}")
    return wrong, checked


def write_critique(question: str, solution: str, reference: str | None) -> str:
    """The offline teacher's critique of one solution, ending with the paper's conclusion line."""
    answer = extract_answer(solution) or None  # the eval stage's extractor, reference order
    if reference is not None:
        if answer is None:
            body, right = "The solution never states a final answer.", False
        elif _same_answer(answer, reference):
            body, right = f"The solution's final answer {answer} matches the correct result {reference}.", True
        else:
            body, right = f"The solution's final answer {answer} is incorrect; the correct result is {reference}.", False
    else:
        wrong, checked = _check_steps(solution)
        if wrong:
            body, right = "The solution makes an error: " + "; ".join(wrong) + ".", False
        else:
            body, right = f"Each of the {checked} computation steps checks out, giving {answer}.", True
    return f"{body}\nConclusion: {'right' if right else 'wrong'} [END]"


def write_answer(question: str, reference: str | None) -> str:
    """The SFT-teacher answer: the reference when known (the offline teacher cannot solve)."""
    return f"Working through the question carefully.\nAnswer: {reference if reference is not None else 'unknown'}"


class OfflineTeacherServer:
    """The offline teacher on ``127.0.0.1`` in a background thread; a context manager.

    ``with OfflineTeacherServer(latency_s=0.05, rate_429=0.1) as srv: srv.base_url`` (ends in /v1).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model: str = DEFAULT_MODEL,
        references: dict[str, str] | None = None,
        requests_per_minute: float | None = None,
        api_key: str | None = None,
        burst: float | None = None,
        retry_after: str = "float",
        ratelimit_headers: bool = False,
        seed: int = 0,
        batch_seconds: float = 0.0,
        batch_fail_rate: float = 0.0,
        batch_expire_fraction: float | None = None,
        **faults: float,
    ):
        self.host, self.port, self.model = host, port, model
        self.references = dict(references or {})
        self.api_key = api_key
        self.ratelimit_headers = ratelimit_headers
        self.faults = Faults(**faults)
        if retry_after not in RETRY_AFTER_STYLES:
            raise ValueError(f"retry_after must be one of {RETRY_AFTER_STYLES}, not {retry_after!r}")
        self.retry_after = retry_after
        self.requests_per_minute = requests_per_minute
        self._bucket = None
        if requests_per_minute:
            burst_s = burst / (requests_per_minute / 60) if burst else 1.0
            self._bucket = TokenBucket(requests_per_minute, burst_s=burst_s)
        self._rng = random.Random(seed)
        self.request_count = 0
        self.ok_count = 0
        self.rejected_count = 0  # 429s from the server's own limit
        self.requests_by_hash: collections.Counter[str] = collections.Counter()
        self.first_request_at = self.last_ok_at = None  # time.monotonic() stamps
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.batch = BatchEndpoints(self.complete, self._unauthorized, seconds_to_complete=batch_seconds,
                                    fail_rate=batch_fail_rate, expire_fraction=batch_expire_fraction, seed=seed)

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/stats", self._stats)
        self.batch.register(app)
        return app

    def start(self) -> "OfflineTeacherServer":
        started = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._runner = web.AppRunner(self.app(), shutdown_timeout=0.5, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="offline-teacher", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("offline teacher did not start within 30 s")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None

    def __enter__(self) -> "OfflineTeacherServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stats(self) -> dict:
        return {
            "request_count": self.request_count,
            "ok_count": self.ok_count,
            "rejected_count": self.rejected_count,
            "distinct_requests": len(self.requests_by_hash),
            "max_sends_of_one_request": max(self.requests_by_hash.values(), default=0),
            "busy_s": (self.last_ok_at - self.first_request_at) if self.last_ok_at else 0.0,
            **self.batch.stats(),
        }

    # ---- handlers --------------------------------------------------------------------------
    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}":
            return None
        return _error(401, "Incorrect API key provided.", "invalid_api_key")

    async def _models(self, request: web.Request) -> web.Response:
        denied = self._unauthorized(request)
        return denied or web.json_response(
            {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "cft-ray"}]}
        )

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.request_count += 1
        self.first_request_at = self.first_request_at or time.monotonic()
        denied = self._unauthorized(request)
        if denied:
            return denied
        raw = await request.read()
        try:
            body = json.loads(raw)
            user_message(body)
        except (ValueError, KeyError, StopIteration, TypeError):
            return _error(400, "request body must be JSON with a user message", "invalid_request_error")
        self.requests_by_hash[hashlib.sha256(raw).hexdigest()] += 1

        if self._bucket is not None:
            wait = self._bucket.try_take()
            if wait > 0:
                self.rejected_count += 1
                return _error(429, "Rate limit reached for requests", "rate_limit_exceeded",
                              {**self._retry_after_headers(wait), **self._limit_headers()})
        f, draw = self.faults, self._rng.random()
        if f.latency_s:
            await asyncio.sleep(f.latency_s)
        for rate, fault in ((f.rate_429, "429"), (f.rate_500, "500"), (f.rate_hang, "hang"),
                            (f.rate_drop, "drop"), (f.rate_malformed, "malformed"), (f.rate_length, "length")):
            if draw < rate:
                break
            draw -= rate
        else:
            fault = None
        if fault == "429":
            return _error(429, "Rate limit reached (injected)", "rate_limit_exceeded",
                          {**self._retry_after_headers(f.retry_after_s), **self._limit_headers()})
        if fault == "500":
            return _error(500, "The server had an error (injected)", "server_error")
        if fault == "hang":
            await asyncio.sleep(f.hang_s)
        if fault == "drop":
            request.transport.abort()  # the client sees the connection reset mid-request
            return web.Response(status=500)
        if fault == "malformed":
            return web.Response(status=200, text='{"id": "chatcmpl-broken", "choices": [', content_type="application/json")

        self.ok_count += 1
        self.last_ok_at = time.monotonic()
        return web.json_response(self.complete(body, truncated=fault == "length"), headers=self._limit_headers())

    def complete(self, body: dict, truncated: bool = False) -> dict:
        """The ``chat.completion`` object answering a request body (the batch endpoint's too)."""
        messages, user = body["messages"], user_message(body)
        content = self._reply(messages, user)
        finish = "stop"
        if truncated:
            content, finish = content[: max(1, len(content) // 3)], "length"
        prompt_tokens = sum(count_tokens(str(m.get("content", ""))) + 4 for m in messages)
        digest = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
        return {
            "id": f"chatcmpl-{digest}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": count_tokens(content),
                      "total_tokens": prompt_tokens + count_tokens(content)},
        }

    def _retry_after_headers(self, wait_s: float) -> dict[str, str]:
        if self.retry_after == "none":
            return {}
        whole = str(max(1, math.ceil(wait_s)))
        if self.retry_after == "whole":
            return {"Retry-After": whole}
        if self.retry_after == "ms":
            return {"Retry-After": whole, "retry-after-ms": str(max(1, round(wait_s * 1000)))}
        return {"Retry-After": f"{wait_s:.3f}"}

    def _limit_headers(self) -> dict[str, str]:
        """OpenAI's request-limit headers: the limit, what is left, when the bucket is full again."""
        if not (self.ratelimit_headers and self._bucket is not None):
            return {}
        level = self._bucket.peek()
        reset_s = (self._bucket.capacity - level) / self._bucket.rate
        return {"x-ratelimit-limit-requests": str(int(self.requests_per_minute)),
                "x-ratelimit-remaining-requests": str(max(0, int(level))),
                "x-ratelimit-reset-requests": f"{max(1, round(reset_s * 1000))}ms"}

    def _reply(self, messages: list[dict], user: str) -> str:
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        match = _USER.search(user)
        if "conclude your answer with 'Answer:" in system or match is None:
            question = user.split("Question:", 1)[-1].strip()
            return write_answer(question, self.references.get(question))
        question, solution = match["question"].strip(), match["solution"].strip()
        return write_critique(question, solution, self.references.get(question))


def user_message(body: dict) -> str:
    """The last user message of a chat request body; KeyError / StopIteration / TypeError if none."""
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


def _error(status: int, message: str, code: str, headers: dict | None = None) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": code, "param": None, "code": code}}, status=status, headers=headers
    )


def load_references(path: str | Path) -> dict[str, str]:
    """question -> reference_answer from a JSONL file of rows."""
    refs = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("reference_answer") is not None:
                refs[str(row["question"]).strip()] = str(row["reference_answer"])
    return refs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="offline OpenAI-compatible teacher on loopback")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--references", help="JSONL rows with question and reference_answer")
    p.add_argument("--requests-per-minute", type=float)
    p.add_argument("--burst", type=float, help="requests the server's bucket holds (default one second's worth)")
    p.add_argument("--retry-after", choices=RETRY_AFTER_STYLES, default="float", help="how a 429 says when to retry")
    p.add_argument("--ratelimit-headers", action="store_true", help="send OpenAI's x-ratelimit-* headers")
    p.add_argument("--api-key-env", help="require the key held in this environment variable")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-seconds", type=float, default=0.0, help="how long a batch takes to complete")
    p.add_argument("--batch-fail-rate", type=float, default=0.0, help="share of a batch's lines that fail")
    p.add_argument("--batch-expire-fraction", type=float, help="expire batches after this share of their lines")
    for name, field in Faults.__dataclass_fields__.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=field.default)
    args = p.parse_args(argv)
    import os

    faults = {name: getattr(args, name) for name in Faults.__dataclass_fields__}
    server = OfflineTeacherServer(
        args.host, args.port, model=args.model, seed=args.seed,
        references=load_references(args.references) if args.references else None,
        requests_per_minute=args.requests_per_minute, burst=args.burst, retry_after=args.retry_after,
        ratelimit_headers=args.ratelimit_headers, batch_seconds=args.batch_seconds,
        batch_fail_rate=args.batch_fail_rate, batch_expire_fraction=args.batch_expire_fraction,
        api_key=os.environ[args.api_key_env] if args.api_key_env else None, **faults,
    )
    with server:
        print(f"offline teacher serving {server.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
