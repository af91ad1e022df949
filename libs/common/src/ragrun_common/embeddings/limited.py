"""An embedding provider wrapped in client-side rate limits and in-process retries."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ragrun_common.contracts import Vectors
from ragrun_common.embeddings.base import EmbeddingProvider, Task
from ragrun_common.errors import ThrottledError
from ragrun_common.ratelimit import AimdRateLimiter
from ragrun_common.retry import Backoff, call_with_retries
from ragrun_common.tokens import count_tokens

if TYPE_CHECKING:
    from ragrun_common.settings import EmbeddingBudgetSettings

log = logging.getLogger(__name__)


@dataclass
class RateLimitedProvider:
    """Waits for budget before each request, backs off on 429, retries transient errors.

    Retries stop at the backoff's deadline and re-raise, so the message is
    nacked and Pub/Sub takes over.
    """

    inner: EmbeddingProvider
    limiter: AimdRateLimiter
    backoff: Backoff
    name: str = field(init=False)
    dim: int = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.inner.name
        self.dim = self.inner.dim

    def embed(self, texts: Sequence[str], task: Task) -> Vectors:
        tokens = sum(count_tokens(t) for t in texts)

        def attempt() -> Vectors:
            self.limiter.acquire(tokens)
            try:
                vectors = self.inner.embed(texts, task)
            except ThrottledError:
                self.limiter.on_throttled()
                log.warning(
                    "embeddings.throttled",
                    extra={"fields": {"rate_factor": self.limiter.factor, "texts": len(texts)}},
                )
                raise
            self.limiter.on_success()
            return vectors

        return call_with_retries(attempt, self.backoff, what=f"embed {len(texts)} texts")


def with_budget(
    provider: EmbeddingProvider, settings: EmbeddingBudgetSettings, kind: str
) -> EmbeddingProvider:
    """Vertex AI behind the configured budgets and retries (local models need neither)."""
    if kind != "vertex":
        return provider
    limiter = AimdRateLimiter(settings.requests_per_minute, settings.tokens_per_minute)
    return RateLimitedProvider(provider, limiter, Backoff(deadline_s=settings.retry_deadline_s))
