"""In-process retries for idempotent outbound calls: exponential backoff, full jitter, a deadline.

Pub/Sub owns message-level retries; this only smooths over short blips (a 429,
a 503) inside one delivery, and gives up before the message's ack deadline
matters, re-raising the last error so the caller nacks.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ragrun_common.errors import RetryableError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays of ``initial_s * multiplier**n``, capped, with full jitter, within ``deadline_s``."""

    initial_s: float = 0.5
    multiplier: float = 2.0
    max_s: float = 20.0
    deadline_s: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.max_s, self.initial_s * self.multiplier**attempt)
        return rng.uniform(0, ceiling)


def call_with_retries(
    fn: Callable[[], T],
    backoff: Backoff,
    *,
    what: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call ``fn``; on :class:`RetryableError` wait and try again until the deadline."""
    rng = rng or random.Random()
    deadline = clock() + backoff.deadline_s
    attempt = 0
    while True:
        try:
            return fn()
        except RetryableError as e:
            pause = backoff.delay(attempt, rng)
            if clock() + pause > deadline:
                raise
            log.warning(
                "retry.backoff",
                extra={"fields": {"what": what, "attempt": attempt + 1, "pause_s": round(pause, 3),
                                  "error": str(e)}},
            )  # fmt: skip
            sleep(pause)
            attempt += 1
