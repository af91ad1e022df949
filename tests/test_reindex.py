"""Re-emit the bucket: the notifications GCS would send, split across Cloud Run Job tasks.

Runs against the Pub/Sub emulator and fake-gcs-server (no pipeline services):
fake-gcs-server notifies a topic of its own, so the messages on the objects topic
are exactly the ones reindex published, counted on pull subscriptions created
for each test.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

import tests.test_deploy_config as deploy
from ragrun_chunker.events import PUBSUB_PUBLISHED, Action, decode_event
from ragrun_cli.components import FakeGcs, PubSubEmulator
from ragrun_cli.reindex import Source, SourceError, notification, shard
from ragrun_cli.settings import ReindexSettings
from ragrun_common.gcs import storage_client

PROJECT = "reindex-test"
BUCKET = "rx-docs"
OBJECTS_TOPIC = "ragrun-objects"
GCS_TOPIC = "gcs-notifications"

# 30 objects under a/ (the split is checked on these), 8 under b/, 2 outside both.
NAMES = [f"a/doc-{i:02d}.txt" for i in range(30)] + [f"b/{i}.md" for i in range(8)]
NAMES += ["top.html", "c/skip.txt"]


class Env:
    """The emulators' addresses and a publisher/subscriber on them."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.subscriber = pubsub_v1.SubscriberClient()
        self.gcs_notifications: list[Any] = []  # what fake-gcs-server sent for the uploads

    def subscribe(self, topic: str) -> str:
        """A new pull subscription: it sees only what is published from now on."""
        path = self.subscriber.subscription_path(PROJECT, f"count-{uuid.uuid4().hex[:8]}")
        self.subscriber.create_subscription(
            request={"name": path, "topic": f"projects/{PROJECT}/topics/{topic}"}
        )
        return path

    def drain(self, path: str, idle_pulls: int = 2) -> list[Any]:
        """Every message on the subscription (acked), until it stays empty."""
        got: list[Any] = []
        idle = 0
        while idle < idle_pulls:
            try:
                response = self.subscriber.pull(
                    request={"subscription": path, "max_messages": 1000}, timeout=3
                )
            except gexc.DeadlineExceeded:
                idle += 1
                continue
            if not response.received_messages:
                idle += 1
                continue
            idle = 0
            got += [m.message for m in response.received_messages]
            self.subscriber.acknowledge(
                request={
                    "subscription": path,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )
        return got

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            env={**os.environ, **self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def emulators(pubsub_emulator_available: None) -> Iterator[Env]:
    home = Path(tempfile.mkdtemp(prefix="ragrun-test-reindex-"))
    pubsub = PubSubEmulator(home)
    gcs: FakeGcs | None = None
    saved = dict(os.environ)
    try:
        pubsub.start()
        gcs = FakeGcs(home, PROJECT, GCS_TOPIC, pubsub.host)
        gcs.start()
        env = {
            "PUBSUB_EMULATOR_HOST": pubsub.host,
            "STORAGE_EMULATOR_HOST": gcs.url,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "RAGRUN_BUCKET": BUCKET,
            "RAGRUN_OBJECTS_TOPIC": OBJECTS_TOPIC,
        }
        os.environ.update(env)
        publisher = pubsub_v1.PublisherClient()
        for topic in (OBJECTS_TOPIC, GCS_TOPIC):
            publisher.create_topic(request={"name": publisher.topic_path(PROJECT, topic)})
        result = Env(env)
        uploads = result.subscribe(GCS_TOPIC)
        bucket = storage_client(PROJECT).create_bucket(BUCKET)
        for name in NAMES:
            kind = {"txt": "text/plain", "md": "text/markdown", "html": "text/html"}
            content_type = kind[name.rsplit(".", 1)[1]]
            bucket.blob(name).upload_from_string(f"contents of {name}\n", content_type=content_type)
        result.gcs_notifications = result.drain(uploads)
        yield result
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if gcs is not None:
            gcs.stop()
        pubsub.stop()
        shutil.rmtree(home, ignore_errors=True)


def _job_log(stdout: str, event: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        entry = json.loads(line)
        if entry["message"] == event:
            assert isinstance(entry, dict)
            return entry
    raise AssertionError(f"no {event} line in:\n{stdout}")


def test_job_tasks_emit_every_object_exactly_once(emulators: Env) -> None:
    counted = emulators.subscribe(OBJECTS_TOPIC)
    shares = []
    for index in range(3):
        done = emulators.run(
            "-m",
            "ragrun_cli.reindex",
            env={
                "CLOUD_RUN_TASK_INDEX": str(index),
                "CLOUD_RUN_TASK_COUNT": "3",
                "RAGRUN_REINDEX_SOURCE": f"gs://{BUCKET}/a/",
                "RAGRUN_REINDEX_RATE": "0",
            },
        )
        assert done.returncode == 0, done.stderr + done.stdout
        summary = _job_log(done.stdout, "reindex.done")
        assert summary["listed"] == 30 and summary["failed"] == 0
        assert summary["logging.googleapis.com/labels"]["task"] == f"{index}/3"
        shares.append(summary["published"])

    messages = emulators.drain(counted)
    emitted = collections.Counter(m.attributes["objectId"] for m in messages)
    expected = [n for n in NAMES if n.startswith("a/")]
    assert sorted(emitted) == expected
    assert set(emitted.values()) == {1}, "some object was emitted twice"
    assert sum(shares) == len(expected) and all(shares), shares


def test_reemitted_notification_is_the_one_gcs_sends(emulators: Env) -> None:
    counted = emulators.subscribe(OBJECTS_TOPIC)
    done = emulators.run("-m", "ragrun_cli.main", "reindex", f"gs://{BUCKET}/top", "--rate", "0")
    assert done.returncode == 0, done.stderr
    (ours,) = emulators.drain(counted)
    (theirs,) = [
        m
        for m in emulators.gcs_notifications
        if m.attributes["objectId"] == "top.html" and m.attributes["eventType"] == "OBJECT_FINALIZE"
    ]
    keys = ("eventType", "payloadFormat", "bucketId", "objectId", "objectGeneration")
    assert {k: ours.attributes[k] for k in keys} == {k: theirs.attributes[k] for k in keys}
    ours_data, theirs_data = json.loads(ours.data), json.loads(theirs.data)
    for key in ("bucket", "name", "generation", "size", "contentType", "md5Hash"):
        assert str(ours_data[key]) == str(theirs_data[key]), key

    # And the chunker reads both the same way (as a Pub/Sub push delivers them).
    def decoded(message: Any) -> Any:
        body = {
            "message": {
                "data": base64.b64encode(message.data).decode(),
                "attributes": dict(message.attributes),
            }
        }
        return decode_event(PUBSUB_PUBLISHED, body)

    assert decoded(ours) == decoded(theirs)
    assert decoded(ours).action is Action.INDEX


def test_cli_throttles_and_summarises(emulators: Env) -> None:
    counted = emulators.subscribe(OBJECTS_TOPIC)
    done = emulators.run("-m", "ragrun_cli.main", "reindex", f"gs://{BUCKET}/b/", "--rate", "20")
    assert done.returncode == 0, done.stderr
    assert f"listing gs://{BUCKET}/b/" in done.stdout
    summary = re.search(r"published (\d+) notification\(s\) .* in ([\d.]+) s", done.stdout)
    assert summary, done.stdout
    assert int(summary.group(1)) == 8
    assert float(summary.group(2)) >= 7 / 20  # 8 messages at 20/s: the last one leaves at 0.35 s
    assert "8/8 published" in done.stderr  # the progress line's last state
    assert len(emulators.drain(counted)) == 8


def test_default_source_is_the_configured_bucket(emulators: Env) -> None:
    counted = emulators.subscribe(OBJECTS_TOPIC)
    done = emulators.run("-m", "ragrun_cli.main", "reindex", "--rate", "0")
    assert done.returncode == 0, done.stderr
    assert sorted(m.attributes["objectId"] for m in emulators.drain(counted)) == sorted(NAMES)


def test_bad_source_is_a_usage_error(emulators: Env) -> None:
    done = emulators.run("-m", "ragrun_cli.main", "reindex", "s3://elsewhere")
    assert done.returncode == 2
    assert "expected gs://BUCKET" in done.stderr


# --- no emulator needed -----------------------------------------------------------


def test_source_parsing() -> None:
    assert Source.parse(None, "dflt") == Source("dflt", "")
    assert Source.parse("gs://b", "dflt") == Source("b", "")
    assert Source.parse("gs://b/x/y/", "dflt") == Source("b", "x/y/")
    for bad in ("b/x", "gs://", "gs:///x"):
        with pytest.raises(SourceError):
            Source.parse(bad, "dflt")


def test_split_is_stable_and_covers_every_task() -> None:
    names = [f"doc-{i}" for i in range(1000)]
    first = [shard(n, 7) for n in names]
    assert first == [shard(n, 7) for n in names]
    assert set(first) == set(range(7))
    # Fixed values: the split must not change with Python's hash seed or between releases
    # (tasks of one execution may run different images during a rollout).
    assert [shard("a/doc-00.txt", 3), shard("top.html", 5), shard("doc-1", 1000)] == [0, 1, 401]


def test_task_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="CLOUD_RUN_TASK_INDEX"):
        ReindexSettings.model_validate({"CLOUD_RUN_TASK_INDEX": "3", "CLOUD_RUN_TASK_COUNT": "3"})


def test_notification_shape() -> None:
    resource = {"bucket": "b", "name": "x.pdf", "generation": "17", "timeCreated": "T"}
    data, attrs = notification(resource)
    assert json.loads(data) == resource
    assert attrs == {
        "eventType": "OBJECT_FINALIZE",
        "payloadFormat": "JSON_API_V1",
        "bucketId": "b",
        "objectId": "x.pdf",
        "objectGeneration": "17",
        "eventTime": "T",
    }


# --- Terraform: the job ----------------------------------------------------------


@pytest.fixture(scope="module")
def tf() -> deploy.Terraform:
    return deploy.Terraform(deploy.TF_DIR)


def test_terraform_reindex_job(tf: deploy.Terraform) -> None:
    (job,) = tf.of_type("google_cloud_run_v2_job").values()
    (template,) = job["template"]
    (task,) = template["template"]
    (container,) = task["containers"]
    assert container["command"] == ["python", "-m", "ragrun_cli.reindex"]
    names = {e["name"] for e in container.get("env", [])}
    for dynamic in container.get("dynamic", []):
        for kind, block in dynamic.items():
            if kind == "env":
                names |= set(tf.local_map(block["for_each"]))
    readable = deploy._aliases(ReindexSettings)
    assert names - readable == set(), f"the job sets variables no setting reads: {names - readable}"
    assert {"RAGRUN_REINDEX_SOURCE", "RAGRUN_REINDEX_RATE", "RAGRUN_OBJECTS_TOPIC"} <= names

    # Its own identity, allowed to read the bucket and publish to the objects topic only.
    account = deploy._ref(task["service_account"], "google_service_account")
    others = set()
    for _, _, body, entry in deploy._cloud_run(tf):
        service_template = deploy._block(body, "template")
        assert service_template is not None
        sa = deploy._each(service_template["service_account"], entry)
        others.add(deploy._ref(sa, "google_service_account"))
    assert account not in others
    grants = {
        (rtype, body["role"])
        for rtype, resources in tf.resources.items()
        if rtype.endswith("_iam_member")
        for body in resources.values()
        if f"google_service_account.{account}." in str(body.get("member"))
    }
    assert grants == {
        ("google_storage_bucket_iam_member", "roles/storage.objectViewer"),
        ("google_pubsub_topic_iam_member", "roles/pubsub.publisher"),
    }
    for body in tf.of_type("google_pubsub_topic_iam_member").values():
        if f"google_service_account.{account}." in body["member"]:
            assert deploy._ref(body["topic"], "google_pubsub_topic") == "objects"
