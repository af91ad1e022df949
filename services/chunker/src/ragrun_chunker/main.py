"""The chunker's CloudEvent function (functions-framework target ``on_object_event``).

Outcomes: the function returns normally when the event is done with (chunks
published, or a permanent failure recorded downstream, or an event that needs
no work), which acks it; it raises on a retryable failure (GCS or Pub/Sub
unavailable), which answers 500 so Pub/Sub or Eventarc redelivers.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.metadata
import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import functions_framework
from cloudevents.http.event import CloudEvent
from google.cloud import pubsub_v1, storage
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from ragrun_chunker.chunking import ChunkingConfig
from ragrun_chunker.core import (
    Limits,
    check_size,
    chunk_document,
    failure,
    fingerprint,
    over_size,
    size_limit,
    stamp,
    stream_batches,
    to_batches,
)
from ragrun_chunker.events import Action, ObjectEvent, decode_event
from ragrun_chunker.extract import STREAMABLE, detect_content_type
from ragrun_chunker.settings import ChunkerSettings
from ragrun_chunker.stream import GenerationGoneError, capped, gunzip_blocks, raw_blocks
from ragrun_common import telemetry
from ragrun_common.contracts import ChunkBatch, DocumentRef
from ragrun_common.errors import ContractError, PermanentError
from ragrun_common.gcs import storage_client
from ragrun_common.logs import configure_logging
from ragrun_common.pubsub import make_publisher, publish_all

log = logging.getLogger("ragrun.chunker")

# Chunk batches of a streamed document published (and confirmed) at a time. One
# group is confirmed in the background while the next is cut, so a 1 GiB object
# does not wait for ~1,000 publish round trips; memory holds two groups (a few MB).
_STREAM_PUBLISH_BATCHES = 16


@dataclass
class Chunker:
    """Everything one event needs: settings and the two clients."""

    settings: ChunkerSettings
    storage: storage.Client
    publisher: pubsub_v1.PublisherClient

    @functools.cached_property
    def topic_path(self) -> str:
        path: str = self.publisher.topic_path(self.settings.project, self.settings.chunks_topic)
        return path

    @functools.cached_property
    def config(self) -> ChunkingConfig:
        s = self.settings
        return ChunkingConfig(max_tokens=s.chunk_tokens, overlap_tokens=s.chunk_overlap)

    @functools.cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.config, importlib.metadata.version("ragrun-chunker"))

    @functools.cached_property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(
            max_object_bytes=s.max_object_bytes,
            max_text_bytes=s.max_text_bytes,
            max_pages=s.max_pages,
            max_chunks=s.max_chunks,
        )

    def handle(self, event: ObjectEvent, parent: Context | None = None) -> None:
        """Handle one object event in the span that starts its document's trace."""
        with telemetry.tracer.start_as_current_span(
            "chunker object",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "ragrun.bucket": event.bucket,
                "ragrun.object": event.name,
                "ragrun.generation": event.generation,
                "ragrun.action": event.action.value,
            },
        ):
            self._handle(event)

    def _handle(self, event: ObjectEvent) -> None:
        if event.action is Action.IGNORE:
            log.info("chunker.ignored", extra={"fields": {"reason": event.reason}})
            return
        document = stamp(event.document(), self.fingerprint, time.time_ns())
        labels = document.labels()
        if event.action is Action.DELETE:
            self._publish([ChunkBatch(document=document)])
            log.info("chunker.deleted", extra={"labels": labels})
            return
        started = time.monotonic()
        try:
            check_size(document, self.limits)
            outcome = self._chunk(event, document)
        except GenerationGoneError:
            # A newer generation replaced this one (or it was deleted); its own event follows.
            log.info("chunker.generation_gone", extra={"labels": labels})
            return
        except PermanentError as e:
            log.error("chunker.failed", extra={"labels": labels, "fields": {"error": str(e)}})
            self._publish([failure(document, str(e))])
            return
        chunks, batches, tokens, size = outcome
        telemetry.record_counts(chunks=chunks, batches=batches, tokens=tokens)
        telemetry.CHUNKS.add(chunks, {"stage": "chunker"})
        log.info(
            "chunker.chunked",
            extra={
                "labels": labels,
                "fields": {
                    "chunks": chunks,
                    "batches": batches,
                    "bytes": size,
                    "seconds": round(time.monotonic() - started, 3),
                },
            },
        )

    def _chunk(self, event: ObjectEvent, document: DocumentRef) -> tuple[int, int, int, int]:
        """Read, chunk and publish one object version: (chunks, batches, tokens, bytes).

        An object up to RAGRUN_STREAM_TEXT_BYTES is read whole; a larger one is
        streamed if it is plain text or Markdown, else read whole up to
        RAGRUN_MAX_OBJECT_BYTES. Every size counts decoded (gunzipped) bytes.
        """
        s = self.settings
        gzip = (event.content_encoding or "").strip().lower() == "gzip"
        blob = self.storage.bucket(event.bucket).blob(event.name, generation=event.generation)
        blocks: Iterable[bytes] = raw_blocks(blob, s.download_block_bytes)
        if gzip:
            blocks = gunzip_blocks(blocks, s.download_block_bytes)
        blocks = iter(blocks)
        held: list[bytes] = []
        size = 0
        for block in blocks:
            held.append(block)
            size += len(block)
            if size > s.stream_text_bytes:
                break
        else:
            return self._chunk_whole(document, b"".join(held))
        head = b"".join(held)[:1024]
        kind = detect_content_type(document.name, document.content_type, head)
        limit, _ = size_limit(kind, self.limits)
        rest = capped(
            itertools.chain(held, blocks),
            limit,
            lambda: over_size(None, kind, self.limits, gzip=gzip),
        )
        if kind not in STREAMABLE:
            check_size(document, self.limits, kind)
            return self._chunk_whole(document, b"".join(rest))
        return self._chunk_streamed(document, kind, rest)

    def _chunk_whole(self, document: DocumentRef, data: bytes) -> tuple[int, int, int, int]:
        chunks = chunk_document(document, data, self.config, self.limits)
        batches = to_batches(document, chunks, self.settings.batch_limits)
        self._publish(batches)
        return len(chunks), len(batches) - 1, sum(c.tokens for c in chunks), len(data)

    def _chunk_streamed(
        self, document: DocumentRef, kind: str, blocks: Iterable[bytes]
    ) -> tuple[int, int, int, int]:
        size = 0

        def counted() -> Iterator[bytes]:
            nonlocal size
            for block in blocks:
                size += len(block)
                yield block

        chunks = batches = tokens = 0
        pending: list[ChunkBatch] = []
        stream = stream_batches(
            document, kind, counted(), self.config, self.limits, self.settings.batch_limits
        )
        # Leaving the block (also on an error) waits for the group being confirmed.
        with ThreadPoolExecutor(1, thread_name_prefix="chunker-publish") as confirmer:
            confirming: Future[None] | None = None
            for batch in stream:
                pending.append(batch)
                if batch.chunks:
                    batches += 1
                    chunks += len(batch.chunks)
                    tokens += sum(c.tokens for c in batch.chunks)
                if len(pending) >= _STREAM_PUBLISH_BATCHES:
                    if confirming is not None:
                        confirming.result()  # a failed publish fails the event (retryable)
                    # In this span's trace context, which the publisher puts in the messages.
                    context = contextvars.copy_context()
                    confirming = confirmer.submit(context.run, self._publish, pending)
                    pending = []
            if confirming is not None:
                confirming.result()
        self._publish(pending)  # ends with the manifest, after every batch is confirmed
        return chunks, batches, tokens, size

    def _publish(self, batches: list[ChunkBatch]) -> None:
        publish_all(self.publisher, self.topic_path, [b.encode() for b in batches])


@functools.cache
def _chunker() -> Chunker:
    settings = ChunkerSettings()
    configure_logging("chunker", settings.log_level, project=settings.project)
    telemetry.configure_telemetry("chunker", settings.project, telemetry.TelemetrySettings())
    return Chunker(settings, storage_client(settings.project), make_publisher())


@functions_framework.cloud_event
def on_object_event(cloud_event: CloudEvent) -> None:
    """Entry point: one GCS object event, by Eventarc or by Pub/Sub push."""
    chunker = _chunker()
    try:
        event = decode_event(cloud_event["type"], cloud_event.data)
    except ContractError as e:
        # Malformed events never become valid: ack them, loudly.
        log.error("chunker.bad_event", extra={"fields": {"error": str(e), "id": cloud_event["id"]}})
        return
    chunker.handle(event, parent=telemetry.pushed_message_context(cloud_event.data))
