"""Re-emit the bucket: publish for every object the notification GCS sent when it was written.

For objects older than the topics' retention, or a bucket that predates its
notification config, seeking cannot help; this can. Each message is what a
``JSON_API_V1`` notification carries: the attributes ``eventType``
(``OBJECT_FINALIZE``), ``payloadFormat``, ``bucketId``, ``objectId``,
``objectGeneration`` and ``eventTime``, and the object resource as the JSON API
lists it. The chunker cannot tell them from the real ones, and since every stage
is idempotent an object that is already indexed stays as it is (unless the
chunking settings changed, in which case it is re-chunked).

Two ways to run it, same code:

- ``ragrun reindex [gs://bucket/prefix] [--rate N]``, with a progress bar;
- ``python -m ragrun_cli.reindex`` as a Cloud Run Job (settings from
  :class:`~ragrun_cli.settings.ReindexSettings`). Each task lists the objects
  and publishes the share whose name hashes to its ``CLOUD_RUN_TASK_INDEX``
  modulo ``CLOUD_RUN_TASK_COUNT``, so the tasks together emit every object
  exactly once, however the listing is paged.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

from google.cloud import pubsub_v1, storage

from ragrun_cli.settings import ReindexSettings
from ragrun_common.gcs import storage_client
from ragrun_common.logs import configure_logging
from ragrun_common.pubsub import make_publisher

log = logging.getLogger("ragrun.reindex")

# Unconfirmed publishes held at once; bounds memory whatever the rate.
MAX_IN_FLIGHT = 1_000


class SourceError(ValueError):
    """A source that is not ``gs://bucket[/prefix]``."""


@dataclass(frozen=True, slots=True)
class Source:
    """Which objects to re-emit."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str | None, default_bucket: str) -> Source:
        """``gs://bucket/prefix``, ``gs://bucket``, or nothing for the configured bucket."""
        if not text:
            return cls(default_bucket)
        if not text.startswith("gs://") or len(text) <= len("gs://"):
            raise SourceError(f"{text!r}: expected gs://BUCKET or gs://BUCKET/PREFIX")
        bucket, _, prefix = text.removeprefix("gs://").partition("/")
        if not bucket:
            raise SourceError(f"{text!r}: no bucket name")
        return cls(bucket, prefix)

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"


def shard(name: str, count: int) -> int:
    """The task (of ``count``) that emits object ``name``: a stable hash, not Python's."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def notification(resource: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The data and attributes of the OBJECT_FINALIZE notification for one object resource."""
    attributes = {
        "eventType": "OBJECT_FINALIZE",
        "payloadFormat": "JSON_API_V1",
        "bucketId": str(resource["bucket"]),
        "objectId": str(resource["name"]),
        "objectGeneration": str(resource["generation"]),
    }
    # GCS stamps the finalize event with the time the generation was written.
    if resource.get("timeCreated"):
        attributes["eventTime"] = str(resource["timeCreated"])
    return json.dumps(resource, separators=(",", ":")).encode(), attributes


def list_objects(client: storage.Client, source: Source) -> Iterator[dict[str, Any]]:
    """The live objects under ``source``, each as the JSON API's object resource."""
    for blob in client.list_blobs(source.bucket, prefix=source.prefix or None):
        # The resource exactly as the JSON API listed it (what GCS puts in a notification).
        resource: dict[str, Any] = blob._properties
        yield resource


def count_objects(client: storage.Client, source: Source, task_index: int, task_count: int) -> int:
    """How many objects this task will emit (a cheap listing of names only)."""
    blobs = client.list_blobs(
        source.bucket, prefix=source.prefix or None, fields="items(name),nextPageToken"
    )
    return sum(1 for blob in blobs if shard(blob.name, task_count) == task_index)


@dataclass
class Progress:
    """Counts so far; ``total`` is this task's share when it was counted up front."""

    total: int | None = None
    listed: int = 0
    published: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    first_error: str | None = None

    @property
    def done(self) -> int:
        return self.published + self.failed

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.published / self.elapsed if self.elapsed > 0 else 0.0


def reindex(
    publisher: pubsub_v1.PublisherClient,
    topic_path: str,
    resources: Iterable[Mapping[str, Any]],
    *,
    task_index: int = 0,
    task_count: int = 1,
    rate: float = 0.0,
    progress: Progress | None = None,
    on_progress: Callable[[Progress], None] = lambda _p: None,
    progress_every_s: float = 0.5,
) -> Progress:
    """Publish the notification of every resource in this task's share, at most ``rate``/s.

    ``rate`` 0 means as fast as Pub/Sub confirms. Publishing never stops at a
    failed message; the failures are counted and the first one kept.
    """
    state = progress or Progress()
    state.started = started = time.monotonic()
    pending: collections.deque[futures.Future[str]] = collections.deque()
    emitted = 0
    last_report = 0.0

    def settle(block: bool) -> None:
        while pending and (block or pending[0].done()):
            try:
                pending.popleft().result(timeout=120)
                state.published += 1
            except Exception as e:  # any publish failure is counted, not fatal
                state.failed += 1
                state.first_error = state.first_error or f"{type(e).__name__}: {e}"

    for resource in resources:
        state.listed += 1
        if shard(str(resource["name"]), task_count) != task_index:
            continue
        if rate > 0:
            delay = started + emitted / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        data, attributes = notification(resource)
        pending.append(publisher.publish(topic_path, data, **attributes))
        emitted += 1
        settle(block=len(pending) >= MAX_IN_FLIGHT)
        if time.monotonic() - last_report >= progress_every_s:
            last_report = time.monotonic()
            on_progress(state)
    while pending:
        settle(block=True)
    on_progress(state)
    return state


def run(
    settings: ReindexSettings,
    source: Source,
    *,
    on_progress: Callable[[Progress], None] = lambda _p: None,
    progress_every_s: float = 0.5,
    count_first: bool = True,
) -> Progress:
    """List ``source`` and publish this task's share to the objects topic."""
    client = storage_client(settings.project)
    total = (
        count_objects(client, source, settings.task_index, settings.task_count)
        if count_first
        else None
    )
    publisher = make_publisher()
    topic = publisher.topic_path(settings.project, settings.objects_topic)
    try:
        return reindex(
            publisher,
            topic,
            list_objects(client, source),
            task_index=settings.task_index,
            task_count=settings.task_count,
            rate=settings.reindex_rate,
            progress=Progress(total=total),
            on_progress=on_progress,
            progress_every_s=progress_every_s,
        )
    finally:
        publisher.stop()


def main() -> int:
    """Cloud Run Job entry point: this task's share of ``RAGRUN_REINDEX_SOURCE``."""
    settings = ReindexSettings()
    configure_logging("reindex", settings.log_level)
    source = Source.parse(settings.reindex_source, settings.bucket)
    labels = {
        "source": str(source),
        "task": f"{settings.task_index}/{settings.task_count}",
    }
    log.info("reindex.started", extra={"labels": labels, "fields": {"rate": settings.reindex_rate}})

    def report(p: Progress) -> None:
        log.info(
            "reindex.progress",
            extra={
                "labels": labels,
                "fields": {"published": p.published, "failed": p.failed, "total": p.total},
            },
        )

    done = run(settings, source, on_progress=report, progress_every_s=30)
    fields = {
        "listed": done.listed,
        "published": done.published,
        "failed": done.failed,
        "seconds": round(done.elapsed, 1),
        "error": done.first_error,
    }
    if done.failed:
        log.error("reindex.failed", extra={"labels": labels, "fields": fields})
        return 1  # the task fails, so Cloud Run retries it (re-emitting is harmless)
    log.info("reindex.done", extra={"labels": labels, "fields": fields})
    return 0


if __name__ == "__main__":
    sys.exit(main())
