"""The interface every embedding provider implements."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

from ragrun_common.contracts import Vectors


class Task(StrEnum):
    """What the text is for; providers with task types embed the two differently."""

    DOCUMENT = "RETRIEVAL_DOCUMENT"
    QUERY = "RETRIEVAL_QUERY"


class EmbeddingProvider(Protocol):
    """Turns texts into unit-length float32 vectors of a fixed dimension.

    ``embed`` raises :class:`ragrun_common.errors.RetryableError` for failures
    worth retrying (quota, 5xx, timeouts) and
    :class:`ragrun_common.errors.PermanentError` for requests that can never
    succeed.
    """

    name: str
    dim: int

    def embed(self, texts: Sequence[str], task: Task) -> Vectors: ...
