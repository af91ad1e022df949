"""Greedy packing of items into requests bounded by count and tokens.

Used by the chunker (one chunk batch per embedding request) and by the
embedder (requests planned across messages and documents).
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """Upper bounds of one embedding request (Vertex AI's published limits by default)."""

    max_items: int = 250
    max_tokens: int = 20_000

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_tokens < 1:
            raise ValueError("batch limits must be positive")


def plan_batches(
    items: Iterable[T], tokens: Callable[[T], int], limits: BatchLimits
) -> list[list[T]]:
    """Split ``items``, in order, into the fewest consecutive batches within ``limits``.

    An item heavier than ``max_tokens`` on its own gets a batch to itself: the
    caller decides whether the API truncates or rejects it.
    """
    batches: list[list[T]] = []
    current: list[T] = []
    current_tokens = 0
    for item in items:
        weight = tokens(item)
        if current and (
            len(current) >= limits.max_items or current_tokens + weight > limits.max_tokens
        ):
            batches.append(current)
            current, current_tokens = [], 0
        current.append(item)
        current_tokens += weight
    if current:
        batches.append(current)
    return batches


def split_sizes(items: Sequence[T], sizes: Sequence[int]) -> list[list[T]]:
    """Cut ``items`` into consecutive runs of the given sizes (the inverse of concatenation)."""
    if sum(sizes) != len(items):
        raise ValueError(f"sizes add up to {sum(sizes)}, not {len(items)}")
    out: list[list[T]] = []
    start = 0
    for size in sizes:
        out.append(list(items[start : start + size]))
        start += size
    return out
