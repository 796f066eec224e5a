"""TokenBucket: bursts allowed, then refused, refilled at the configured rate."""

from __future__ import annotations

import time

from notifications.throttle import TokenBucket


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def takes(bucket: TokenBucket, count: int) -> list[bool]:
    return [bucket.take() for _ in range(count)]


def test_burst_allowed_then_refused() -> None:
    bucket = TokenBucket(rate=10, burst=40, clock=FakeClock())
    assert takes(bucket, 40) == [True] * 40
    assert takes(bucket, 3) == [False] * 3


def test_refills_at_rate() -> None:
    clock = FakeClock()
    # Powers of two keep the fake clock's arithmetic exact.
    bucket = TokenBucket(rate=8, burst=5, clock=clock)
    takes(bucket, 5)
    assert not bucket.take()
    clock.advance(0.0625)  # half a token
    assert not bucket.take()
    clock.advance(0.0625)  # one token in all
    assert bucket.take()
    assert not bucket.take()
    clock.advance(0.375)  # three tokens
    assert takes(bucket, 4) == [True, True, True, False]


def test_refused_takes_do_not_spend_tokens() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.take()
    assert takes(bucket, 100) == [False] * 100
    clock.advance(1.0)
    assert bucket.take()


def test_refill_is_capped_at_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    takes(bucket, 3)
    clock.advance(3600)
    assert takes(bucket, 4) == [True, True, True, False]


def test_sustained_rate_is_allowed_forever() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=8, burst=2, clock=clock)
    for _ in range(1000):
        clock.advance(0.125)
        assert bucket.take()


def test_faster_than_rate_runs_dry() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=8, burst=40, clock=clock)
    results = []
    for _ in range(200):
        clock.advance(0.0625)  # 16 frames a second against a rate of 8
        results.append(bucket.take())
    # 40 burst + 8/s * 12.5 s of refill, less the first half token (the bucket was full),
    # less the half token left at the end; once dry, every other frame is refused.
    assert results.count(True) == 139
    assert results.index(False) == 79
    assert results[-4:] == [True, False, True, False]


def test_fractional_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock)
    assert bucket.take()
    clock.advance(1.9)
    assert not bucket.take()
    clock.advance(0.1)
    assert bucket.take()


def test_default_clock_is_monotonic() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    assert bucket.clock is time.monotonic
    assert bucket.take()
    assert not bucket.take()
