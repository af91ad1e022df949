"""The chunker's CloudEvent function (functions-framework target ``on_object_event``).

Outcomes: the function returns normally when the event is done with (chunks
published, or a permanent failure recorded downstream, or an event that needs
no work), which acks it; it raises on a retryable failure (GCS or Pub/Sub
unavailable), which answers 500 so Pub/Sub or Eventarc redelivers.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import time
from dataclasses import dataclass

import functions_framework
from cloudevents.http.event import CloudEvent
from google.api_core import exceptions as gexc
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
    stamp,
    to_batches,
)
from ragrun_chunker.events import Action, ObjectEvent, decode_event
from ragrun_chunker.settings import ChunkerSettings
from ragrun_common import telemetry
from ragrun_common.contracts import ChunkBatch
from ragrun_common.errors import ContractError, PermanentError, RetryableError
from ragrun_common.gcs import storage_client
from ragrun_common.logs import configure_logging
from ragrun_common.pubsub import make_publisher, publish_all

log = logging.getLogger("ragrun.chunker")


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
            max_object_bytes=s.max_object_bytes, max_pages=s.max_pages, max_chunks=s.max_chunks
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
            data = self._download(event)
            if data is None:
                return
            chunks = chunk_document(document, data, self.config, self.limits)
        except PermanentError as e:
            log.error("chunker.failed", extra={"labels": labels, "fields": {"error": str(e)}})
            self._publish([failure(document, str(e))])
            return
        batches = to_batches(document, chunks, self.settings.batch_limits)
        telemetry.record_counts(
            chunks=len(chunks), batches=len(batches) - 1, tokens=sum(c.tokens for c in chunks)
        )
        self._publish(batches)
        telemetry.CHUNKS.add(len(chunks), {"stage": "chunker"})
        log.info(
            "chunker.chunked",
            extra={
                "labels": labels,
                "fields": {
                    "chunks": len(chunks),
                    "batches": len(batches) - 1,
                    "bytes": len(data),
                    "seconds": round(time.monotonic() - started, 3),
                },
            },
        )

    def _download(self, event: ObjectEvent) -> bytes | None:
        blob = self.storage.bucket(event.bucket).blob(event.name, generation=event.generation)
        try:
            data: bytes = blob.download_as_bytes(raw_download=False)
        except gexc.NotFound:
            # A newer generation replaced this one (or it was deleted); its own event follows.
            log.info("chunker.generation_gone", extra={"labels": event.document().labels()})
            return None
        except (gexc.GoogleAPICallError, OSError) as e:
            raise RetryableError(f"download of gs://{event.bucket}/{event.name} failed") from e
        return data

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
