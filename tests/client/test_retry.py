"""The retry policy: what is retried, how long to wait, Retry-After in both forms."""

from __future__ import annotations

import random
from email.utils import formatdate

from regtool.client.net.retry import RetryPolicy, parse_retry_after


def test_only_idempotent_methods_and_retryable_statuses() -> None:
    policy = RetryPolicy()
    for status in (408, 429, 500, 502, 503, 504):
        assert policy.allows("GET", status)
        assert policy.allows("HEAD", status)
        assert policy.allows("PUT", status)
        assert not policy.allows("POST", status)
        assert not policy.allows("PATCH", status)
    for status in (400, 401, 403, 404, 405, 409, 416, 501):
        assert not policy.allows("GET", status)


def test_attempts_are_counted() -> None:
    policy = RetryPolicy(total=2)
    assert not policy.exhausted(0)
    assert not policy.exhausted(1)
    assert policy.exhausted(2)
    assert RetryPolicy(total=0).exhausted(0)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(backoff_factor=0.5, backoff_max=3.0, jitter=0.0)
    assert [policy.backoff(i) for i in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(backoff_factor=1.0, backoff_max=100.0, jitter=0.5)
    rng = random.Random(7)
    delays = [jittered.backoff(2, rng) for _ in range(50)]
    assert all(4.0 <= d <= 6.0 for d in delays)
    assert len(set(delays)) > 1
    assert RetryPolicy(backoff_factor=1.0, backoff_max=5.0, jitter=1.0).backoff(10) <= 5.0


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None


def test_delay_prefers_retry_after_but_caps_it() -> None:
    policy = RetryPolicy(backoff_factor=0.1, jitter=0.0, retry_after_max=20.0)
    assert policy.delay(0, "3") == 3.0
    assert policy.delay(0, "3600") == 20.0
    assert policy.delay(1, None) == 0.2
    assert policy.delay(1, "garbage") == 0.2


def test_policy_is_immutable() -> None:
    import dataclasses

    import pytest

    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.total = 5  # type: ignore[misc]
    assert policy.with_total(5).total == 5
    assert policy.total == 3
