"""Dead letters: what Pub/Sub gave up on, why, and sending it back after a fix.

Each stage's subscription dead-letters a message after its maximum delivery
attempts to ``<subscription>-dead-letter``, a topic with a subscription of the
same name that keeps the messages. ``list`` peeks (it leaves the messages
there); ``replay`` republishes each message, attributes unchanged, to the topic
its stage consumes, and acks the dead letter only once the publish is
confirmed. Every stage is idempotent, so replaying twice does no harm.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from google.cloud import pubsub_v1

from ragrun_cli.provision import dead_letter_name
from ragrun_cli.replay import STAGES
from ragrun_common.contracts import SCHEMA_ATTR, ChunkBatch, VectorBatch
from ragrun_common.errors import ContractError
from ragrun_common.pubsub import make_subscriber, publish_all
from ragrun_common.settings import CommonSettings

# The message contract each stage consumes, to explain what a dead letter holds.
_DECODERS: dict[str, Callable[[bytes, dict[str, str]], Any]] = {
    "embedder": ChunkBatch.decode,
    "writer": VectorBatch.decode,
}
_SOURCE_TOPIC = {"chunker": "objects_topic", "embedder": "chunks_topic", "writer": "vectors_topic"}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    stage: str
    message_id: str
    published: str
    attempts: int | None
    document: str
    reason: str


def _describe(stage: str, data: bytes, attributes: dict[str, str]) -> tuple[str, str]:
    """(document, reason) for one dead letter, as far as its content tells."""
    if stage == "chunker":
        name = attributes.get("objectId", "?")
        return f"gs://{attributes.get('bucketId', '?')}/{name}", "the chunker kept failing"
    try:
        batch = _DECODERS[stage](data, attributes)
    except ContractError as e:
        return "?", f"does not follow the {attributes.get(SCHEMA_ATTR, '?')} contract: {e}"
    ref = batch.document
    return (
        f"{ref.uri}#{ref.generation}",
        f"valid message the {stage} kept failing on ({len(batch.chunks)} chunks); "
        f"see the {stage} logs for this document",
    )


def list_dead_letters(
    settings: CommonSettings, stages: tuple[str, ...] = STAGES, limit: int = 100
) -> list[DeadLetter]:
    """Peek at up to ``limit`` dead letters per stage; they stay where they are."""
    subscriber = make_subscriber()
    found: list[DeadLetter] = []
    try:
        for stage in stages:
            name = dead_letter_name(getattr(settings, f"{stage}_subscription"))
            path = subscriber.subscription_path(settings.project, name)
            response = subscriber.pull(subscription=path, max_messages=limit, timeout=10)
            ack_ids = []
            for received in response.received_messages:
                message = received.message
                attributes = dict(message.attributes)
                document, reason = _describe(stage, message.data, attributes)
                found.append(
                    DeadLetter(
                        stage=stage,
                        message_id=message.message_id,
                        published=message.publish_time.isoformat(),
                        attempts=_source_attempts(attributes),
                        document=document,
                        reason=reason,
                    )
                )
                ack_ids.append(received.ack_id)
            if ack_ids:  # a peek: hand them straight back
                subscriber.modify_ack_deadline(
                    subscription=path, ack_ids=ack_ids, ack_deadline_seconds=0
                )
    finally:
        subscriber.close()
    return found


def _source_attempts(attributes: dict[str, str]) -> int | None:
    value = attributes.get("CloudPubSubDeadLetterSourceDeliveryCount")
    return int(value) if value and value.isdigit() else None


def replay_dead_letters(
    settings: CommonSettings, stages: tuple[str, ...] = STAGES, limit: int = 1_000
) -> dict[str, int]:
    """Send up to ``limit`` dead letters per stage back to the stage's input topic."""
    subscriber = make_subscriber()
    publisher = pubsub_v1.PublisherClient()
    counts: dict[str, int] = {}
    try:
        for stage in stages:
            name = dead_letter_name(getattr(settings, f"{stage}_subscription"))
            path = subscriber.subscription_path(settings.project, name)
            topic = publisher.topic_path(settings.project, getattr(settings, _SOURCE_TOPIC[stage]))
            counts[stage] = 0
            while counts[stage] < limit:
                response = subscriber.pull(
                    subscription=path, max_messages=min(100, limit - counts[stage]), timeout=10
                )
                received = list(response.received_messages)
                if not received:
                    break
                messages = [(r.message.data, _original(r.message.attributes)) for r in received]
                publish_all(publisher, topic, messages)
                subscriber.acknowledge(subscription=path, ack_ids=[r.ack_id for r in received])
                counts[stage] += len(received)
    finally:
        subscriber.close()
    return counts


def _original(attributes: Any) -> dict[str, str]:
    """The message's own attributes, without those Pub/Sub added when dead-lettering it."""
    return {k: v for k, v in dict(attributes).items() if not k.startswith("CloudPubSubDeadLetter")}


def as_json(letters: list[DeadLetter]) -> str:
    return json.dumps([asdict(letter) for letter in letters], indent=2)
