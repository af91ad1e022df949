"""The chunker's pure core: bytes of one object version in, chunk batches out.

The first batch of every document is its manifest: no chunks, but the total
``chunk_count``, so the writer can show the document as chunked before any
vector arrives. The other batches are each sized for one embedding request.

Every message names the chunk set it belongs to: ``chunking`` fingerprints the
chunker version and settings (chunk ids include it), ``revision`` orders the
times one generation was chunked (see :func:`stamp`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ragrun_chunker.chunking import ChunkingConfig, chunk
from ragrun_chunker.extract import ExtractionError, extract
from ragrun_common.batching import BatchLimits, plan_batches
from ragrun_common.contracts import Chunk, ChunkBatch, DocumentRef, chunk_id


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-document bounds; exceeding one is a permanent, recorded failure."""

    max_object_bytes: int = 64 * 1024 * 1024
    max_pages: int = 2_000
    max_chunks: int = 20_000


def fingerprint(config: ChunkingConfig, version: str) -> str:
    """What decides the chunks of a given text: the chunker's version and settings.

    Readable on purpose: the writer stores it with every chunk row, so a query
    result says which settings cut it.
    """
    return f"ragrun-chunker={version},tokens={config.max_tokens},overlap={config.overlap_tokens}"


def stamp(document: DocumentRef, chunking: str, revision: int) -> DocumentRef:
    """``document`` as one processing of it by this chunker names it.

    ``revision`` is the processing time in ns: when a generation is chunked
    again (a replay after a settings change), the writer keeps the newest.
    """
    return document.model_copy(update={"chunking": chunking, "revision": revision})


def check_size(document: DocumentRef, limits: Limits) -> None:
    """Reject an object over the size limit before downloading it."""
    if document.size is not None and document.size > limits.max_object_bytes:
        raise ExtractionError(
            f"object is {document.size} bytes, over the limit of {limits.max_object_bytes} "
            "(RAGRUN_MAX_OBJECT_BYTES)"
        )


def chunk_document(
    document: DocumentRef, data: bytes, config: ChunkingConfig, limits: Limits
) -> list[Chunk]:
    """Extract and chunk one object version; ExtractionError says why it cannot be."""
    check_size(DocumentRef(**{**document.model_dump(), "size": len(data)}), limits)
    extracted = extract(
        data, name=document.name, content_type=document.content_type, max_pages=limits.max_pages
    )
    pieces = chunk(extracted, config)
    if len(pieces) > limits.max_chunks:
        raise ExtractionError(
            f"document yields {len(pieces)} chunks, over the limit of {limits.max_chunks} "
            "(RAGRUN_MAX_CHUNKS)"
        )
    return [
        Chunk(
            chunk_id=chunk_id(
                document.bucket, document.name, document.generation, p.index, document.chunking
            ),
            index=p.index,
            text=p.text,
            tokens=p.tokens,
            metadata=_chunk_metadata(p.headings, p.page, extracted.content_type),
        )
        for p in pieces
    ]


def _chunk_metadata(
    headings: tuple[str, ...], page: int | None, content_type: str
) -> dict[str, object]:
    meta: dict[str, object] = {"content_type": content_type}
    if headings:
        meta["headings"] = list(headings)
    if page is not None:
        meta["page"] = page
    return meta


def to_batches(document: DocumentRef, chunks: list[Chunk], limits: BatchLimits) -> list[ChunkBatch]:
    """The manifest and the chunk batches for one document, each within ``limits``."""
    content_type = chunks[0].metadata.get("content_type") if chunks else None
    ref = document.model_copy(
        update={"chunk_count": len(chunks), "content_type": content_type or document.content_type}
    )
    groups = plan_batches(chunks, lambda c: c.tokens, limits)
    return [ChunkBatch(document=ref)] + [ChunkBatch(document=ref, chunks=g) for g in groups]


def failure(document: DocumentRef, reason: str) -> ChunkBatch:
    """The message that records a document the chunker gave up on."""
    return ChunkBatch(document=document.model_copy(update={"error": reason, "chunk_count": 0}))
