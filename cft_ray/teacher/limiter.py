"""One rate limit and one budget for every teacher actor in the cluster.

A single Ray actor holds a requests-per-minute and a tokens-per-minute bucket. A caller reserves a
slot before each request (one request, its estimated prompt tokens plus ``max_tokens``, as the
OpenAI limiter counts them) and gets back how long to wait: reservations may drive a bucket below
zero, which queues callers in arrival order without the actor ever sleeping. After the reply the
caller settles: unused tokens are refunded, and ``x-ratelimit-*`` headers, when the server sends
them, lower the limits to what the server says. Servers that send none (a local vLLM) are kept in
check by each actor's concurrency cap instead.

The same actor holds the dollar budget (estimates reserved up front, settled with the real cost)
and a stop flag raised by the first 401, so one bad key stops every actor at once.
"""

from __future__ import annotations

import logging
import re
import time

import ray

from cft_ray.ratelimit import TokenBucket

log = logging.getLogger("cft_ray.teacher")


def _seconds(text: str) -> float | None:
    """OpenAI's reset format (``1s``, ``6m0s``, ``20ms``) in seconds."""
    parts = re.findall(r"([\d.]+)(ms|s|m|h)", text or "")
    if not parts:
        return None
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(v) * unit[u] for v, u in parts)


@ray.remote(num_cpus=0)
class SharedLimiter:
    def __init__(self, requests_per_minute: float, tokens_per_minute: float, budget_usd: float | None):
        # A quarter second of burst, below a server's usual one second: requests leave the
        # actors with some scheduling jitter, and the margin keeps bunched ones under its limit.
        self.requests = TokenBucket(requests_per_minute, burst_s=0.25)
        self.tokens = TokenBucket(tokens_per_minute)
        self.budget_usd = budget_usd
        self.committed_usd = 0.0  # spent plus reserved for requests in flight
        self.stop_reason: str | None = None
        self.counts = {"ok": 0, "error": 0, "cached": 0}
        self.spent_usd = 0.0
        self.started = self.last_log = time.monotonic()

    async def reserve(self, tokens: float, est_cost: float) -> tuple[str, float | str]:
        """("go", seconds to wait) | ("stop", why) | ("budget", why)."""
        if self.stop_reason:
            return "stop", self.stop_reason
        if self.budget_usd is not None and self.committed_usd + est_cost > self.budget_usd:
            return "budget", f"budget ${self.budget_usd:g} reached (${self.committed_usd:.4f} committed)"
        self.committed_usd += est_cost
        return "go", max(self.requests.reserve(1), self.tokens.reserve(tokens))

    async def settle(self, tokens_reserved: float, tokens_used: float, est_cost: float, cost: float,
                     headers: dict[str, str] | None = None) -> None:
        self.tokens.refund(max(0.0, tokens_reserved - tokens_used))
        self.committed_usd += cost - est_cost
        self.spent_usd += cost
        if headers:
            self._learn(headers)

    def _learn(self, headers: dict[str, str]) -> None:
        """Follow the server's own view of the limits (never above what the config allows)."""
        for bucket, kind in ((self.requests, "requests"), (self.tokens, "tokens")):
            limit = headers.get(f"x-ratelimit-limit-{kind}")
            if limit and float(limit) < bucket.per_minute:
                log.info("teacher: server limit %s/min for %s, lowering ours", limit, kind)
                bucket.set_rate(float(limit), burst_s=0.25 if kind == "requests" else 1.0)
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if remaining is not None and float(remaining) < bucket.level:
                bucket.level = float(remaining)

    async def stop(self, reason: str) -> None:
        if not self.stop_reason:
            self.stop_reason = reason

    async def report(self, ok: int, error: int, cached: int) -> None:
        """Counts of finished rows; logs a progress line at most every 5 s."""
        self.counts["ok"] += ok
        self.counts["error"] += error
        self.counts["cached"] += cached
        now = time.monotonic()
        if now - self.last_log >= 5:
            self.last_log = now
            done = self.counts["ok"] + self.counts["error"]
            print(f"teacher: {done} rows done (ok {self.counts['ok']}, cached {self.counts['cached']}, "
                  f"error {self.counts['error']}), ${self.spent_usd:.4f}, {done / (now - self.started):.1f} rows/s",
                  flush=True)

    async def snapshot(self) -> dict:
        return {**self.counts, "spent_usd": self.spent_usd, "stop_reason": self.stop_reason}
