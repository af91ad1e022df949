"""Client-side request and token budgets per minute, with AIMD on throttling.

Each budget is a token bucket refilled continuously at ``limit * factor`` per
minute, which spreads requests out, and a sliding window that never lets more
than ``limit * factor`` go out in any 61 s: a bucket alone would allow its own
size on top, and a quota counted per minute answers that excess with 429s (the
extra second covers the time a request takes to reach the server).
``factor`` starts at 1; every 429 halves it (multiplicative decrease, down to
``min_factor``), every success adds ``increase`` back (additive increase, up to
1). So a quota shared with other clients, or lower than configured, is found
without storms of 429s, and the full configured rate is used when the service
allows it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_S = 60.0
# A request counts against the client's minute from when it is sent, against the
# server's from when it arrives; this much longer a window covers the difference.
WINDOW_MARGIN_S = 1.0


@dataclass
class _Bucket:
    per_minute: float
    level: float
    burst_s: float

    def capacity(self, factor: float, need: float) -> float:
        return max(self.per_minute * factor * self.burst_s / 60.0, need)

    def refill(self, elapsed_s: float, factor: float, need: float) -> None:
        gained = elapsed_s * self.per_minute * factor / 60.0
        self.level = min(self.capacity(factor, need), self.level + gained)

    def wait_s(self, need: float, factor: float) -> float:
        missing = need - self.level
        if missing <= 1e-9 * max(need, 1.0):  # rounding must not leave a sub-ns wait
            return 0.0
        return max(missing * 60.0 / (self.per_minute * factor), 1e-3)


@dataclass
class AimdRateLimiter:
    """Requests-per-minute and tokens-per-minute budgets shared by a process's threads."""

    requests_per_minute: float
    tokens_per_minute: float
    burst_s: float = 2.0
    min_factor: float = 1 / 64
    increase: float = 0.02
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    factor: float = 1.0
    throttled: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _requests: _Bucket = field(init=False)
    _tokens: _Bucket = field(init=False)
    _last: float = field(init=False)
    # (time, tokens) of each request sent in the last WINDOW_S, and their token sum.
    _sent: deque[tuple[float, int]] = field(default_factory=deque, init=False)
    _sent_tokens: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.requests_per_minute <= 0 or self.tokens_per_minute <= 0:
            raise ValueError("rate limits must be positive")
        self._requests = _Bucket(self.requests_per_minute, 1.0, self.burst_s)
        self._tokens = _Bucket(self.tokens_per_minute, 0.0, self.burst_s)
        self._tokens.level = self._tokens.capacity(1.0, 0)
        self._last = self.clock()

    def acquire(self, tokens: int) -> float:
        """Block until one request of ``tokens`` fits both budgets; return the time waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self.clock()
                elapsed, self._last = now - self._last, now
                self._requests.refill(elapsed, self.factor, 1)
                self._tokens.refill(elapsed, self.factor, tokens)
                pause = max(
                    self._requests.wait_s(1, self.factor),
                    self._tokens.wait_s(tokens, self.factor),
                    self._window_wait_s(now, tokens),
                )
                if pause == 0.0:
                    self._requests.level -= 1
                    self._tokens.level -= tokens
                    self._sent.append((now, tokens))
                    self._sent_tokens += tokens
                    return waited
            self.sleep(pause)
            waited += pause

    def _window_wait_s(self, now: float, tokens: int) -> float:
        """How long until one more request of ``tokens`` fits the last minute's budgets.

        A request alone in the window always fits, however large, so a request
        bigger than a minute's budget is sent rather than blocked forever.
        """
        span = WINDOW_S + WINDOW_MARGIN_S
        while self._sent and self._sent[0][0] <= now - span:
            self._sent_tokens -= self._sent.popleft()[1]
        request_cap = self.requests_per_minute * self.factor
        token_cap = self.tokens_per_minute * self.factor
        count, used = len(self._sent), self._sent_tokens
        if not count or (count + 1 <= request_cap and used + tokens <= token_cap):
            return 0.0
        for sent_at, sent_tokens in self._sent:  # oldest first: what expires when
            count -= 1
            used -= sent_tokens
            if not count or (count + 1 <= request_cap and used + tokens <= token_cap):
                return max(sent_at + span - now, 1e-3)
        raise AssertionError("unreachable: an empty window always fits")

    def on_success(self) -> None:
        with self._lock:
            self.factor = min(1.0, self.factor + self.increase)

    def on_throttled(self) -> None:
        with self._lock:
            self.factor = max(self.min_factor, self.factor / 2)
            self.throttled += 1
