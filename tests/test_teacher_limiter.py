"""The shared limiter: reservations queue callers, headers lower the limits, a 401 stops everyone."""

import pytest
import ray

from cft_ray.ratelimit import TokenBucket
from cft_ray.teacher.limiter import SharedLimiter, _seconds


def test_bucket_reservations_queue_in_arrival_order():
    bucket = TokenBucket(per_minute=600, burst_s=1.0)  # 10/s, burst 10
    waits = [bucket.reserve(1) for _ in range(15)]
    assert waits[:9] == [0.0] * 9
    assert waits[10:] == sorted(waits[10:]) and waits[14] == pytest.approx(0.5, abs=0.05)
    bucket.refund(5)
    assert bucket.reserve(1) < waits[14]


def test_reset_durations():
    assert _seconds("1s") == 1 and _seconds("6m0s") == 360 and _seconds("20ms") == pytest.approx(0.02)
    assert _seconds("") is None


def test_limiter_learns_headers_budget_and_stop(ray_cluster):
    limiter = SharedLimiter.remote(6000, 1e9, budget_usd=1.0)
    # the server says 60/min with nothing left: the next reservation must wait about a second
    ray.get(limiter.settle.remote(10, 10, 0.0, 0.0, {"x-ratelimit-limit-requests": "60",
                                                    "x-ratelimit-remaining-requests": "0"}))
    decision, wait = ray.get(limiter.reserve.remote(10, 0.1))
    assert decision == "go" and 0.5 < wait <= 1.1
    # budget: reserved estimates count until settled
    assert ray.get(limiter.reserve.remote(10, 0.95))[0] == "budget"
    ray.get(limiter.settle.remote(10, 10, 0.1, 0.02))  # the first call cost less than estimated
    assert ray.get(limiter.reserve.remote(10, 0.9))[0] == "go"
    ray.get(limiter.stop.remote("the API key was refused"))
    assert ray.get(limiter.reserve.remote(10, 0.0)) == ("stop", "the API key was refused")
    ray.kill(limiter)
