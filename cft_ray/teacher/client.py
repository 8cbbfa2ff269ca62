"""The Ray Data actor that calls the teacher: a batch's requests concurrently, each row ending
as a result or an error record, never an exception that would fail the dataset.

Per request: check the row, look the request up in the cache, reserve a slot from the shared
limiter, call through the official ``openai`` async client, retry what is worth retrying
(429/408/5xx, timeouts, connection errors, malformed replies, ``finish_reason=length`` up to a
limit) with exponential backoff and jitter that honours ``Retry-After``, and cache the answer
the moment it arrives, so a killed job loses at most the requests in flight.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
import uuid
from dataclasses import dataclass

import openai
import pandas as pd

from cft_ray.config import ConfigError, TeacherConfig
from cft_ray.core.verdict import parse_verdict
from cft_ray.teacher.cache import ResponseCache, request_key
from cft_ray.teacher.limiter import seconds_from_text
from cft_ray.teacher.messages import Template, build_messages, get_template

RESULT_COLUMNS = ["critique", "verdict", "finish_reason", "prompt_tokens", "completion_tokens", "cost_usd",
                  "model", "attempts", "status", "error", "cached", "request_key"]


class TeacherAuthError(ConfigError):
    """The endpoint refused the API key; nothing was sent."""


class Secret:
    """An API key that never prints: its repr and str are masked."""

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Endpoint:
    """What is resolved only when a run starts: the URL (the offline teacher's port), the prompt
    template and where answers are cached. Everything else comes from the TeacherConfig."""

    base_url: str
    template: str
    cache_uri: str


# After a stall, this many sends may go early to make up for it; more would arrive as a burst.
CATCH_UP_SENDS = 2
SHARE_REFRESH_S = 0.1  # how often an actor asks for its share of the rate
# A 429 does not use up one of max_attempts (nothing was processed); this many per attempt do.
REFUSALS_PER_ATTEMPT = 10
# Exponential backoff with full jitter: the first retry waits up to 0.5 s, never more than 30 s.
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0


def estimate_tokens(messages: list[dict]) -> int:
    """Prompt tokens without a tokenizer download: ~4 characters a token, 4 per message."""
    return sum(math.ceil(len(m["content"]) / 4) + 4 for m in messages)


def check_row(row: dict, template: Template, config: TeacherConfig) -> tuple[str, str] | None:
    """(error class, reason) when a row cannot be sent, else None."""
    for field in template.fields:
        value = row.get(field)
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return "BadRow", f"missing {field}"
        if not isinstance(value, str):
            return "BadRow", f"{field} is {type(value).__name__}, not a string"
        if not value.strip():
            return "BadRow", f"empty {field}"
    est = estimate_tokens(build_messages(template, row))
    if est + config.max_tokens > config.max_context_tokens:
        return "ContextTooLong", (f"about {est} prompt tokens + max_tokens {config.max_tokens} "
                                  f"exceed the model's {config.max_context_tokens}")
    return None


def scrub(text: str, secret: Secret) -> str:
    """Error text as it may be stored: no key, not even the masked prefix some APIs echo."""
    text = text.replace(secret.reveal(), "***") if secret.reveal() else text
    return re.sub(r"sk-[A-Za-z0-9*_\-]{4,}", "sk-***", text)[:500]


def _limit_headers(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")}


def retry_after(headers) -> float | None:
    """When the server says to come back, in seconds: ``retry-after-ms`` (the precise one),
    ``Retry-After`` (seconds; an HTTP date is read as 'later', 1 s), else ``x-ratelimit-reset-requests``."""
    if headers is None:
        return None
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    if headers.get("retry-after"):
        try:
            return max(0.0, float(headers["retry-after"]))
        except ValueError:
            return 1.0
    return seconds_from_text(headers.get("x-ratelimit-reset-requests"))


def reply_record(reply, config: TeacherConfig, attempts: int, est_prompt_tokens: int = 0,
                 price_factor: float = 1.0) -> dict:
    """A chat completion as the cache keeps it, priced at ``price_factor`` of the online price:
    one shape for the online path and the Batch API's output. A reply without usage counts
    ``est_prompt_tokens`` prompt tokens and no completion tokens."""
    usage = reply.usage
    p_tok, c_tok = (usage.prompt_tokens, usage.completion_tokens) if usage else (est_prompt_tokens, 0)
    prompt_price, completion_price = config.price_per_token
    choice = reply.choices[0] if reply.choices else None
    return {"content": choice.message.content if choice else None,
            "finish_reason": (choice.finish_reason or "") if choice else "",
            "prompt_tokens": p_tok, "completion_tokens": c_tok,
            "cost_usd": (p_tok * prompt_price + c_tok * completion_price) * price_factor,
            "model": reply.model or config.model, "attempts": attempts}


def classify(exc: Exception) -> tuple[str, bool]:
    """(error class for the record, worth retrying?)."""
    if isinstance(exc, openai.APITimeoutError):
        return "Timeout", True
    if isinstance(exc, openai.APIConnectionError):
        return "ConnectionError", True
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return type(exc).__name__, status in (408, 409, 429) or status >= 500
    if isinstance(exc, (ValueError, openai.APIResponseValidationError)):
        return "MalformedResponse", True  # a broken body from a flaky proxy: ask again
    return type(exc).__name__, False


class TeacherWorker:
    """``map_batches`` callable class (async: Ray Data runs several batches of one actor at once)."""

    def __init__(self, config: TeacherConfig, endpoint: Endpoint, api_key: Secret, limiter):
        self.config, self.endpoint = config, endpoint
        self.key = api_key
        self.limiter = limiter
        self.template = get_template(endpoint.template)
        self.cache = ResponseCache(endpoint.cache_uri)
        self._client: openai.AsyncOpenAI | None = None
        self._slots: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Task] = {}  # identical rows share one request
        self._next_send = 0.0  # this actor's next send slot (monotonic)
        self._interval = 0.0  # seconds between this actor's sends: its share of the rate
        self._gate: asyncio.Lock | None = None  # one send decision at a time, first come first served
        self._share_task: asyncio.Future | None = None
        self.name = uuid.uuid4().hex  # for the limiter's count of actors sharing the rate

    async def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self._client is None:  # created inside Ray Data's event loop, used only there
            self._client = openai.AsyncOpenAI(base_url=self.endpoint.base_url, api_key=self.key.reveal(),
                                              max_retries=0, timeout=self.config.request_timeout_s)
            self._slots = asyncio.Semaphore(self.config.max_concurrency)
            self._gate = asyncio.Lock()
            self._share_task = asyncio.ensure_future(self._follow_share())
        results = await asyncio.gather(*(self._row(row) for row in batch.to_dict("records")))
        columns = list(dict.fromkeys([*RESULT_COLUMNS, self.template.output_column]))
        out = pd.concat([batch.drop(columns=columns, errors="ignore").reset_index(drop=True),
                         pd.DataFrame(results, columns=columns)], axis=1)
        statuses = [r["status"] for r in results]
        await self.limiter.report.remote(statuses.count("ok"), statuses.count("error"),
                                         sum(bool(r["cached"]) for r in results))
        return out

    # ---- one row ---------------------------------------------------------------------------
    async def _row(self, row: dict) -> dict:
        problem = check_row(row, self.template, self.config)
        if problem:
            return self._error(*problem)
        messages = build_messages(self.template, row)
        key = request_key(self.endpoint.base_url, self.config.model, messages, self.config.sampling)
        hit = await asyncio.to_thread(self.cache.get, key)
        if hit is not None:
            return self._result(hit, key, cached=True)
        if key not in self._inflight:
            self._inflight[key] = asyncio.ensure_future(self._request(messages, estimate_tokens(messages), key))
            self._inflight[key].add_done_callback(lambda _t, k=key: self._inflight.pop(k, None))
        return await asyncio.shield(self._inflight[key])

    async def _request(self, messages: list[dict], est: int, key: str) -> dict:
        c = self.config
        prompt_price, completion_price = c.price_per_token
        charge = est + c.max_tokens
        est_cost = est * prompt_price + c.est_completion_tokens * completion_price
        spent, attempts, length_retries, error = 0.0, 0, 0, ("NotSent", "")
        refused = 0  # 429s: the server saying "not now", not a failure of the request
        while attempts - refused < c.max_attempts and refused < REFUSALS_PER_ATTEMPT * c.max_attempts:
            wait_hint = None
            async with self._slots:
                decision, detail, epoch, interval = await self.limiter.reserve.remote(charge, est_cost, self.name)
                if decision == "budget":
                    return self._error("BudgetExceeded", f"{detail}; not sent, rerun to resume", attempts, spent)
                if decision == "stop":
                    return self._error("Stopped", f"not sent: {detail}", attempts, spent)
                if detail:
                    await asyncio.sleep(detail)  # tokens per minute, or the server's reset
                self._interval = interval  # the latest word on this actor's share, for every queued send
                await self._keep_spacing()
                attempts += 1
                try:
                    raw = await self._client.chat.completions.with_raw_response.create(
                        model=c.model, messages=messages, **c.sampling)
                    reply = raw.parse()
                except Exception as exc:  # every failure becomes a retry or an error record
                    response = getattr(exc, "response", None)
                    headers = response.headers if response is not None else None
                    await self.limiter.settle.remote(self.name, epoch, charge, 0, est_cost, 0.0,
                                                     getattr(exc, "status_code", None),
                                                     _limit_headers(headers) if headers is not None else None)
                    kind, retryable = classify(exc)
                    error = (kind, scrub(str(exc), self.key))
                    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
                        await self.limiter.stop.remote(f"the API key was refused ({kind})")
                    if not retryable:
                        return self._error(kind, error[1], attempts, spent)
                    wait_hint = retry_after(headers)
                    refused += isinstance(exc, openai.RateLimitError)
                else:
                    record = reply_record(reply, c, attempts, est_prompt_tokens=est)
                    cost, content = record["cost_usd"], record["content"]
                    spent += cost
                    await self.limiter.settle.remote(self.name, epoch, charge,
                                                     record["prompt_tokens"] + record["completion_tokens"],
                                                     est_cost, cost, 200, _limit_headers(raw.headers) or None)
                    if not content:
                        error = ("EmptyReply", "the teacher returned no text")
                    elif record["finish_reason"] == "length":
                        if length_retries >= c.max_length_retries:
                            return {**self._result(record, key, cached=False), "status": "error",
                                    "error": f"LengthLimit: cut at max_tokens after {attempts} attempts",
                                    "verdict": "none", "cost_usd": spent}
                        length_retries += 1
                        error = ("LengthLimit", "cut at max_tokens")
                        continue  # retry at once: it was not an overload
                    else:
                        await asyncio.to_thread(self.cache.put, key, record)
                        return {**self._result(record, key, cached=False), "cost_usd": spent}
            await asyncio.sleep(self._backoff(attempts, wait_hint))
        return self._error(error[0], f"gave up after {attempts} attempts: {error[1]}", attempts, spent)

    async def _follow_share(self) -> None:
        """Keeps this actor's interval current for the sends queued in its gate: they reserved
        up to seconds ago, and another actor that starts sending meanwhile halves this one's share."""
        while True:
            self._interval = await self.limiter.share.remote(self.name)
            await asyncio.sleep(SHARE_REFRESH_S)

    async def _keep_spacing(self) -> None:
        """This actor's sends, its current interval apart, one at a time in the order they asked. A send
        that wakes late (the event loop was busy) does not let the ones behind it catch up at
        once: at most CATCH_UP_SENDS go early, so a stall never turns into a burst the server refuses."""
        async with self._gate:
            now = time.monotonic()
            self._next_send = max(self._next_send, now - CATCH_UP_SENDS * self._interval)
            if self._next_send > now:
                await asyncio.sleep(self._next_send - now)
            self._next_send += self._interval

    def _backoff(self, attempt: int, wait_hint: float | None) -> float:
        """The server's wait when it gave one, stretched by up to 10% so the requests told the same
        instant do not all come back at it (they then queue for paced slots again); otherwise
        exponential backoff with full jitter."""
        if wait_hint is not None:
            return wait_hint * random.uniform(1.0, 1.1)
        return random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))

    # ---- records ---------------------------------------------------------------------------
    def _result(self, record: dict, key: str, cached: bool) -> dict:
        # Text columns are never None: a part whose rows all lack a value would be written with
        # Arrow's null type, and the parts could no longer be read as one table.
        out = {**record, "status": "ok", "error": "", "cached": cached, "request_key": key,
               "attempts": 0 if cached else record["attempts"]}
        text = out.pop("content")
        if self.template.output_column == "critique":
            out.update(critique=text, verdict=parse_verdict(text))
        else:
            out.update(critique="", verdict="none", **{self.template.output_column: text})
        return out

    def _error(self, kind: str, message: str, attempts: int = 0, spent: float = 0.0) -> dict:
        return {"critique": "", "verdict": "none", "finish_reason": "", "prompt_tokens": 0,
                "completion_tokens": 0, "cost_usd": spent, "model": self.config.model, "attempts": attempts,
                "status": "error", "error": f"{kind}: {message}", "cached": False, "request_key": "",
                self.template.output_column: ""}
