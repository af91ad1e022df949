"""Request planning: the fewest requests within the API's text and token limits."""

from __future__ import annotations

import math

import pytest

from ragrun_common.batching import BatchLimits, plan_batches, split_sizes
from ragrun_common.tokens import count_tokens


def test_count_limit() -> None:
    batches = plan_batches(range(1001), lambda _: 1, BatchLimits(max_items=250))
    assert [len(b) for b in batches] == [250, 250, 250, 250, 1]


def test_token_limit_and_order() -> None:
    items = [300] * 10
    batches = plan_batches(items, lambda t: t, BatchLimits(max_items=250, max_tokens=1000))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert [x for b in batches for x in b] == items


def test_uniform_items_use_the_minimum_number_of_requests() -> None:
    for n, tokens in [(5000, 80), (777, 256), (260, 1)]:
        limits = BatchLimits()
        batches = plan_batches([tokens] * n, lambda t: t, limits)
        per_request = min(limits.max_items, limits.max_tokens // tokens)
        assert len(batches) == math.ceil(n / per_request)


def test_an_oversized_item_travels_alone() -> None:
    batches = plan_batches([10, 50_000, 10], lambda t: t, BatchLimits(max_tokens=20_000))
    assert batches == [[10], [50_000], [10]]


def test_split_sizes_inverts_concatenation() -> None:
    assert split_sizes([1, 2, 3, 4], [1, 0, 3]) == [[1], [], [2, 3, 4]]
    with pytest.raises(ValueError):
        split_sizes([1, 2], [3])


def test_token_estimate_counts_words_punctuation_and_long_words() -> None:
    assert count_tokens("") == 0
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("a" * 40) == 8
    assert count_tokens("word " * 1000) == 1000
