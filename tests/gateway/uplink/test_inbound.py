"""The limits on incoming messages (gateway/uplink/inbound.py): pure policy, no broker."""

from __future__ import annotations

from gateway.uplink.inbound import Inbound, InboundLimits, TokenBucket


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.4) is False  # 0.8 of a token
    assert bucket.take(0.5) is True
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, True]
    assert bucket.take(100.0) is False  # never more than the burst


def test_refusals_are_counted_by_reason() -> None:
    now = [0.0]
    dropped: dict[str, int] = {}
    inbound = Inbound(
        InboundLimits(max_bytes=10, rate=1.0, burst=2, queue=1), dropped, lambda: now[0]
    )
    assert inbound.admit(11, waiting=0) is False  # oversize spends no token
    assert inbound.admit(10, waiting=0) is True
    assert inbound.admit(5, waiting=1) is False  # queue full
    assert inbound.admit(5, waiting=0) is False  # no token left
    assert dropped == {"oversize": 1, "queue_full": 1, "rate_limited": 1}
