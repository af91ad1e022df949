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
