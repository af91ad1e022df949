"""Replay through Pub/Sub: change the chunking, seek back, and the index follows.

One pipeline (chunker, embedder with the hash provider, writer) on the Pub/Sub
emulator, fake-gcs-server and PostgreSQL. The replay test indexes the samples
with small chunks, restarts the chunker with large ones, seeks the chunker's
subscription to before the uploads and checks that every document now has
exactly the chunks the new settings cut, and nothing else. The snapshot test
seeks to a snapshot and checks that the index ends as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from google.cloud import pubsub_v1

from ragrun_chunker.chunking import ChunkingConfig
from ragrun_chunker.core import Limits, chunk_document
from ragrun_cli.replay import ReplayError, parse_time
from ragrun_cli.settings import CliSettings, parse_duration
from ragrun_common.contracts import DocumentRef
from tests.conftest import SAMPLES, Stack, started_stack, wait_for

SMALL = {"RAGRUN_CHUNK_TOKENS": "48", "RAGRUN_CHUNK_OVERLAP": "8"}
LARGE = {"RAGRUN_CHUNK_TOKENS": "200", "RAGRUN_CHUNK_OVERLAP": "20"}
FIRST = ["architecture.md", "faq.txt", "operations.html", "replay-guide.pdf"]
LATER = ["configuration.md"]


@pytest.fixture(scope="module")
def pipeline(pubsub_emulator_available: None) -> Iterator[Stack]:
    """chunker, embedder (hash vectors: fast) and writer; no query service."""
    with started_stack(
        embeddings="hash",
        bucket="replay-docs",
        services=("chunker", "embedder", "writer"),
        extra_env=dict(SMALL),
    ) as running:
        yield running


def documents(stack: Stack) -> dict[str, dict[str, Any]]:
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT name, state, generation, active_generation, chunks_expected, chunks_written,"
            " revision"
            " FROM ragrun.documents"
        ).fetchall()
    keys = ("state", "generation", "active", "expected", "written", "revision")
    return {row[0]: dict(zip(keys, row[1:], strict=True)) for row in rows}


def chunk_rows(stack: Stack) -> list[tuple[Any, ...]]:
    """Every chunk row, whichever generation or set it belongs to."""
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        return [
            tuple(row)
            for row in conn.execute(
                "SELECT d.name, c.generation, c.chunk_index, c.content, c.tokens,"
                " c.metadata->>'chunking', c.chunk_id, md5(c.content || c.embedding::text)"
                " FROM ragrun.chunks c JOIN ragrun.documents d USING (document_id)"
                " ORDER BY 1, 3, 2"
            ).fetchall()
        ]


def upload(stack: Stack, names: list[str]) -> None:
    bucket = stack.bucket()
    for name in names:
        bucket.blob(name).upload_from_filename(str(SAMPLES / name))


def wait_indexed(
    stack: Stack,
    names: list[str],
    what: str,
    check: Callable[[str, dict[str, Any]], bool] = lambda _name, _doc: True,
) -> None:
    def ready() -> bool:
        docs = documents(stack)
        return all(docs.get(n, {}).get("state") == "indexed" and check(n, docs[n]) for n in names)

    wait_for(ready, timeout_s=240, what=what)


def expected_chunks(stack: Stack, name: str, settings: dict[str, str]) -> list[str]:
    """The texts the chunker cuts from the stored object with ``settings``."""
    blob = stack.bucket().get_blob(name)
    assert blob is not None and blob.generation is not None
    ref = DocumentRef(
        bucket=blob.bucket.name,
        name=name,
        generation=blob.generation,
        content_type=blob.content_type,
    )
    config = ChunkingConfig(
        max_tokens=int(settings["RAGRUN_CHUNK_TOKENS"]),
        overlap_tokens=int(settings["RAGRUN_CHUNK_OVERLAP"]),
    )
    return [c.text for c in chunk_document(ref, blob.download_as_bytes(), config, Limits())]


def test_replay_rechunks_with_the_new_settings_and_leaves_nothing_stale(
    pipeline: Stack,
) -> None:
    before_upload = datetime.now(UTC) - timedelta(seconds=1)
    upload(pipeline, FIRST)
    wait_indexed(pipeline, FIRST, "the samples to be indexed with small chunks")
    small = documents(pipeline)
    for name in FIRST:
        assert small[name]["expected"] == len(expected_chunks(pipeline, name, SMALL)), name

    pipeline.local.start_service("chunker", LARGE)
    pipeline.local.wait_ready("chunker")
    done = pipeline.cli("replay", "chunker", "--to", before_upload.isoformat())
    assert "ragrun-chunker (topic ragrun-objects)" in done.stdout, done.stdout
    assert "chunked again" in done.stdout

    large = {name: expected_chunks(pipeline, name, LARGE) for name in FIRST}
    assert all(len(large[n]) < small[n]["expected"] for n in FIRST), "pick smaller SMALL"
    wait_indexed(
        pipeline,
        FIRST,
        "every sample re-chunked with the large settings",
        lambda n, d: d["revision"] > small[n]["revision"] and d["expected"] == len(large[n]),
    )

    rows = chunk_rows(pipeline)
    docs = documents(pipeline)
    for name in FIRST:
        mine = [r for r in rows if r[0] == name]
        # Exactly the new set: the texts the large settings cut, in order, once each.
        assert [r[3] for r in mine] == large[name], name
        assert [r[2] for r in mine] == list(range(len(large[name])))
        assert {r[1] for r in mine} == {docs[name]["generation"]}  # none waiting hidden
        assert {r[5] for r in mine} == {rows_fingerprint(mine)}
        assert "tokens=200,overlap=20" in rows_fingerprint(mine)
        assert max(r[4] for r in mine) <= 200
        assert docs[name]["revision"] > small[name]["revision"]
        assert docs[name]["active"] == docs[name]["generation"]
    assert max(r[4] for r in rows) > 48  # chunks are larger than before
    assert len({r[6] for r in rows}) == len(rows) == sum(len(v) for v in large.values())

    status = pipeline.status()
    for name in FIRST:
        row = status[f"gs://replay-docs/{name}"]
        assert row["state"] == "indexed"
        assert row["chunks_written"] == row["chunks_expected"] == len(large[name])


def rows_fingerprint(rows: list[tuple[Any, ...]]) -> str:
    (fingerprint,) = {r[5] for r in rows}
    assert isinstance(fingerprint, str)
    return fingerprint


def test_seek_to_a_snapshot_replays_what_came_after_and_changes_nothing(
    pipeline: Stack,
) -> None:
    created = pipeline.cli("snapshot", "create", "before-later", "--subscription", "chunker")
    assert "created before-later of ragrun-chunker (topic ragrun-objects)" in created.stdout
    assert "before-later" in pipeline.cli("snapshot", "list").stdout

    earlier = {n: d for n, d in documents(pipeline).items() if n in FIRST}
    upload(pipeline, LATER)
    wait_indexed(pipeline, LATER, "the later upload to be indexed")
    index_before = chunk_rows(pipeline)
    later = documents(pipeline)

    sought = datetime.now(UTC)
    done = pipeline.cli("replay", "chunker", "--snapshot", "before-later")
    assert "-> snapshot before-later" in done.stdout, done.stdout
    wait_indexed(
        pipeline,
        LATER,
        "the later upload to be chunked again",
        lambda n, d: d["revision"] > later[n]["revision"],
    )
    # Redelivered batches may still be in flight: the index must settle on what it was.
    wait_for(lambda: chunk_rows(pipeline) == index_before, 60, "the index to settle")
    time.sleep(2)
    assert chunk_rows(pipeline) == index_before
    now = documents(pipeline)
    assert now[LATER[0]]["revision"] > int(sought.timestamp() * 1e9) - 5 * 10**9
    # What was acked before the snapshot was not replayed.
    assert {n: now[n] for n in FIRST} == earlier

    pipeline.cli("snapshot", "delete", "before-later")
    assert "0 snapshot(s)" in pipeline.cli("snapshot", "list").stdout
    gone = pipeline.cli("replay", "chunker", "--snapshot", "before-later", check=False)
    assert gone.returncode == 2 and "no snapshot" in gone.stderr


def test_subscriptions_and_topics_keep_messages_for_the_retention(pipeline: Stack) -> None:
    subscriber = pubsub_v1.SubscriberClient()
    publisher = pubsub_v1.PublisherClient()
    project = pipeline.env["GOOGLE_CLOUD_PROJECT"]
    for stage, topic in (("chunker", "objects"), ("embedder", "chunks"), ("writer", "vectors")):
        sub = subscriber.get_subscription(
            subscription=subscriber.subscription_path(project, f"ragrun-{stage}")
        )
        assert sub.retain_acked_messages, stage
        assert sub.message_retention_duration == timedelta(days=7), stage
        kept = publisher.get_topic(topic=publisher.topic_path(project, f"ragrun-{topic}"))
        assert kept.message_retention_duration == timedelta(days=7), topic
    subscriber.close()


def test_replay_of_an_unknown_subscription_says_so(pipeline: Stack) -> None:
    done = pipeline.cli("replay", "nope", "--to", "-1h", check=False)
    assert done.returncode == 2
    assert "no subscription projects/" in done.stderr


# --- no emulator needed -----------------------------------------------------------


def test_chunker_names_its_chunk_set() -> None:
    """Chunks cut with other settings get other ids; the revision orders processings."""
    from ragrun_chunker.core import fingerprint, stamp

    small, large = ChunkingConfig(48, 8), ChunkingConfig(200, 20)
    assert fingerprint(small, "1.0") != fingerprint(large, "1.0") != fingerprint(large, "1.1")
    doc = DocumentRef(bucket="b", name="a.txt", generation=3, content_type="text/plain")
    text = b"One sentence here. " * 200

    def ids(config: ChunkingConfig, revision: int) -> list[str]:
        ref = stamp(doc, fingerprint(config, "1.0"), revision)
        assert (ref.revision, ref.chunking) == (revision, fingerprint(config, "1.0"))
        return [c.chunk_id for c in chunk_document(ref, text, config, Limits())]

    assert ids(small, 1) == ids(small, 2)  # the same cut again: the same ids
    assert not set(ids(small, 1)) & set(ids(large, 2))


def test_replay_refuses_a_time_in_the_future() -> None:
    from ragrun_cli.main import main

    assert main(["replay", "chunker", "--to", "2999-01-01T00:00:00Z"]) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-2h", datetime(2026, 5, 1, 10, 0, tzinfo=UTC)),
        ("-30m", datetime(2026, 5, 1, 11, 30, tzinfo=UTC)),
        ("-1d", datetime(2026, 4, 30, 12, 0, tzinfo=UTC)),
        ("-1d12h", datetime(2026, 4, 30, 0, 0, tzinfo=UTC)),
        ("now", datetime(2026, 5, 1, 12, 0, tzinfo=UTC)),
        ("2026-05-01T09:15:00Z", datetime(2026, 5, 1, 9, 15, tzinfo=UTC)),
        ("2026-05-01T11:15:00+02:00", datetime(2026, 5, 1, 9, 15, tzinfo=UTC)),
    ],
)
def test_replay_times(text: str, expected: datetime) -> None:
    assert parse_time(text, now=datetime(2026, 5, 1, 12, 0, tzinfo=UTC)) == expected


def test_replay_time_without_zone_is_local_and_bad_times_are_refused() -> None:
    local = parse_time("2026-05-01T09:15:00")
    assert local == datetime(2026, 5, 1, 9, 15).astimezone().astimezone(UTC)
    for bad in ("yesterday", "-2x", "2h"):
        with pytest.raises(ReplayError):
            parse_time(bad)


def test_retention_setting_matches_terraform_and_pubsub_limits() -> None:
    import tests.test_deploy_config as deploy

    default = deploy.Terraform(deploy.TF_DIR).variables["message_retention"]["default"]
    assert parse_duration(default) == CliSettings().retention == parse_duration("7d")
    assert CliSettings.model_validate({"RAGRUN_RETENTION": "31d"}).retention.days == 31
    for bad in ("32d", "5m", "7 days", ""):
        with pytest.raises(ValueError):
            CliSettings.model_validate({"RAGRUN_RETENTION": bad})
