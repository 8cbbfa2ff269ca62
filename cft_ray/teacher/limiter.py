"""One rate limit and one budget for every teacher actor in the cluster, learned from the server.

A single Ray actor holds the rate for every teacher actor on every node. Before each request a
caller reserves (budget, tokens, its share of the rate); after the reply it settles, saying how
the request went.

- **Pacing, not bursts.** A server's burst allowance may be as small as a few requests, and a
  paced stream never needs one. Each actor that is sending gets an equal share of the rate and
  spaces its own sends evenly at it (``reserve`` returns the actor's interval: the number of
  actors with requests reserved and not yet settled, over the rate; each actor also asks for
  it ten times a second, for the sends already queued). The spacing happens in the actor, at
  the moment of sending: a limiter handing out send times would see them bunched by the time
  they reach a busy actor's event loop.
- **The configured limit is a ceiling, not a truth.** The rate starts at ``requests_per_minute``
  and moves with what the server answers, in epochs of a few seconds of replies: an epoch whose
  share of 429s is low raises the rate half the way back to the rate that last drew 429s, then by
  2% of the ceiling (never above it); an epoch with more 429s lowers the rate to what the server
  accepted (rate x (1 - 429 share)). The next epoch then tells why: if the
  server accepted as many requests at the lower rate, the limit was real and the rate stays; if it
  accepted fewer, the 429s were not about our rate (an overloaded provider refuses a share of
  requests at any rate), so the rate goes back and that share is remembered as noise, decaying
  slowly so a lasting change is seen again.
- **The server's word.** ``x-ratelimit-limit-*`` lower the ceiling; ``x-ratelimit-remaining-*`` of 0
  pause every send until ``x-ratelimit-reset-*`` (``Retry-After`` is the one request's own wait,
  honoured by its caller, which then reserves a paced slot again, so waiting requests do not all
  wake at the same instant).
- **Tokens.** A tokens-per-minute bucket is charged each request's estimated prompt tokens plus
  ``max_tokens`` (as OpenAI counts them) and refunded what the reply did not use.

The same actor holds the dollar budget (estimates reserved up front, settled with the real cost)
and a stop flag raised by the first 401, so one bad key stops every actor at once.
"""

from __future__ import annotations

import collections
import logging
import math
import re
import time
from dataclasses import dataclass

import ray

from cft_ray.ratelimit import TokenBucket

log = logging.getLogger("cft_ray.teacher")

# 429 shares of an epoch's replies, beyond the remembered noise, that count as "the rate is too high".
TOLERATED_429_SHARE = 0.02
INCREASE_SHARE_OF_CEILING = 0.02
# At the lowered rate, 429s caused by our rate all but vanish; a share that stays is the server's noise.
NOISE_PERSISTS = 0.5
NOISE_DECAY = 0.995  # per epoch: a remembered noise share fades (over ~40 epochs), then is probed again
EPOCH_SECONDS = 2.0  # an epoch lasts at least this many seconds' worth of replies at its rate ...
EPOCH_MIN_REPLIES = 30  # ... and at least this many replies
MIN_RATE_SHARE = 0.02  # the rate never falls below this share of the ceiling


def seconds_from_text(text: str | None) -> float | None:
    """OpenAI's reset format (``1s``, ``6m0s``, ``20ms``) in seconds."""
    parts = re.findall(r"([\d.]+)(ms|s|m|h)", text or "")
    if not parts:
        return None
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(v) * unit[u] for v, u in parts)


@dataclass
class Epoch:
    """Replies to the requests reserved at one rate."""

    number: int
    rate: float  # requests a second
    replies: int = 0
    rejected: int = 0  # 429s

    @property
    def share_429(self) -> float:
        return self.rejected / self.replies if self.replies else 0.0

    @property
    def accepted_rate(self) -> float:
        return self.rate * (1 - self.share_429)

    @property
    def accepted_rate_sd(self) -> float:
        """The accepted rate's uncertainty from the epoch's share of 429s (binomial)."""
        s = self.share_429
        return self.rate * math.sqrt(s * (1 - s) / self.replies) if self.replies else 0.0


class RateController:
    """The request rate, moved by each epoch's share of 429s (plain Python, tested directly)."""

    def __init__(self, requests_per_minute: float):
        self.ceiling = requests_per_minute / 60
        self.noise = 0.0  # the share of 429s that does not depend on the rate
        self.epoch = Epoch(0, self.ceiling)
        self.probe: Epoch | None = None  # the epoch whose 429s made us lower the rate
        self.refused_at = self.ceiling  # the rate that last drew too many 429s

    @property
    def rate(self) -> float:
        return self.epoch.rate

    def lower_ceiling(self, requests_per_minute: float) -> None:
        if requests_per_minute / 60 < self.ceiling:
            self.ceiling = requests_per_minute / 60
            self._next(min(self.rate, self.ceiling))

    def record(self, epoch: int, rejected: bool) -> None:
        """One reply to a request reserved in ``epoch``; replies of older epochs are ignored."""
        if epoch != self.epoch.number:
            return
        self.epoch.replies += 1
        self.epoch.rejected += rejected
        if self.epoch.replies >= max(EPOCH_MIN_REPLIES, EPOCH_SECONDS * self.epoch.rate):
            self._decide()

    def _decide(self) -> None:
        done, probe = self.epoch, self.probe
        self.probe = None
        # At a real limit the server accepts as many at the lower rate; with 429s that come at any
        # rate it accepts fewer, in step with what we took off.
        lost = (probe.accepted_rate - done.accepted_rate) / ((probe.rate - done.rate) * (1 - probe.share_429) or 1) \
            if probe is not None else 0.0
        # The evidence must be more than chance: a share within the tolerance, or an accepted rate
        # that fell by less than its binomial spread, is what a real limit's 429s also look like
        # near the limit (few replies, small random shares).
        if probe is not None:
            persists = done.share_429 >= max(NOISE_PERSISTS * probe.share_429, TOLERATED_429_SHARE)
            fell = probe.accepted_rate - done.accepted_rate > 2 * math.hypot(probe.accepted_rate_sd,
                                                                             done.accepted_rate_sd)
        if probe is not None and persists and fell and lost >= 0.5:
            # Less went through at the lower rate: the server refuses a share whatever we send.
            self.noise = min(probe.share_429, done.share_429)
            log.info("teacher: %.0f%% of requests get 429 at any rate; keeping %.1f req/s",
                     100 * self.noise, probe.rate)
            self._next(probe.rate)
            return
        self.noise *= NOISE_DECAY
        # Beyond the noise by more than chance: an epoch's share of noise 429s varies by about
        # sqrt(noise (1 - noise) / replies), and a real limit overshot shows far above that.
        chance = 2 * math.sqrt(self.noise * (1 - self.noise) / done.replies)
        if done.share_429 - self.noise > TOLERATED_429_SHARE + chance:
            self.probe, self.refused_at = done, done.rate
            lowered = max(MIN_RATE_SHARE * self.ceiling, done.rate * (1 - (done.share_429 - self.noise)))
            log.info("teacher: %.0f%% 429s at %.1f req/s; lowering to %.1f", 100 * done.share_429, done.rate, lowered)
            self._next(lowered)
        else:
            # Back toward the rate that last drew 429s in large steps (half the way: a burst of
            # 429s is often a moment's congestion), then past it in small ones.
            step = max(INCREASE_SHARE_OF_CEILING * self.ceiling, (self.refused_at - done.rate) / 2)
            self._next(min(self.ceiling, done.rate + step))

    def _next(self, rate: float) -> None:
        self.epoch = Epoch(self.epoch.number + 1, rate)


@ray.remote(num_cpus=0, max_concurrency=10_000)  # every waiting request of every actor holds a call
class SharedLimiter:
    def __init__(self, requests_per_minute: float, tokens_per_minute: float, budget_usd: float | None):
        self.control = RateController(requests_per_minute)
        self.in_flight: collections.Counter[str] = collections.Counter()  # actor -> reserved, not settled
        self.tokens = TokenBucket(tokens_per_minute)
        self.paused_until = 0.0  # monotonic time before which nothing may be sent
        self.budget_usd = budget_usd
        self.committed_usd = 0.0  # spent plus reserved for requests in flight
        self.stop_reason: str | None = None
        self.counts = {"ok": 0, "error": 0, "cached": 0, "sent": 0, "rejected": 0}
        self.spent_usd = 0.0
        self.started = self.last_log = time.monotonic()
        self.first_send_at: float | None = None  # wall clock: the driver compares it with its own start

    async def reserve(self, tokens: float, est_cost: float, sender: str) -> tuple[str, float | str, int, float]:
        """("go", seconds to wait, epoch, the sender's pacing interval) | ("stop", why, -1, 0)
        | ("budget", why, -1, 0). ``sender`` names the calling actor."""
        if self.stop_reason:
            return "stop", self.stop_reason, -1, 0.0
        if self.budget_usd is not None and self.committed_usd + est_cost > self.budget_usd:
            return "budget", f"budget ${self.budget_usd:g} reached (${self.committed_usd:.4f} committed)", -1, 0.0
        self.committed_usd += est_cost
        now = time.monotonic()
        self.counts["sent"] += 1
        self.first_send_at = self.first_send_at or time.time()
        self.in_flight[sender] += 1
        wait = max(self.tokens.reserve(tokens), self.paused_until - now, 0.0)
        return "go", wait, self.control.epoch.number, await self.share(sender)

    async def share(self, sender: str) -> float:
        """Seconds between ``sender``'s sends: every actor with requests in flight (and the asking
        one) gets an equal share of the rate."""
        active = sum(n > 0 for s, n in self.in_flight.items() if s != sender) + 1
        return active / self.control.rate

    async def settle(self, sender: str, epoch: int, tokens_reserved: float, tokens_used: float, est_cost: float,
                     cost: float, status: int | None = None, headers: dict[str, str] | None = None) -> None:
        """After a reply (``status`` its HTTP code; None: no reply) or a failure to get one."""
        self.in_flight[sender] -= 1
        self.tokens.refund(max(0.0, tokens_reserved - tokens_used))
        self.committed_usd += cost - est_cost
        self.spent_usd += cost
        if status is not None:
            self.control.record(epoch, rejected=status == 429)
            self.counts["rejected"] += status == 429
        if headers:
            self._follow(headers)

    def _follow(self, headers: dict[str, str]) -> None:
        """The server's own view of the limits: a lower limit, or none left until a reset."""
        headers = {k.lower(): v for k, v in headers.items()}
        limit = headers.get("x-ratelimit-limit-requests")
        if limit and float(limit) < 60 * self.control.ceiling:
            log.info("teacher: the server's limit is %s requests/min, lowering ours", limit)
            self.control.lower_ceiling(float(limit))
        limit = headers.get("x-ratelimit-limit-tokens")
        if limit and float(limit) < self.tokens.per_minute:
            self.tokens.set_rate(float(limit))
        for kind in ("requests", "tokens"):
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            reset = seconds_from_text(headers.get(f"x-ratelimit-reset-{kind}"))
            if remaining is not None and float(remaining) <= 0 and reset:
                self.paused_until = max(self.paused_until, time.monotonic() + reset)

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
            c = self.counts
            done = c["ok"] + c["error"]
            print(f"teacher: {done} rows done (ok {c['ok']}, cached {c['cached']}, error {c['error']}), "
                  f"{c['sent']} requests ({c['rejected']} 429), ${self.spent_usd:.4f}, "
                  f"{done / (now - self.started):.1f} rows/s, pacing {60 * self.control.rate:.0f}/min", flush=True)

    async def snapshot(self) -> dict:
        return {**self.counts, "spent_usd": self.spent_usd, "stop_reason": self.stop_reason,
                "first_send_at": self.first_send_at,
                "rate_per_minute": 60 * self.control.rate, "noise_429_share": self.control.noise}
