"""The shared limiter: paced sends, a rate learned from 429s, the server's headers, budget and stop."""

import random
import time

import pytest
import ray

from cft_ray.ratelimit import TokenBucket
from cft_ray.teacher.client import retry_after
from cft_ray.teacher.limiter import RateController, SharedLimiter, seconds_from_text


def test_bucket_reservations_queue_in_arrival_order():
    bucket = TokenBucket(per_minute=600, burst_s=1.0)  # 10/s, burst 10
    waits = [bucket.reserve(1) for _ in range(15)]
    assert waits[:9] == [0.0] * 9
    assert waits[10:] == sorted(waits[10:]) and waits[14] == pytest.approx(0.5, abs=0.05)
    bucket.refund(5)
    assert bucket.reserve(1) < waits[14]


def test_reset_durations_and_retry_after_headers():
    assert seconds_from_text("1s") == 1 and seconds_from_text("6m0s") == 360
    assert seconds_from_text("20ms") == pytest.approx(0.02) and seconds_from_text("") is None
    assert retry_after({"retry-after-ms": "250", "retry-after": "1"}) == 0.25  # the precise one wins
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}) == 1.0  # a date: 'later'
    assert retry_after({"x-ratelimit-reset-requests": "120ms"}) == pytest.approx(0.12)
    assert retry_after({}) is None and retry_after(None) is None


def _drive(limit: float, told: float, noise: float, seconds: float = 120.0, seed: int = 0) -> tuple[float, float]:
    """A server refusing what exceeds ``limit`` req/s, plus a share ``noise`` of everything;
    returns (mean rate over the second half, 429 share)."""
    rng, control = random.Random(seed), RateController(told * 60)
    rates, sent, rejected = [], 0, 0
    for _ in range(int(seconds * 10)):  # 0.1 s steps
        rate, epoch = control.rate, control.epoch.number
        for _ in range(int(rate / 10)):
            refused = (rate > limit and rng.random() < (rate - limit) / rate) or rng.random() < noise
            control.record(epoch, refused)
            sent, rejected = sent + 1, rejected + refused
        rates.append(control.rate)
    half = rates[len(rates) // 2:]
    return sum(half) / len(half), rejected / sent


def test_rate_stays_at_a_true_limit_and_finds_an_overstated_one():
    rate, share = _drive(limit=100, told=100, noise=0.0)
    assert rate == 100 and share == 0
    rate, share = _drive(limit=50, told=100, noise=0.0)  # told twice the real limit
    assert 45 <= rate <= 60 and share < 0.12


def test_429s_that_come_at_any_rate_do_not_drag_the_rate_down():
    rate, share = _drive(limit=100, told=100, noise=0.10)
    assert rate >= 95 and share == pytest.approx(0.10, abs=0.02)
    rate, _ = _drive(limit=100, told=200, noise=0.10)  # overstated and noisy: near the limit, not the ceiling
    assert 90 <= rate <= 110  # noise hides part of the real limit: it settles within 10% of it


def test_limiter_shares_the_rate_follows_headers_and_holds_budget_and_stop(ray_cluster):
    limiter = SharedLimiter.remote(600, 1e9, budget_usd=1.0)  # 10 requests a second

    replies = ray.get([limiter.reserve.remote(10, 0.01, "actor-a") for _ in range(5)])
    assert [r[0] for r in replies] == ["go"] * 5
    assert [r[1] for r in replies] == [0.0] * 5  # no wait handed out: the actor spaces its own sends ...
    assert replies[-1][3] == pytest.approx(0.1)  # ... 0.1 s apart while it is the only sender
    second = ray.get(limiter.reserve.remote(10, 0.01, "actor-b"))
    assert second[3] == pytest.approx(0.2)  # two actors with requests in flight: each gets half the rate
    ray.get(limiter.settle.remote("actor-b", second[2], 10, 10, 0.01, 0.01, 200))
    assert ray.get(limiter.reserve.remote(10, 0.01, "actor-a"))[3] == pytest.approx(0.1)  # b is done: a has it all
    # the server says nothing is left for a second: the next send waits for the reset
    ray.get(limiter.settle.remote("actor-a", replies[0][2], 10, 10, 0.01, 0.01, 200,
                                  {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}))
    decision, wait, _, _ = ray.get(limiter.reserve.remote(10, 0.01, "actor-a"))
    assert decision == "go" and 0.8 <= wait <= 1.0
    # budget: reserved estimates count until settled
    assert ray.get(limiter.reserve.remote(10, 0.99, "actor-a"))[0] == "budget"
    ray.get(limiter.settle.remote("actor-a", 0, 10, 10, 0.01, 0.0, 200))  # a call cost less than estimated
    assert ray.get(limiter.reserve.remote(10, 0.9, "actor-a"))[0] == "go"
    ray.get(limiter.stop.remote("the API key was refused"))
    assert ray.get(limiter.reserve.remote(10, 0.0, "actor-a")) == ("stop", "the API key was refused", -1, 0.0)
    snapshot = ray.get(limiter.snapshot.remote())
    assert snapshot["sent"] == 9 and snapshot["rate_per_minute"] == 600
    ray.kill(limiter)
