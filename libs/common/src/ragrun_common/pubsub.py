"""Pub/Sub helpers on google-cloud-pubsub: confirmed publishing and batched streaming pull.

Delivery discipline: a message is acked only after its downstream effect is
durable (the publish it caused is confirmed, or its rows are committed), nacked
on a retryable failure so Pub/Sub redelivers it (and dead-letters it after the
subscription's max delivery attempts), and acked with a logged reason on a
permanent failure, so one bad message never stalls the pipeline.

Trace context rides in message attributes (see :mod:`ragrun_common.telemetry`):
the publisher writes it, and each handled batch becomes a span under it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import pubsub_v1
from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport
from opentelemetry.trace import StatusCode

from ragrun_common import telemetry
from ragrun_common.errors import RetryableError

log = logging.getLogger(__name__)

# Pub/Sub's limit is 10 MB per publish request; stay clear of it.
MAX_MESSAGE_BYTES = 9_000_000


def make_subscriber() -> pubsub_v1.SubscriberClient:
    """A subscriber client that can receive a whole pull response.

    On Google Cloud the client's channel takes responses of any size. Against
    the emulator (``PUBSUB_EMULATOR_HOST``) the client opens a plain channel
    with gRPC's default 4 MiB receive limit, and one pull of a few large chunk
    batches exceeds it, failing every pull of the subscription; this channel
    has no limit either.
    """
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not host:
        return pubsub_v1.SubscriberClient()
    channel = grpc.insecure_channel(
        host,
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))


def make_publisher(max_latency_s: float = 0.02) -> pubsub_v1.PublisherClient:
    """A publisher that batches messages per topic (respects PUBSUB_EMULATOR_HOST).

    Its OpenTelemetry support puts the current trace context into each message's
    attributes (``googclient_traceparent``); without a configured tracer
    provider it records nothing and adds no attribute.
    """
    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(
            max_messages=500, max_bytes=MAX_MESSAGE_BYTES, max_latency=max_latency_s
        ),
        publisher_options=pubsub_v1.types.PublisherOptions(enable_open_telemetry_tracing=True),
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
    # Keep the message (its lease too) and hand it over again with the next gather,
    # its ``deferred`` count raised: a handler may wait for more work to join it.
    DEFER = "defer"


@dataclass(frozen=True, slots=True)
class Received:
    """The parts of a pulled message a handler needs (no client objects)."""

    data: bytes
    attributes: dict[str, str]
    message_id: str
    delivery_attempt: int | None
    publish_time: Any = None
    # How many gathers this process has already handed this message to and been told
    # to defer it; a handler that defers bounds this (it adds one gather's wait).
    deferred: int = 0


BatchHandler = Callable[[Sequence[Received]], Sequence[Outcome]]


def count_weight(message: Received) -> int:
    """A message's ``count`` attribute (chunks in a batch) as its gathering weight; 1
    when it is missing or not a positive number, so a bad message cannot stop a gather
    (the handler rejects it with its reason)."""
    try:
        return max(1, int(message.attributes.get("count", "1")))
    except ValueError:
        return 1


@dataclass(frozen=True, slots=True)
class _Leased:
    """A pulled message this process holds until it acks or nacks it."""

    ack_id: str
    received: Received


@dataclass
class BatchingSubscriber:
    """Pull workers that hand the handler batches gathered across messages.

    Pulling is synchronous (the Pull RPC), not streaming: the worker asks only
    for what it can hold, which is exact flow control (``flow_max_messages``
    unacked messages at most), and a worker killed with SIGKILL leaves only
    leases that expire after the ack deadline, so its messages go to another
    worker. (With streaming pull, messages buffered for a killed client were
    seen stranded on the Pub/Sub emulator for minutes.)

    One thread pulls, one gathers up to ``max_messages`` messages or
    ``max_items`` items (by ``weight``) or whatever arrived within
    ``max_latency_s`` of the first, calls the handler and acks or nacks each
    message by the outcome it returns, and one keeps the leases of held
    messages alive while they wait or are being processed. A message the
    handler defers (:attr:`Outcome.DEFER`) starts the next gather instead.
    """

    subscription_path: str
    handler: BatchHandler
    max_messages: int = 100
    max_items: int = 1_000
    max_latency_s: float = 0.2
    weight: Callable[[Received], int] = lambda _m: 1
    flow_max_messages: int = 500
    lease_s: int = 60
    pull_timeout_s: float = 3.0
    # A stop waits this long in all for the threads and the hand-back: Cloud Run
    # kills an instance 10 s after SIGTERM, and a dead Pub/Sub must not hold it up.
    stop_timeout_s: float = 8.0
    _queue: queue.Queue[_Leased] = field(default_factory=queue.Queue, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    # Set when a stop ran out of time: a thread still busy then settles nothing.
    _abandoned: threading.Event = field(default_factory=threading.Event, init=False)
    _held: dict[str, _Leased] = field(default_factory=dict, init=False)
    _held_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _room: threading.Semaphore = field(init=False)
    # Messages the handler deferred, first in the next gather (the work thread's own).
    _carried: list[_Leased] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._room = threading.Semaphore(self.flow_max_messages)

    @property
    def subscription_id(self) -> str:
        """The subscription's short name (the last part of its path)."""
        return self.subscription_path.rsplit("/", 1)[-1]

    def run(self, subscriber: pubsub_v1.SubscriberClient | None = None) -> None:
        """Pull and process until :meth:`stop` is called."""
        client = subscriber or make_subscriber()
        threads = [
            threading.Thread(target=self._pull, args=(client,), name="pull", daemon=True),
            threading.Thread(target=self._work, args=(client,), name="work", daemon=True),
            threading.Thread(target=self._lease, args=(client,), name="lease", daemon=True),
        ]
        for thread in threads:
            thread.start()
        log.info("subscriber.started", extra={"labels": {"subscription": self.subscription_path}})
        try:
            while not self._stop.wait(0.5):
                if not all(t.is_alive() for t in threads):
                    raise RuntimeError(f"a worker thread on {self.subscription_path} died")
        finally:
            self._stop.set()
            deadline = time.monotonic() + self.stop_timeout_s
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            stuck = [thread.name for thread in threads if thread.is_alive()]
            if stuck:
                self._abandoned.set()
                # Daemon threads: they end with the process. What they hold is
                # handed back below, or redelivered once its lease runs out.
                log.warning(
                    "subscriber.stop_timed_out",
                    extra={"fields": {"threads": stuck, "held": len(self._held)}},
                )
            self._release_all(client, timeout=max(1.0, deadline - time.monotonic()))
            if subscriber is None:
                client.close()

    def stop(self) -> None:
        self._stop.set()

    def _pull(self, client: pubsub_v1.SubscriberClient) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            if not self._room.acquire(timeout=0.5):
                continue  # flow control: hold no more than flow_max_messages
            room = 1
            while room < self.max_messages and self._room.acquire(blocking=False):
                room += 1
            try:
                # Transient errors are retried inside the call only for as long as
                # the pull may take: a stop must not wait out the client's minute.
                response = client.pull(
                    subscription=self.subscription_path,
                    max_messages=room,
                    timeout=self.pull_timeout_s,
                    retry=self._bounded_retry(),
                )
            except (gexc.DeadlineExceeded, gexc.RetryError):
                response = None
            except gexc.GoogleAPICallError as e:
                log.warning("subscriber.pull_failed", extra={"fields": {"error": str(e)}})
                response = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            got = list(response.received_messages) if response is not None else []
            for _ in range(room - len(got)):
                self._room.release()
            if response is not None:
                backoff = 0.5
            for message in got:
                leased = _Leased(message.ack_id, _received(message))
                with self._held_lock:
                    self._held[leased.ack_id] = leased
                self._queue.put(leased)

    def _gather(self) -> list[_Leased]:
        batch, self._carried = self._carried, []
        if not batch:
            try:
                batch = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                return []
        items = sum(self.weight(m.received) for m in batch)
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
            items += self.weight(message.received)
        return batch

    def _work(self, client: pubsub_v1.SubscriberClient) -> None:
        while not self._stop.is_set():
            batch = self._gather()
            if not batch:
                continue
            received = [m.received for m in batch]
            attributes = [r.attributes for r in received]
            with telemetry.consume_span(self.subscription_path, attributes) as span:
                try:
                    outcomes = list(self.handler(received))
                except Exception as e:
                    span.record_exception(e)
                    span.set_status(StatusCode.ERROR, "handler crashed")
                    log.exception(
                        "batch.handler_crashed", extra={"fields": {"messages": len(batch)}}
                    )
                    outcomes = [Outcome.NACK] * len(batch)
                span.set_attribute("ragrun.nacked", outcomes.count(Outcome.NACK))
            if self._abandoned.is_set():
                return  # the stop handed these messages back already
            for outcome in set(outcomes):
                telemetry.MESSAGES.add(
                    outcomes.count(outcome),
                    {"subscription": self.subscription_id, "outcome": outcome.value},
                )
            acks = [m.ack_id for m, o in zip(batch, outcomes, strict=True) if o is Outcome.ACK]
            nacks = [m.ack_id for m, o in zip(batch, outcomes, strict=True) if o is Outcome.NACK]
            # Deferred messages stay held (the lease thread keeps them) for the next gather.
            self._carried = [
                _Leased(m.ack_id, replace(m.received, deferred=m.received.deferred + 1))
                for m, o in zip(batch, outcomes, strict=True)
                if o is Outcome.DEFER
            ]
            self._settle(client, acks, nacks)

    def _settle(
        self,
        client: pubsub_v1.SubscriberClient,
        acks: list[str],
        nacks: list[str],
        timeout: float | None = None,
    ) -> None:
        """Ack and nack (deadline 0: redeliver now); a failure here only means redelivery.

        With ``timeout``, each call is tried once within it rather than retried.
        """
        once: dict[str, Any] = {} if timeout is None else {"retry": None, "timeout": timeout}
        try:
            for chunk in _chunks(acks):
                client.acknowledge(subscription=self.subscription_path, ack_ids=chunk, **once)
            for chunk in _chunks(nacks):
                client.modify_ack_deadline(
                    subscription=self.subscription_path,
                    ack_ids=chunk,
                    ack_deadline_seconds=0,
                    **once,
                )
        except gexc.GoogleAPICallError as e:
            log.warning("subscriber.settle_failed", extra={"fields": {"error": str(e)}})
        finally:
            with self._held_lock:
                for ack_id in acks + nacks:
                    if self._held.pop(ack_id, None) is not None:
                        self._room.release()

    def _lease(self, client: pubsub_v1.SubscriberClient) -> None:
        """Extend the deadline of every held message well before it runs out."""
        while not self._stop.wait(min(10.0, max(1.0, self.lease_s / 3))):
            with self._held_lock:
                held = list(self._held)
            try:
                for chunk in _chunks(held):
                    client.modify_ack_deadline(
                        subscription=self.subscription_path,
                        ack_ids=chunk,
                        ack_deadline_seconds=self.lease_s,
                        retry=self._bounded_retry(),
                    )
            except gexc.GoogleAPICallError as e:
                log.warning("subscriber.lease_failed", extra={"fields": {"error": str(e)}})

    def _bounded_retry(self) -> gretry.Retry:
        """The client's retry of transient errors, within ``pull_timeout_s`` in all."""
        return gretry.Retry(initial=0.1, maximum=1.0, timeout=self.pull_timeout_s)

    def _release_all(self, client: pubsub_v1.SubscriberClient, timeout: float) -> None:
        """On shutdown, hand back what is held so another worker gets it at once."""
        with self._held_lock:
            held = list(self._held)
        self._settle(client, [], held, timeout=timeout)


def _chunks(ack_ids: list[str], size: int = 1_000) -> list[list[str]]:
    return [ack_ids[i : i + size] for i in range(0, len(ack_ids), size)]


def _received(message: Any) -> Received:
    """The handler's view of a ``ReceivedMessage`` from the Pull RPC."""
    inner = message.message
    return Received(
        data=inner.data,
        attributes=dict(inner.attributes),
        message_id=inner.message_id,
        delivery_attempt=message.delivery_attempt or None,
        publish_time=inner.publish_time,
    )
