"""Client-side quota discipline: budgets per minute, AIMD on 429, bounded retries."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.limited import RateLimitedProvider
from ragrun_common.embeddings.vertex import VertexEmbedder
from ragrun_common.errors import RetryableError, ThrottledError
from ragrun_common.ratelimit import AimdRateLimiter
from ragrun_common.retry import Backoff, call_with_retries
from ragrun_common.testing.vertex_stub import VertexStub


class FakeClock:
    """Virtual time: sleeping advances it, so limits are checked without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(clock: FakeClock, rpm: float, tpm: float) -> AimdRateLimiter:
    return AimdRateLimiter(rpm, tpm, clock=clock, sleep=clock.sleep)


def test_requests_per_minute_are_respected() -> None:
    clock = FakeClock()
    budget = limiter(clock, rpm=60, tpm=1e9)
    for _ in range(121):
        budget.acquire(10)
    # 60/min with a 2 s burst: 121 requests need about two minutes.
    assert 118 <= clock.now <= 122


def test_tokens_per_minute_are_respected() -> None:
    clock = FakeClock()
    budget = limiter(clock, rpm=1e9, tpm=60_000)
    for _ in range(60):
        budget.acquire(10_000)  # 600k tokens at 60k/min: the last goes in the tenth minute
    assert 540 <= clock.now <= 610  # minutes of 61 s: see WINDOW_MARGIN_S


@pytest.mark.parametrize(("rpm", "tpm", "size"), [(1e9, 1_000_000, 20_000), (30, 1e9, 1)])
def test_no_minute_ever_exceeds_the_budget(rpm: float, tpm: float, size: int) -> None:
    """The bucket's burst comes on top of its rate; the window takes it back out."""
    clock = FakeClock()
    budget = limiter(clock, rpm=rpm, tpm=tpm)
    sent: list[tuple[float, int]] = []
    rng = random.Random(3)
    for _ in range(400):
        tokens = rng.randint(size // 2, size) if size > 1 else 1
        budget.acquire(tokens)
        sent.append((clock.now, tokens))
        clock.now += rng.random() * 0.05  # the request's own latency
    for start, _ in sent:
        in_window = [t for at, t in sent if start <= at < start + 60]
        assert len(in_window) <= rpm
        assert sum(in_window) <= tpm
    # ... and the budget is used: the run takes little longer than the minimum.
    minutes = max(len(sent) / rpm, sum(t for _, t in sent) / tpm)
    assert clock.now <= 60 * (minutes + 1.1)


def test_a_request_larger_than_a_minute_still_goes() -> None:
    clock = FakeClock()
    budget = limiter(clock, rpm=1e9, tpm=10_000)
    budget.acquire(25_000)
    budget.acquire(25_000)
    assert clock.now >= 60


def test_throttling_halves_the_rate_and_success_restores_it() -> None:
    clock = FakeClock()
    budget = limiter(clock, rpm=600, tpm=1e9)
    budget.on_throttled()
    budget.on_throttled()
    assert budget.factor == pytest.approx(0.25)
    start = clock.now
    for _ in range(100):
        budget.acquire(1)
    slow = clock.now - start
    for _ in range(200):
        budget.on_success()
    assert budget.factor == 1.0
    start = clock.now
    for _ in range(100):
        budget.acquire(1)
    assert slow > 3 * (clock.now - start)


def test_retries_back_off_and_give_up_at_the_deadline() -> None:
    clock = FakeClock()
    calls = 0

    def always_busy() -> None:
        nonlocal calls
        calls += 1
        raise ThrottledError("429")

    backoff = Backoff(initial_s=1, max_s=8, deadline_s=30)
    with pytest.raises(ThrottledError):
        call_with_retries(
            always_busy, backoff, what="x", clock=clock, sleep=clock.sleep, rng=random.Random(1)
        )
    assert calls >= 3
    assert clock.now <= 30
    assert all(pause <= 8 for pause in clock.slept)


def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad")

    with pytest.raises(ValueError):
        call_with_retries(broken, Backoff(), what="x", sleep=lambda _s: None)
    assert calls == 1


@pytest.fixture
def stub() -> Iterator[VertexStub]:
    with VertexStub() as server:
        yield server


def vertex(stub: VertexStub, backoff: Backoff) -> RateLimitedProvider:
    inner = VertexEmbedder(
        model="text-embedding-005", dim=64, project="p", location="us-central1",
        base_url=stub.base_url, access_token="t",
    )  # fmt: skip
    return RateLimitedProvider(inner, AimdRateLimiter(6_000, 1e9), backoff)


def test_a_429_storm_is_ridden_out_with_backoff(stub: VertexStub) -> None:
    """The real google-genai client against the local Vertex AI stand-in answering 429s."""
    provider = vertex(stub, Backoff(initial_s=0.01, max_s=0.05, deadline_s=30))
    stub.fail_next(6, status=429)
    vectors = provider.embed(["alpha", "beta"], Task.DOCUMENT)
    assert vectors.shape == (2, 64)
    statuses = [r.status for r in stub.requests]
    assert statuses == [429] * 6 + [200]
    assert provider.limiter.throttled == 6
    assert provider.limiter.factor < 0.1


def test_retries_end_in_a_retryable_error_for_pubsub(stub: VertexStub) -> None:
    provider = vertex(stub, Backoff(initial_s=0.01, max_s=0.02, deadline_s=0.2))
    stub.fail_next(1000, status=503)
    with pytest.raises(RetryableError):
        provider.embed(["alpha"], Task.DOCUMENT)
