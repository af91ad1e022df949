"""Writer worker: streaming pull on the vectors subscription, COPY into PostgreSQL.

Messages are acked only after the transaction holding their rows commits.
Undecodable messages are acked and logged; a lost database connection nacks
the flush (Pub/Sub redelivers); any other database error splits the flush so
one bad message cannot hold back the others.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import psycopg
from opentelemetry.trace import SpanKind
from psycopg_pool import ConnectionPool, PoolTimeout

from ragrun_common import telemetry
from ragrun_common.contracts import VectorBatch
from ragrun_common.db import make_pool, migrate_url
from ragrun_common.errors import ContractError, PermanentError, RetryableError
from ragrun_common.logs import configure_logging
from ragrun_common.pubsub import (
    BatchingSubscriber,
    Outcome,
    Received,
    count_weight,
    make_subscriber,
)
from ragrun_common.retry import Backoff, call_with_retries
from ragrun_writer.plan import plan_flush
from ragrun_writer.settings import WriterSettings
from ragrun_writer.store import FlushResult, write_flush

log = logging.getLogger("ragrun.writer")


@dataclass
class Writer:
    pool: ConnectionPool[psycopg.Connection[Any]]
    backoff: Backoff = field(default_factory=Backoff)

    def decode(self, message: Received) -> VectorBatch:
        # The vectors' dimension picks their index version when they are written
        # (ragrun_common.versions.route); one that fits none is refused there, nacked
        # toward the dead-letter topic with the reason, never dropped here.
        return VectorBatch.decode(message.data, message.attributes)

    def handle(self, messages: Sequence[Received]) -> list[Outcome]:
        outcomes = [Outcome.ACK] * len(messages)
        decoded: list[tuple[int, VectorBatch]] = []
        for i, message in enumerate(messages):
            try:
                decoded.append((i, self.decode(message)))
            except ContractError as e:
                log.error(
                    "writer.bad_message",
                    extra={"fields": {"message_id": message.message_id, "error": str(e)}},
                )
        for i, outcome in self._write(decoded):
            outcomes[i] = outcome
        return outcomes

    def _flush(self, batches: list[VectorBatch]) -> FlushResult:
        """One transaction for ``batches``; a lost database is a RetryableError."""
        try:
            with (
                self.pool.connection() as conn,
                telemetry.tracer.start_as_current_span(
                    "writer copy",
                    kind=SpanKind.CLIENT,
                    attributes={"db.system.name": "postgresql", "db.operation.name": "COPY"},
                ) as span,
            ):
                result = write_flush(conn, plan_flush(batches))
                span.set_attribute("ragrun.rows", result.rows_loaded)
                span.set_attribute("ragrun.documents", result.documents)
                return result
        # ReadOnlySqlTransaction: a primary that became a replica, as in a failover,
        # until the connections reach the new primary.
        except (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction, PoolTimeout) as e:
            raise RetryableError(f"database unavailable: {e}") from e

    def _write(self, decoded: list[tuple[int, VectorBatch]]) -> list[tuple[int, Outcome]]:
        if not decoded:
            return []
        batches = [batch for _, batch in decoded]
        try:
            # Hold the messages (their leases are kept alive) while the database is
            # away, rather than burning Pub/Sub delivery attempts toward the DLQ.
            result = call_with_retries(
                lambda: self._flush(batches), self.backoff, what="writer flush"
            )
        except RetryableError as e:
            log.warning("writer.retry", extra={"fields": {"error": str(e)}})
            return [(i, Outcome.NACK) for i, _ in decoded]
        except (psycopg.Error, PermanentError) as e:
            # One message at a time finds the one the database (or the index versions)
            # refuses; it is nacked toward the dead-letter topic, the others go through.
            if len(decoded) == 1:
                log.error(
                    "writer.batch_failed",
                    extra={"labels": decoded[0][1].document.labels(), "fields": {"error": str(e)}},
                )
                return [(decoded[0][0], Outcome.NACK)]
            return [pair for item in decoded for pair in self._write([item])]
        telemetry.ROWS_WRITTEN.add(result.rows_loaded)
        telemetry.CHUNKS.add(result.rows_loaded, {"stage": "writer"})
        log.info(
            "writer.flushed",
            extra={
                "fields": {
                    "messages": len(decoded),
                    "rows": result.rows_loaded,
                    "documents": result.documents,
                    "stale": result.stale,
                    "indexed": len(result.indexed),
                }
            },
        )
        return [(i, Outcome.ACK) for i, _ in decoded]


def main() -> None:
    settings = WriterSettings()
    configure_logging("writer", settings.log_level, project=settings.project)
    telemetry.configure_telemetry("writer", settings.project, telemetry.TelemetrySettings())
    migrate_url(settings.database_url, settings.embedding.dim)
    pool = make_pool(settings.database_url, max_size=2, name="writer")
    writer = Writer(pool=pool, backoff=Backoff(deadline_s=settings.retry_deadline_s))
    subscriber = make_subscriber()
    worker = BatchingSubscriber(
        subscription_path=subscriber.subscription_path(
            settings.project, settings.writer_subscription
        ),
        handler=writer.handle,
        max_messages=settings.max_messages,
        max_items=settings.max_rows,
        max_latency_s=settings.max_latency_ms / 1000,
        weight=count_weight,
        flow_max_messages=settings.flow_max_messages,
    )

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("writer.stopping", extra={"fields": {"signal": signum}})
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        worker.run(subscriber)
    finally:
        pool.close()
