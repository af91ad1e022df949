"""The chunker's pure core: bytes of one object version in, chunk batches out.

The first batch of every document is its manifest: no chunks, but the total
``chunk_count``, so the writer can show the document as chunked before any
vector arrives. The other batches are each sized for one embedding request.

Every message names the chunk set it belongs to: ``chunking`` fingerprints the
chunker version and settings (chunk ids include it), ``revision`` orders the
times one generation was chunked (see :func:`stamp`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ragrun_chunker.chunking import ChunkingConfig, TextChunk, chunk, iter_chunks
from ragrun_chunker.extract import (
    STREAMABLE,
    ExtractionError,
    decode_utf8_stream,
    detect_content_type,
    extract,
    stream_sections,
)
from ragrun_common.batching import BatchLimits, plan_batches
from ragrun_common.contracts import Chunk, ChunkBatch, DocumentRef, chunk_id


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-document bounds; exceeding one is a permanent, recorded failure."""

    max_object_bytes: int = 64 * 1024 * 1024
    max_text_bytes: int = 2 * 1024**3
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


def size_limit(kind: str | None, limits: Limits) -> tuple[int, str]:
    """The largest object of content type ``kind`` (None: not known yet) and its setting."""
    if kind is None or kind in STREAMABLE:
        return limits.max_text_bytes, "RAGRUN_MAX_TEXT_BYTES"
    return limits.max_object_bytes, "RAGRUN_MAX_OBJECT_BYTES"


def over_size(size: int | None, kind: str | None, limits: Limits, *, gzip: bool = False) -> str:
    """Why an object is refused: it is ``size`` bytes, or (None) it grew past the limit as read."""
    limit, setting = size_limit(kind, limits)
    read_as = f" for {kind}" if kind else ""
    if size is not None:
        return f"object is {size} bytes, over the limit of {limit}{read_as} ({setting})"
    if gzip:
        return (
            f"gzip-encoded object decompresses to more than {limit} bytes, the limit{read_as}"
            f" ({setting}): refused as a possible decompression bomb"
        )
    return f"object is larger than {limit} bytes, the limit{read_as} ({setting})"


def check_size(document: DocumentRef, limits: Limits, kind: str | None = None) -> None:
    """Reject an object over the size limit (of its type, once known) before reading it."""
    limit, _ = size_limit(kind, limits)
    if document.size is not None and document.size > limit:
        raise ExtractionError(over_size(document.size, kind, limits))


def chunk_document(
    document: DocumentRef, data: bytes, config: ChunkingConfig, limits: Limits
) -> list[Chunk]:
    """Extract and chunk one object version; ExtractionError says why it cannot be."""
    if len(data) > limits.max_object_bytes:
        kind = detect_content_type(document.name, document.content_type, data[:1024])
        check_size(DocumentRef(**{**document.model_dump(), "size": len(data)}), limits, kind)
    extracted = extract(
        data, name=document.name, content_type=document.content_type, max_pages=limits.max_pages
    )
    pieces = chunk(extracted, config)
    if len(pieces) > limits.max_chunks:
        raise ExtractionError(_too_many(len(pieces), limits))
    return [_to_chunk(document, p, extracted.content_type) for p in pieces]


def _too_many(count: int, limits: Limits) -> str:
    return (
        f"document yields {count} chunks, over the limit of {limits.max_chunks} (RAGRUN_MAX_CHUNKS)"
    )


def _to_chunk(document: DocumentRef, piece: TextChunk, content_type: str) -> Chunk:
    return Chunk(
        chunk_id=chunk_id(
            document.bucket, document.name, document.generation, piece.index, document.chunking
        ),
        index=piece.index,
        text=piece.text,
        tokens=piece.tokens,
        metadata=_chunk_metadata(piece.headings, piece.page, content_type),
    )


def stream_batches(
    document: DocumentRef,
    kind: str,
    blocks: Iterable[bytes],
    config: ChunkingConfig,
    limits: Limits,
    batch_limits: BatchLimits,
) -> Iterator[ChunkBatch]:
    """The chunk batches of a plain or Markdown object read block by block, manifest last.

    Only one section and one batch of chunks are held at a time. Until the end
    the chunk count is unknown: the batches carry ``limits.max_chunks`` as an
    upper bound with ``chunk_count_final=False`` (the writer cannot complete
    the set from them), and the manifest that follows them has the final
    count. ExtractionError (bad UTF-8, too many chunks, no text) may come after
    some batches; the caller then records the failure, which outranks them.
    """
    ref = document.model_copy(
        update={"chunk_count": limits.max_chunks, "chunk_count_final": False, "content_type": kind}
    )
    sections = stream_sections(kind, decode_utf8_stream(blocks, document.name))
    pending: list[Chunk] = []
    count = 0
    for piece in iter_chunks(sections, config):
        count += 1
        if count > limits.max_chunks:
            raise ExtractionError(
                f"document yields more chunks than the limit of {limits.max_chunks} "
                "(RAGRUN_MAX_CHUNKS)"
            )
        pending.append(_to_chunk(document, piece, kind))
        if len(pending) >= 2 * batch_limits.max_items:
            *full, pending = plan_batches(pending, lambda c: c.tokens, batch_limits)
            for group in full:
                yield ChunkBatch(document=ref, chunks=group)
    for group in plan_batches(pending, lambda c: c.tokens, batch_limits):
        yield ChunkBatch(document=ref, chunks=group)
    if count == 0:
        raise ExtractionError(f"no text found in {document.name!r} (read as {kind})")
    yield ChunkBatch(
        document=ref.model_copy(update={"chunk_count": count, "chunk_count_final": True})
    )


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
