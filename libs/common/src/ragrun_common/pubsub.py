"""Pub/Sub helpers on google-cloud-pubsub: confirmed publishing and batched streaming pull.

Delivery discipline: a message is acked only after its downstream effect is
durable (the publish it caused is confirmed, or its rows are committed), nacked
on a retryable failure so Pub/Sub redelivers it (and dead-letters it after the
subscription's max delivery attempts), and acked with a logged reason on a
permanent failure, so one bad message never stalls the pipeline.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from ragrun_common.errors import RetryableError

log = logging.getLogger(__name__)

# Pub/Sub's limit is 10 MB per publish request; stay clear of it.
MAX_MESSAGE_BYTES = 9_000_000


def make_publisher(max_latency_s: float = 0.02) -> pubsub_v1.PublisherClient:
    """A publisher that batches messages per topic (respects PUBSUB_EMULATOR_HOST)."""
    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(
            max_messages=500, max_bytes=MAX_MESSAGE_BYTES, max_latency=max_latency_s
        )
    )


def publish_all(
    publisher: pubsub_v1.PublisherClient,
    topic_path: str,
    messages: Sequence[tuple[bytes, dict[str, str]]],
    timeout_s: float = 60.0,
) -> list[str]:
    """Publish every message and wait until Pub/Sub confirmed all of them.

    Raises :class:`RetryableError` if any publish fails or times out; the
    caller then nacks its input, and redelivery republishes (downstream stages
    are idempotent, so a partial first attempt does no harm).
    """
    for data, _ in messages:
        if len(data) > MAX_MESSAGE_BYTES:
            raise ValueError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    pending = [publisher.publish(topic_path, data, **attrs) for data, attrs in messages]
    try:
        return [f.result(timeout=timeout_s) for f in pending]
    except (gexc.GoogleAPIError, futures.TimeoutError, RuntimeError) as e:
        raise RetryableError(f"publish to {topic_path} failed: {e}") from e


class Outcome(Enum):
    """What to tell Pub/Sub about one received message."""

    ACK = "ack"
    NACK = "nack"


@dataclass(frozen=True, slots=True)
class Received:
    """The parts of a pulled message a handler needs (no client objects)."""

    data: bytes
    attributes: dict[str, str]
    message_id: str
    delivery_attempt: int | None
    publish_time: Any = None


BatchHandler = Callable[[Sequence[Received]], Sequence[Outcome]]


@dataclass
class BatchingSubscriber:
    """Streaming pull that hands the handler batches gathered across messages.

    The client library's callback only enqueues; one worker thread gathers up
    to ``max_messages`` messages or ``max_items`` items (by ``weight``) or
    whatever arrived within ``max_latency_s`` of the first, calls the handler,
    and acks or nacks each message by the outcome it returns. Flow control
    bounds how many unacked messages (and bytes) this process holds.
    """

    subscription_path: str
    handler: BatchHandler
    max_messages: int = 100
    max_items: int = 1_000
    max_latency_s: float = 0.2
    weight: Callable[[Received], int] = lambda _m: 1
    flow_max_messages: int = 500
    flow_max_bytes: int = 200 * 1024 * 1024
    _queue: queue.Queue[Any] = field(default_factory=queue.Queue, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)

    def run(self, subscriber: pubsub_v1.SubscriberClient | None = None) -> None:
        """Pull and process until :meth:`stop` is called or the stream fails."""
        subscriber = subscriber or pubsub_v1.SubscriberClient()
        flow = pubsub_v1.types.FlowControl(
            max_messages=self.flow_max_messages, max_bytes=self.flow_max_bytes
        )
        stream = subscriber.subscribe(self.subscription_path, self._queue.put, flow_control=flow)
        worker = threading.Thread(target=self._work, name="batch-worker", daemon=True)
        worker.start()
        log.info("subscriber.started", extra={"labels": {"subscription": self.subscription_path}})
        try:
            while not self._stop.is_set():
                try:
                    stream.result(timeout=0.5)
                except futures.TimeoutError:
                    continue
                break  # the stream ended on its own: surface why and exit
        finally:
            stream.cancel()
            self._stop.set()
            worker.join(timeout=30)
            subscriber.close()
        exc = stream.exception(timeout=0) if stream.done() else None
        if exc is not None and not isinstance(exc, futures.CancelledError):
            raise RuntimeError(f"streaming pull on {self.subscription_path} failed") from exc

    def stop(self) -> None:
        self._stop.set()

    def _gather(self) -> list[Any]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        items = self.weight(_received(first))
        deadline = time.monotonic() + self.max_latency_s
        while len(batch) < self.max_messages and items < self.max_items:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                message = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            batch.append(message)
            items += self.weight(_received(message))
        return batch

    def _work(self) -> None:
        while not self._stop.is_set():
            batch = self._gather()
            if not batch:
                continue
            try:
                outcomes = self.handler([_received(m) for m in batch])
            except Exception:
                log.exception("batch.handler_crashed", extra={"fields": {"messages": len(batch)}})
                outcomes = [Outcome.NACK] * len(batch)
            for message, outcome in zip(batch, outcomes, strict=True):
                if outcome is Outcome.ACK:
                    message.ack()
                else:
                    message.nack()
        # Hand back anything still queued so another worker gets it at once.
        while True:
            try:
                self._queue.get_nowait().nack()
            except queue.Empty:
                break


def _received(message: Any) -> Received:
    return Received(
        data=message.data,
        attributes=dict(message.attributes),
        message_id=message.message_id,
        delivery_attempt=message.delivery_attempt,
        publish_time=message.publish_time,
    )
