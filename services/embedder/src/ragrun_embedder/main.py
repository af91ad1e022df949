"""Embedder worker: streaming pull on the chunks subscription, publish vector batches.

Outcomes per message: undecodable -> ack and log (a poison message must not
loop); provider or publish failure worth retrying -> nack (Pub/Sub redelivers,
then dead-letters); a request the provider rejects for good -> each message is
retried alone, and the ones that still fail are passed on as failed documents.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

import numpy as np
from google.cloud import pubsub_v1

from ragrun_common import telemetry
from ragrun_common.contracts import ChunkBatch, VectorBatch
from ragrun_common.embeddings.base import EmbeddingProvider
from ragrun_common.embeddings.limited import with_budget
from ragrun_common.embeddings.registry import create_provider
from ragrun_common.errors import ContractError, PermanentError, RetryableError
from ragrun_common.logs import configure_logging
from ragrun_common.pubsub import (
    BatchingSubscriber,
    Outcome,
    Received,
    count_weight,
    make_publisher,
    make_subscriber,
    publish_all,
)
from ragrun_embedder.core import embed_batches, packing_order, tail_to_defer
from ragrun_embedder.settings import EmbedderSettings

log = logging.getLogger("ragrun.embedder")


@dataclass
class Embedder:
    """Turns a gathered list of received messages into published vector batches."""

    settings: EmbedderSettings
    provider: EmbeddingProvider
    publisher: pubsub_v1.PublisherClient
    topic_path: str

    def handle(self, messages: Sequence[Received]) -> list[Outcome]:
        outcomes = [Outcome.ACK] * len(messages)
        decoded: list[tuple[int, ChunkBatch]] = []
        for i, message in enumerate(messages):
            try:
                decoded.append((i, ChunkBatch.decode(message.data, message.attributes)))
            except ContractError as e:
                log.error(
                    "embedder.bad_message",
                    extra={"fields": {"message_id": message.message_id, "error": str(e)}},
                )
        if not decoded:
            return outcomes
        limits = self.settings.batch_limits
        order = packing_order([batch for _, batch in decoded], limits)
        decoded = [decoded[j] for j in order]
        # The gather's last, part-filled request waits (once) for the next gather's chunks.
        may_wait = [messages[i].deferred == 0 for i, _ in decoded]
        held = tail_to_defer([b for _, b in decoded], limits, may_wait)
        for j in held:
            outcomes[decoded[j][0]] = Outcome.DEFER
        decoded = [pair for j, pair in enumerate(decoded) if j not in held]
        if not decoded:
            return outcomes
        try:
            out = self._embed([batch for _, batch in decoded])
            publish_all(self.publisher, self.topic_path, [vb.encode() for vb in out])
        except RetryableError as e:
            log.warning(
                "embedder.retry",
                extra={"fields": {"messages": len(decoded), "error": str(e)}},
            )
            for i, _ in decoded:
                outcomes[i] = Outcome.NACK
            return outcomes
        chunks = sum(len(vb.chunks) for vb in out)
        tokens = sum(c.tokens for vb in out for c in vb.chunks)
        telemetry.record_counts(batches=len(out), chunks=chunks, tokens=tokens)
        telemetry.CHUNKS.add(chunks, {"stage": "embedder"})
        log.info("embedder.published", extra={"fields": {"batches": len(out), "chunks": chunks}})
        return outcomes

    def _embed(self, batches: list[ChunkBatch]) -> list[VectorBatch]:
        try:
            return embed_batches(batches, self.provider, self.settings.batch_limits)
        except PermanentError as e:
            if len(batches) == 1:
                return [self._failed(batches[0], e)]
            # Find the batch the provider rejects; the others go through.
            return [vb for batch in batches for vb in self._embed([batch])]

    def _failed(self, batch: ChunkBatch, error: PermanentError) -> VectorBatch:
        """The document's failure, passed on so the writer records it."""
        log.error(
            "embedder.rejected",
            extra={"labels": batch.document.labels(), "fields": {"error": str(error)}},
        )
        document = batch.document.model_copy(update={"error": f"embedding rejected: {error}"})
        empty = np.zeros((0, self.provider.dim), dtype=np.float32)
        return VectorBatch(document=document, chunks=[], model=self.provider.name, vectors=empty)


def main() -> None:
    settings = EmbedderSettings()
    configure_logging("embedder", settings.log_level, project=settings.project)
    telemetry.configure_telemetry("embedder", settings.project, telemetry.TelemetrySettings())
    # Traced inside the rate limiter, so every attempt (and every 429) is a span.
    traced = telemetry.TracedProvider(create_provider(settings))
    provider = with_budget(traced, settings, settings.embedding.kind)
    publisher = make_publisher()
    embedder = Embedder(
        settings=settings,
        provider=provider,
        publisher=publisher,
        topic_path=publisher.topic_path(settings.project, settings.vectors_topic),
    )
    subscriber = make_subscriber()
    worker = BatchingSubscriber(
        subscription_path=subscriber.subscription_path(
            settings.project, settings.embedder_subscription
        ),
        handler=embedder.handle,
        max_messages=settings.max_messages,
        max_items=settings.batch_max_texts * settings.gather_requests,
        max_latency_s=settings.max_latency_ms / 1000,
        weight=count_weight,
        flow_max_messages=settings.flow_max_messages,
    )

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("embedder.stopping", extra={"fields": {"signal": signum}})
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker.run(subscriber)
