"""A token bucket: the teacher limiter's request and token budgets, and the offline server's own limit."""

from __future__ import annotations

import time


class TokenBucket:
    """``per_minute`` units a minute, holding at most ``burst_s`` seconds' worth."""

    def __init__(self, per_minute: float, burst_s: float = 1.0):
        self.set_rate(per_minute, burst_s)
        self.level, self.stamp = self.capacity, time.monotonic()

    def set_rate(self, per_minute: float, burst_s: float = 1.0) -> None:
        self.per_minute, self.rate = per_minute, per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def reserve(self, amount: float) -> float:
        """Take ``amount`` now, going below zero if need be (callers then queue in arrival
        order); the seconds until the bucket covers it."""
        self._refill()
        self.level -= amount
        return 0.0 if self.level >= 0 else -self.level / self.rate

    def try_take(self, amount: float = 1.0) -> float:
        """Take ``amount`` only if the bucket holds it: 0 when taken, else the seconds until it would."""
        self._refill()
        if self.level >= amount:
            self.level -= amount
            return 0.0
        return (amount - self.level) / self.rate

    def peek(self) -> float:
        """What the bucket holds now (below zero while reservations queue)."""
        self._refill()
        return self.level

    def refund(self, amount: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + amount)
