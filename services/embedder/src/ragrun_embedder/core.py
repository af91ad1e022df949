"""The embedder's pure core: plan requests across messages, embed, split back.

Chunks from many messages (and documents) share embedding requests, so small
documents do not each cost a request; every request stays within the
provider's text and token limits. Output is one vector batch per input
message, so each input can be acked as soon as its own output is published.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragrun_common.batching import BatchLimits, plan_batches, split_sizes
from ragrun_common.contracts import Chunk, ChunkBatch, VectorBatch
from ragrun_common.embeddings.base import EmbeddingProvider
from ragrun_common.embeddings.requests import embed_request


def plan_requests(batches: Sequence[ChunkBatch], limits: BatchLimits) -> list[list[Chunk]]:
    """The embedding requests for all chunks of ``batches``, in order, within ``limits``."""
    chunks = [chunk for batch in batches for chunk in batch.chunks]
    return plan_batches(chunks, lambda c: c.tokens, limits)


# A last request at least this full goes out; a lighter one may wait for company.
FULL_ENOUGH = 0.9


def nearly_full(chunks: Sequence[Chunk], limits: BatchLimits) -> bool:
    """Whether ``chunks`` nearly fill one request (the chunker cuts big documents so)."""
    return (
        len(chunks) >= FULL_ENOUGH * limits.max_items
        or sum(c.tokens for c in chunks) >= FULL_ENOUGH * limits.max_tokens
    )


def packing_order(batches: Sequence[ChunkBatch], limits: BatchLimits) -> list[int]:
    """Indexes of ``batches`` in the order that packs them into the fewest requests.

    Batches that fill a request on their own go first, one request each; the
    small ones follow and share requests. In arrival order a few small
    documents in front would shift every big batch across two requests.
    """
    return sorted(range(len(batches)), key=lambda i: not nearly_full(batches[i].chunks, limits))


def tail_to_defer(
    batches: Sequence[ChunkBatch], limits: BatchLimits, may_wait: Sequence[bool]
) -> set[int]:
    """Indexes of ``batches`` to hold for the next gather rather than embed now.

    The requests of one gather end with a part-filled one. The batches whose
    chunks all fall in it, and which ``may_wait`` (the caller bounds how often
    one waits), are held back so that they fill a request with the next
    gather's chunks: one request fewer per gather, at the price of one
    gather's wait for those chunks.
    """
    requests = plan_requests(batches, limits)
    if not requests:
        return set()
    last = requests[-1]
    if nearly_full(last, limits):
        return set()
    in_last = {c.chunk_id for c in last}
    return {
        i
        for i, (batch, wait) in enumerate(zip(batches, may_wait, strict=True))
        if wait and batch.chunks and all(c.chunk_id in in_last for c in batch.chunks)
    }


def embed_batches(
    batches: Sequence[ChunkBatch], provider: EmbeddingProvider, limits: BatchLimits
) -> list[VectorBatch]:
    """Embed every chunk of ``batches``; one vector batch per input batch, same order.

    Batches without chunks (a document's manifest, failure or deletion) pass
    through with an empty vector array so the writer still records them.
    """
    requests = plan_requests(batches, limits)
    parts = [embed_request(provider, [c.text for c in request]) for request in requests]
    vectors = (
        np.concatenate(parts).astype(np.float32, copy=False)
        if parts
        else np.zeros((0, provider.dim), dtype=np.float32)
    )
    if vectors.shape != (sum(len(b.chunks) for b in batches), provider.dim):
        raise ValueError(f"provider returned vectors of shape {vectors.shape}")
    per_batch = split_sizes(list(range(len(vectors))), [len(b.chunks) for b in batches])
    return [
        VectorBatch(
            document=batch.document,
            chunks=batch.chunks,
            model=provider.name,
            vectors=vectors[rows[0] : rows[-1] + 1] if rows else vectors[:0],
        )
        for batch, rows in zip(batches, per_batch, strict=True)
    ]
