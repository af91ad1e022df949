"""Create the topics, subscriptions and bucket the pipeline needs (idempotent).

Used by ``ragrun up`` against the emulators and by ``ragrun setup`` (the
compose stack's set-up step). Production resources come from Terraform, with
the same names and policies.

Topics and subscriptions keep messages, acked ones too, for ``RAGRUN_RETENTION``
(Terraform: ``message_retention``), so ``ragrun replay`` can seek back that far.
Running it again applies a changed retention to what exists.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2

from ragrun_cli.settings import CliSettings
from ragrun_common.gcs import storage_client
from ragrun_common.settings import CommonSettings

log = logging.getLogger("ragrun.provision")


@dataclass(frozen=True, slots=True)
class Policies:
    """Delivery policies applied to every subscription."""

    max_delivery_attempts: int = 5
    retention_s: int = 7 * 24 * 3600
    min_backoff_s: int = 1
    max_backoff_s: int = 60

    @classmethod
    def from_env(cls) -> Policies:
        """The defaults, with the retention of ``RAGRUN_RETENTION``."""
        return cls(retention_s=int(CliSettings().retention.total_seconds()))

    @property
    def subscription_retention_s(self) -> int:
        """Retention for subscriptions: the emulator still caps it at Pub/Sub's old 7 days.

        Topics keep the full retention there too, and a seek to a time reaches
        as far back as the topic keeps messages.
        """
        if os.environ.get("PUBSUB_EMULATOR_HOST"):
            return min(self.retention_s, EMULATOR_MAX_SUBSCRIPTION_RETENTION_S)
        return self.retention_s


EMULATOR_MAX_SUBSCRIPTION_RETENTION_S = 7 * 24 * 3600


def dead_letter_name(subscription: str) -> str:
    return f"{subscription}-dead-letter"


def _ensure_topic(
    publisher: pubsub_v1.PublisherClient, project: str, name: str, retention_s: int
) -> str:
    path: str = publisher.topic_path(project, name)
    retention = duration_pb2.Duration(seconds=retention_s)
    try:
        publisher.create_topic(request={"name": path, "message_retention_duration": retention})
    except gexc.AlreadyExists:
        publisher.update_topic(
            request={
                "topic": {"name": path, "message_retention_duration": retention},
                "update_mask": {"paths": ["message_retention_duration"]},
            }
        )
    return path


def _ensure_subscription(
    subscriber: pubsub_v1.SubscriberClient,
    publisher: pubsub_v1.PublisherClient,
    project: str,
    name: str,
    topic: str,
    policies: Policies,
    *,
    push_endpoint: str | None = None,
    ack_deadline_s: int = 60,
) -> None:
    dead_topic = _ensure_topic(publisher, project, dead_letter_name(name), policies.retention_s)
    dead_sub = subscriber.subscription_path(project, dead_letter_name(name))
    with contextlib.suppress(gexc.AlreadyExists):
        subscriber.create_subscription(
            request={"name": dead_sub, "topic": dead_topic, "retain_acked_messages": False}
        )
    request: dict[str, object] = {
        "name": subscriber.subscription_path(project, name),
        "topic": publisher.topic_path(project, topic),
        "ack_deadline_seconds": ack_deadline_s,
        "retain_acked_messages": True,
        "message_retention_duration": duration_pb2.Duration(
            seconds=policies.subscription_retention_s
        ),
        "dead_letter_policy": {
            "dead_letter_topic": dead_topic,
            "max_delivery_attempts": policies.max_delivery_attempts,
        },
        "retry_policy": {
            "minimum_backoff": duration_pb2.Duration(seconds=policies.min_backoff_s),
            "maximum_backoff": duration_pb2.Duration(seconds=policies.max_backoff_s),
        },
    }
    if push_endpoint:
        request["push_config"] = {"push_endpoint": push_endpoint}
    try:
        subscriber.create_subscription(request=request)
    except gexc.AlreadyExists:
        subscriber.update_subscription(
            request={
                "subscription": {
                    "name": request["name"],
                    "retain_acked_messages": True,
                    "message_retention_duration": request["message_retention_duration"],
                },
                "update_mask": {"paths": ["retain_acked_messages", "message_retention_duration"]},
            }
        )
        if push_endpoint:
            subscriber.modify_push_config(
                request={
                    "subscription": request["name"],
                    "push_config": {"push_endpoint": push_endpoint},
                }
            )


def provision(
    settings: CommonSettings,
    *,
    chunker_endpoint: str | None,
    policies: Policies | None = None,
    create_bucket: bool = True,
) -> None:
    """Create (or keep) every topic, subscription and the bucket for ``settings``."""
    policies = policies or Policies.from_env()
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    project = settings.project
    try:
        for topic in (settings.objects_topic, settings.chunks_topic, settings.vectors_topic):
            _ensure_topic(publisher, project, topic, policies.retention_s)
        _ensure_subscription(
            subscriber, publisher, project, settings.chunker_subscription,
            settings.objects_topic, policies, push_endpoint=chunker_endpoint, ack_deadline_s=300,
        )  # fmt: skip
        _ensure_subscription(
            subscriber, publisher, project, settings.embedder_subscription,
            settings.chunks_topic, policies, ack_deadline_s=30,
        )  # fmt: skip
        _ensure_subscription(
            subscriber, publisher, project, settings.writer_subscription,
            settings.vectors_topic, policies, ack_deadline_s=30,
        )  # fmt: skip
    finally:
        subscriber.close()
    if create_bucket:
        client = storage_client(project)
        with contextlib.suppress(gexc.Conflict):
            client.create_bucket(settings.bucket)
