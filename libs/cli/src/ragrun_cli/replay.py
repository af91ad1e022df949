"""Replay a stage by seeking its Pub/Sub subscription; manage the snapshots to seek to.

Every stage is idempotent, so a replay never duplicates anything: replaying the
chunker's subscription re-chunks (with the chunker's current settings), the
embedder's re-embeds, the writer's re-writes. How far back a seek to a time can
go is the retention of the topic and subscription (``RAGRUN_RETENTION``, at
most 31 days); a snapshot keeps a subscription's state for at most 7 days.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.protobuf import timestamp_pb2

from ragrun_cli.settings import format_duration, parse_duration
from ragrun_common.settings import CommonSettings

STAGES = ("chunker", "embedder", "writer")

_RELATIVE = re.compile(r"-\s*(\S+)")
# Seeking to a future time acks everything before it: refuse it beyond clock skew.
_FUTURE_SLACK = timedelta(minutes=1)


class ReplayError(Exception):
    """A replay or snapshot request that cannot be carried out (printed, no traceback)."""


def subscription_path(settings: CommonSettings, name: str) -> str:
    """The full path of a stage name (``chunker``), a subscription id, or a path."""
    if name.startswith("projects/"):
        return name
    if name in STAGES:
        name = getattr(settings, f"{name}_subscription")
    path: str = pubsub_v1.SubscriberClient.subscription_path(settings.project, name)
    return path


def snapshot_path(settings: CommonSettings, name: str) -> str:
    if name.startswith("projects/"):
        return name
    path: str = pubsub_v1.SubscriberClient.snapshot_path(settings.project, name)
    return path


def short_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An aware UTC time from ``now``, ``-2h`` / ``-30m`` / ``-1d``, or ISO-8601.

    An ISO time without a zone is local time, as people read clocks.
    """
    now = now or datetime.now(UTC)
    text = text.strip()
    if text == "now":
        return now
    relative = _RELATIVE.fullmatch(text)
    if relative:
        try:
            return now - parse_duration(relative.group(1))
        except ValueError as e:
            raise ReplayError(f"--to {text}: {e}") from e
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as e:
        raise ReplayError(
            f"--to {text!r}: give an ISO-8601 time (2026-05-01T12:00:00Z) "
            "or a time ago (-2h, -30m, -1d)"
        ) from e
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()
    return parsed.astimezone(UTC)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def approx(delta: timedelta) -> str:
    """``delta`` rounded for people: ``45s``, ``30m``, ``2.5h``, ``6.9d``."""
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            value = seconds / size
            return (
                f"{value:.0f}{unit}" if value >= 10 or value.is_integer() else f"{value:.1f}{unit}"
            )
    return f"{seconds}s"


def ago(value: datetime, now: datetime | None = None) -> str:
    delta = (now or datetime.now(UTC)) - value
    return "in the future" if delta.total_seconds() < 0 else f"{approx(delta)} ago"


@dataclass(frozen=True, slots=True)
class SeekReport:
    """What a seek did, and what the user should know about how far back it reaches."""

    subscription: str
    topic: str
    target: str
    warnings: tuple[str, ...] = ()


def _subscription(
    subscriber: pubsub_v1.SubscriberClient, path: str
) -> pubsub_v1.types.Subscription:
    try:
        return subscriber.get_subscription(subscription=path)
    except gexc.NotFound as e:
        raise ReplayError(f"no subscription {path}") from e


def _kept_for(subscription: pubsub_v1.types.Subscription) -> timedelta | None:
    """How far back a seek to a time can reach (topic or subscription retention)."""
    kept: list[timedelta] = []
    if subscription.retain_acked_messages and subscription.message_retention_duration:
        kept.append(subscription.message_retention_duration)
    publisher = pubsub_v1.PublisherClient()
    try:
        topic = publisher.get_topic(topic=subscription.topic)
        if topic.message_retention_duration:
            kept.append(topic.message_retention_duration)
    except gexc.GoogleAPIError:
        pass  # no permission to read the topic: the subscription's retention is what we know
    return max(kept) if kept else None


def check_past(when: datetime, now: datetime | None = None) -> None:
    """Refuse a future time: a seek there would ack every message published before it."""
    if when > (now or datetime.now(UTC)) + _FUTURE_SLACK:
        raise ReplayError(
            f"{iso(when)} is in the future: seeking there would ack every pending message"
        )


def seek_to_time(
    subscriber: pubsub_v1.SubscriberClient, path: str, when: datetime, now: datetime | None = None
) -> SeekReport:
    """Make every message published at or after ``when`` (and still kept) unacked again."""
    now = now or datetime.now(UTC)
    check_past(when, now)
    subscription = _subscription(subscriber, path)
    warnings: list[str] = []
    kept = _kept_for(subscription)
    if kept is None:
        warnings.append(
            "neither the subscription nor its topic keeps acked messages: only unacked ones "
            "come back (run `ragrun setup`, or set message_retention in Terraform)"
        )
    elif now - when > kept:
        warnings.append(
            f"messages are kept for {format_duration(kept)}: the replay starts at "
            f"{iso(now - kept)}, not {iso(when)}"
        )
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when.astimezone(UTC).replace(tzinfo=None))
    subscriber.seek(request={"subscription": path, "time": stamp})
    return SeekReport(
        subscription=path,
        topic=subscription.topic,
        target=f"{iso(when)} ({ago(when, now)})",
        warnings=tuple(warnings),
    )


def seek_to_snapshot(
    subscriber: pubsub_v1.SubscriberClient, path: str, snapshot: str
) -> SeekReport:
    """Give the subscription the acks it had when ``snapshot`` was taken."""
    subscription = _subscription(subscriber, path)
    try:
        subscriber.seek(request={"subscription": path, "snapshot": snapshot})
    except gexc.NotFound as e:
        raise ReplayError(f"no snapshot {snapshot} (expired or deleted?)") from e
    except (gexc.FailedPrecondition, gexc.InvalidArgument) as e:
        raise ReplayError(f"cannot seek {short_name(path)} to {snapshot}: {e.message}") from e
    return SeekReport(
        subscription=path, topic=subscription.topic, target=f"snapshot {short_name(snapshot)}"
    )


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    name: str
    topic: str
    expires: datetime | None

    def expires_text(self, now: datetime | None = None) -> str:
        if self.expires is None:
            return "-"
        return f"{iso(self.expires)} (in {approx(self.expires - (now or datetime.now(UTC)))})"


def _info(snapshot: pubsub_v1.types.Snapshot) -> SnapshotInfo:
    expires = snapshot.expire_time
    # The emulator reports no expiry (the epoch); real Pub/Sub always does.
    when = expires if expires and expires.timestamp() > 0 else None
    return SnapshotInfo(
        name=short_name(snapshot.name), topic=short_name(snapshot.topic), expires=when
    )


def create_snapshot(
    subscriber: pubsub_v1.SubscriberClient, snapshot: str, subscription: str
) -> SnapshotInfo:
    """Record ``subscription``'s acks now, to seek back to within the next (at most) 7 days."""
    _subscription(subscriber, subscription)
    try:
        created = subscriber.create_snapshot(
            request={"name": snapshot, "subscription": subscription}
        )
    except gexc.AlreadyExists as e:
        raise ReplayError(f"snapshot {short_name(snapshot)} exists; delete it first") from e
    except (gexc.FailedPrecondition, gexc.InvalidArgument) as e:
        raise ReplayError(f"cannot snapshot {short_name(subscription)}: {e.message}") from e
    return _info(created)


def list_snapshots(subscriber: pubsub_v1.SubscriberClient, project: str) -> list[SnapshotInfo]:
    found = subscriber.list_snapshots(request={"project": f"projects/{project}"})
    return sorted((_info(s) for s in found), key=lambda s: s.name)


def delete_snapshot(subscriber: pubsub_v1.SubscriberClient, snapshot: str) -> None:
    try:
        subscriber.delete_snapshot(request={"snapshot": snapshot})
    except gexc.NotFound as e:
        raise ReplayError(f"no snapshot {short_name(snapshot)}") from e
