"""The services' pull worker against the real Pub/Sub emulator: large messages get through.

Chunk batches of a big document are megabytes each; one pull returns several
of them at once. gRPC's default 4 MiB receive limit would fail every pull of
the subscription, so the embedder would stall on the first large document.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from google.cloud import pubsub_v1

from ragrun_cli.components import PubSubEmulator
from ragrun_common.pubsub import BatchingSubscriber, Outcome, Received
from tests.conftest import wait_for

PROJECT = "ragrun-pull"


@pytest.fixture
def emulator(
    pubsub_emulator_available: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PubSubEmulator]:
    home = Path(tempfile.mkdtemp(prefix="ragrun-pull-"))
    server = PubSubEmulator(home)
    try:
        server.start()
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", server.host)
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def topic_with_subscription(
    name: str, ack_deadline_s: int
) -> tuple[pubsub_v1.PublisherClient, str, str]:
    """A publisher, a new topic ``name`` and its subscription ``name-worker``."""
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(PROJECT, name)
    publisher.create_topic(name=topic)
    with pubsub_v1.SubscriberClient() as admin:
        subscription = admin.subscription_path(PROJECT, f"{name}-worker")
        admin.create_subscription(
            name=subscription, topic=topic, ack_deadline_seconds=ack_deadline_s
        )
    return publisher, topic, subscription


def test_a_pull_of_several_megabyte_messages_is_received(emulator: PubSubEmulator) -> None:
    publisher, topic, subscription = topic_with_subscription("big-batches", 30)
    payloads = [bytes([i]) * 3_000_000 for i in range(4)]  # 12 MB: one pull of 4 is > 4 MiB
    for future in [publisher.publish(topic, data) for data in payloads]:
        future.result(timeout=30)

    received: list[bytes] = []

    def handle(messages: Sequence[Received]) -> list[Outcome]:
        received.extend(m.data for m in messages)
        return [Outcome.ACK] * len(messages)

    worker = BatchingSubscriber(
        subscription_path=subscription, handler=handle, max_messages=10, max_latency_s=0.5
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as e:  # surfaced below
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(received) >= len(payloads), 60, "the large messages")
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert errors == []
    assert sorted(received) == sorted(payloads)


def test_a_deferred_message_comes_back_with_the_next_gather_then_is_acked(
    emulator: PubSubEmulator,
) -> None:
    publisher, topic, subscription = topic_with_subscription("deferred", 10)
    for i in range(3):
        publisher.publish(topic, f"m{i}".encode()).result(timeout=30)

    seen: list[tuple[bytes, int]] = []

    def handle(messages: Sequence[Received]) -> list[Outcome]:
        seen.extend((m.data, m.deferred) for m in messages)
        return [Outcome.DEFER if m.deferred == 0 else Outcome.ACK for m in messages]

    worker = BatchingSubscriber(
        subscription_path=subscription, handler=handle, max_messages=10, max_latency_s=0.2
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(seen) >= 6, 30, "each message handed over twice")
        # Nothing to wait on: an unacked or lost lease would show as a redelivery
        # once the 10 s ack deadline has passed.
        time.sleep(12)
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert sorted(seen) == sorted([(f"m{i}".encode(), n) for i in range(3) for n in (0, 1)])
    with pubsub_v1.SubscriberClient() as admin:
        leftover = admin.pull(subscription=subscription, max_messages=10, timeout=5)
    assert list(leftover.received_messages) == []


def test_a_stop_returns_within_its_budget_when_pubsub_is_gone(
    emulator: PubSubEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM with Pub/Sub unreachable and a batch stuck in the handler: the worker
    still returns within its stop budget (Cloud Run kills 10 s after SIGTERM), and
    says what it left behind."""
    publisher, topic, subscription = topic_with_subscription("gone", 30)
    publisher.publish(topic, b"stuck").result(timeout=30)

    entered = threading.Event()
    release = threading.Event()

    def handle(messages: Sequence[Received]) -> list[Outcome]:
        entered.set()
        release.wait(120)  # e.g. publishing results to a Pub/Sub that is gone
        return [Outcome.ACK] * len(messages)

    worker = BatchingSubscriber(
        subscription_path=subscription, handler=handle, max_latency_s=0.1, stop_timeout_s=3
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(entered.is_set, 30, "the handler to receive the message")
        emulator.stop()
        worker.stop()
        # Without the budget: 33 s for the stuck thread, then a minute of retried nacks.
        thread.join(timeout=20)
        assert not thread.is_alive(), "the worker did not return after stop()"
    finally:
        release.set()
    stop_logs = [r for r in caplog.records if r.getMessage() == "subscriber.stop_timed_out"]
    assert stop_logs, "a stop that leaves work behind is logged"
    fields = stop_logs[0].fields  # type: ignore[attr-defined]
    assert "work" in fields["threads"] and fields["held"] == 1
