"""The embedder's core: requests planned across messages within the API's limits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from ragrun_common.batching import BatchLimits
from ragrun_common.contracts import Chunk, ChunkBatch, DocumentRef, Vectors, chunk_id
from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.hashing import HashEmbedder
from ragrun_common.errors import PermanentError
from ragrun_embedder.core import embed_batches, plan_requests


class CountingEmbedder(HashEmbedder):
    """The hash embedder, remembering the size of every request it served."""

    def __init__(self, reject: str | None = None) -> None:
        super().__init__(16)
        self.requests: list[int] = []
        self.reject = reject

    def embed(self, texts: Sequence[str], task: Task) -> Vectors:
        assert task is Task.DOCUMENT
        if self.reject and any(self.reject in t for t in texts):
            raise PermanentError("input rejected")
        self.requests.append(len(texts))
        return super().embed(texts, task)


def doc_batch(name: str, n: int, tokens: int = 10) -> ChunkBatch:
    doc = DocumentRef(bucket="b", name=name, generation=1, chunk_count=n)
    return ChunkBatch(
        document=doc,
        chunks=[
            Chunk(chunk_id=chunk_id("b", name, 1, i), index=i, text=f"{name} {i}", tokens=tokens)
            for i in range(n)
        ],
    )


def test_small_documents_share_requests() -> None:
    batches = [doc_batch(f"d{i}.txt", 3) for i in range(100)]  # 300 chunks
    provider = CountingEmbedder()
    out = embed_batches(batches, provider, BatchLimits(max_items=250, max_tokens=20_000))
    assert provider.requests == [250, 50]
    assert [len(vb.chunks) for vb in out] == [3] * 100


def test_requests_respect_the_token_limit() -> None:
    batches = [doc_batch("big.txt", 10, tokens=900)]
    requests = plan_requests(batches, BatchLimits(max_items=250, max_tokens=2_000))
    assert [len(r) for r in requests] == [2, 2, 2, 2, 2]


def test_vectors_go_back_to_their_own_chunks() -> None:
    batches = [doc_batch("a.txt", 2), doc_batch("b.txt", 0), doc_batch("c.txt", 3)]
    provider = CountingEmbedder()
    out = embed_batches(batches, provider, BatchLimits(max_items=4))
    assert [vb.document.name for vb in out] == ["a.txt", "b.txt", "c.txt"]
    for vb in out:
        assert vb.vectors.shape == (len(vb.chunks), 16)
        expected = provider.embed([c.text for c in vb.chunks], Task.DOCUMENT) if vb.chunks else None
        if expected is not None:
            np.testing.assert_allclose(vb.vectors, expected)


def test_a_rejected_request_raises_permanent_error() -> None:
    with pytest.raises(PermanentError):
        embed_batches(
            [doc_batch("poison.txt", 1)], CountingEmbedder(reject="poison"), BatchLimits()
        )


class SizeLimitedEmbedder(CountingEmbedder):
    """Rejects requests of more than ``limit`` texts, as an API does for oversize requests."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def embed(self, texts: Sequence[str], task: Task) -> Vectors:
        if len(texts) > self.limit:
            raise PermanentError("request too large")
        return super().embed(texts, task)


def test_a_request_rejected_as_too_large_is_split_not_dropped() -> None:
    provider = SizeLimitedEmbedder(limit=30)
    out = embed_batches([doc_batch("a.txt", 100)], provider, BatchLimits(max_items=250))
    assert out[0].vectors.shape == (100, 16)
    assert sum(provider.requests) == 100 and max(provider.requests) <= 30


def test_the_part_filled_last_request_waits_for_the_next_gather() -> None:
    from ragrun_embedder.core import tail_to_defer

    limits = BatchLimits(max_items=250, max_tokens=20_000)
    # 300 chunks of one document, then five small documents: requests of 250 and 55.
    batches = [doc_batch("big.txt", 300), *(doc_batch(f"s{i}.txt", 1) for i in range(5))]
    held = tail_to_defer(batches, limits, [True] * len(batches))
    # The small documents wait; the big one's last 50 chunks cannot (its first 250 go now).
    assert held == {1, 2, 3, 4, 5}
    # A message that already waited once is not held again.
    assert tail_to_defer(batches, limits, [True, False, True, True, True, True]) == {2, 3, 4, 5}
    # A last request that is nearly full goes out.
    full = [doc_batch(f"f{i}.txt", 1, tokens=80) for i in range(230)]
    assert tail_to_defer(full, limits, [True] * len(full)) == set()
    # Nothing to embed, nothing to hold (manifests pass through).
    manifest = ChunkBatch(document=batches[1].document, chunks=[])
    assert tail_to_defer([manifest], limits, [True]) == set()


def test_request_sized_batches_are_not_split_by_small_ones_in_front() -> None:
    from ragrun_embedder.core import packing_order

    limits = BatchLimits(max_items=250, max_tokens=20_000)
    # Two batches the chunker cut to one request each (78 chunks of 256 tokens),
    # arriving behind ten one-chunk documents.
    arrived = [*(doc_batch(f"s{i}.txt", 1, tokens=200) for i in range(10)),
               doc_batch("a.txt", 78, tokens=256), doc_batch("b.txt", 78, tokens=256)]  # fmt: skip
    from ragrun_embedder.core import tail_to_defer

    # In arrival order the small ones shift a and b: the light last request is
    # b's last 8 chunks, which cannot wait (b's other chunks go now).
    assert [len(r) for r in plan_requests(arrived, limits)] == [80, 78, 8]
    assert tail_to_defer(arrived, limits, [True] * 12) == set()
    order = packing_order(arrived, limits)
    packed = [arrived[i] for i in order]
    assert order[:2] == [10, 11]
    assert [len(r) for r in plan_requests(packed, limits)] == [78, 78, 10]
    # Now the light last request is the small documents', and they can wait.
    assert tail_to_defer(packed, limits, [True] * 12) == set(range(2, 12))
