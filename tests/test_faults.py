"""The pipeline under faults, against the real emulator, fake-gcs-server and PostgreSQL.

Embeddings go through the real google-genai client to the local Vertex AI
stand-in, so quota storms can be injected. Each test ends by counting: every
document indexed, every expected chunk present exactly once, nothing stale.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from google.cloud import pubsub_v1

from ragrun_common.contracts import Chunk, DocumentRef, VectorBatch, chunk_id
from ragrun_common.testing.vertex_stub import VertexStub
from tests.conftest import Stack, started_stack, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DIM = 64
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"] + ["golf", "hotel", "india"]


def document_text(i: int, version: int = 1) -> str:
    """A few paragraphs that are unique to document ``i`` (and its version)."""
    paragraphs = []
    for p in range(6):
        words = [WORDS[(i * 7 + p * 3 + k) % len(WORDS)] for k in range(40)]
        paragraphs.append(f"Document {i} version {version} part {p}: " + " ".join(words) + ".")
    return "\n\n".join(paragraphs)


@pytest.fixture(scope="module")
def vertex() -> Iterator[VertexStub]:
    with VertexStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def faults_stack(pubsub_emulator_available: None, vertex: VertexStub) -> Iterator[Stack]:
    env = {
        "RAGRUN_VERTEX_BASE_URL": vertex.base_url,
        "RAGRUN_VERTEX_ACCESS_TOKEN": "test-token",
        "RAGRUN_EMBEDDING_DIM": str(DIM),
        "RAGRUN_CHUNK_TOKENS": "64",
        "RAGRUN_CHUNK_OVERLAP": "8",
        "RAGRUN_WRITER_MAX_ROWS": "200",
    }
    with started_stack(
        embeddings="vertex:text-embedding-005", bucket="faults", extra_env=env
    ) as running:
        yield running


def upload(stack: Stack, docs: dict[str, str]) -> None:
    bucket = stack.bucket()
    for name, text in docs.items():
        bucket.blob(name).upload_from_string(text, content_type="text/plain")


def settled(stack: Stack, names: list[str]) -> bool:
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT name, state FROM ragrun.documents WHERE name = ANY(%s)", (names,)
        ).fetchall()
    return len(rows) == len(names) and all(state == "indexed" for _, state in rows)


def count_exactly_once(stack: Stack, names: list[str]) -> tuple[int, int]:
    """Assert every document's chunks are all there, once, for its current generation only."""
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            """
            SELECT d.name, d.state, d.chunks_expected, d.generation = d.active_generation,
                   count(c.chunk_id) FILTER (WHERE c.generation = d.generation),
                   count(DISTINCT c.chunk_index) FILTER (WHERE c.generation = d.generation),
                   count(c.chunk_id) FILTER (WHERE c.generation <> d.generation)
            FROM ragrun.documents d LEFT JOIN ragrun.chunks c USING (document_id)
            WHERE d.name = ANY(%s)
            GROUP BY d.name, d.state, d.chunks_expected, d.generation, d.active_generation
            """,
            (names,),
        ).fetchall()
    assert len(rows) == len(names)
    for name, state, expected, active, count, distinct, stale in rows:
        assert state == "indexed" and active, (name, state)
        assert expected > 0 and count == distinct == expected, (name, expected, count, distinct)
        assert stale == 0, (name, stale)
    return len(rows), sum(r[2] for r in rows)


def test_kill_9_embedder_and_writer_mid_stream(faults_stack: Stack) -> None:
    docs = {f"kill/doc-{i:03}.txt": document_text(i) for i in range(300)}
    uploader = threading.Thread(target=upload, args=(faults_stack, docs))
    uploader.start()
    local = faults_stack.local
    for _ in range(3):
        for service in ("embedder", "writer"):
            time.sleep(1.5)
            local.procs[service].kill()  # SIGKILL: no cleanup, no acks
            local.procs[service].wait()
            local.start_service(service)
    uploader.join()
    names = list(docs)
    wait_for(lambda: settled(faults_stack, names), 300, "all 300 documents indexed")
    documents, chunks = count_exactly_once(faults_stack, names)
    assert documents == 300 and chunks >= 900


def test_postgres_restart_mid_write(faults_stack: Stack) -> None:
    docs = {f"pg/doc-{i:03}.txt": document_text(i) for i in range(150)}
    names = list(docs)
    first, second = names[:75], names[75:]
    uploader = threading.Thread(target=upload, args=(faults_stack, {n: docs[n] for n in first}))
    uploader.start()
    postgres = faults_stack.local.postgres
    assert postgres is not None
    writer_log = faults_stack.local.log_dir / "writer.log"

    def some_indexed() -> bool:
        with psycopg.connect(faults_stack.env["DATABASE_URL"]) as conn:
            row = conn.execute(
                "SELECT count(*) FROM ragrun.documents WHERE name = ANY(%s) AND state = 'indexed'",
                (first,),
            ).fetchone()
        return bool(row and row[0] > 0)

    wait_for(some_indexed, 120, "the first documents written")
    postgres.stop()  # mid-stream: the rest of the first half is still on its way
    uploader.join()
    upload(faults_stack, {n: docs[n] for n in second})  # arrives while the database is away
    wait_for(lambda: '"writer flush"' in writer_log.read_text(), 120, "the writer to retry")
    time.sleep(15.0)  # longer than Pub/Sub's redelivery backoff for five attempts
    postgres.start()  # same port, same data
    wait_for(lambda: settled(faults_stack, names), 300, "all 150 documents indexed")
    assert count_exactly_once(faults_stack, names)[0] == 150
    # The writer held its messages while the database was away: none dead-lettered.
    dead = json.loads(faults_stack.cli("dlq", "list", "writer", "--json").stdout)
    assert not [d for d in dead if str(d["document"]).startswith("gs://faults/pg/")]


def test_429_storm_backs_off_and_loses_nothing(faults_stack: Stack, vertex: VertexStub) -> None:
    vertex.clear()
    vertex.fail_next(12, status=429)
    docs = {f"quota/doc-{i:03}.txt": document_text(i) for i in range(60)}
    upload(faults_stack, docs)
    names = list(docs)
    wait_for(lambda: settled(faults_stack, names), 300, "all 60 documents indexed")
    count_exactly_once(faults_stack, names)
    statuses = [r.status for r in vertex.requests]
    assert statuses.count(429) == 12 and statuses[-1] == 200
    log = (faults_stack.local.log_dir / "embedder.log").read_text()
    assert '"embeddings.throttled"' in log
    # The messages were held and retried in process, not nacked into the dead-letter topic.
    assert '"embedder.retry"' not in log


def test_reupload_while_embedding_ends_with_the_new_version(
    faults_stack: Stack, vertex: VertexStub
) -> None:
    vertex.clear()
    vertex.set_delay(0.5)  # slow embedding: v2 arrives while v1 is in flight
    try:
        name = "reupload/doc.txt"
        faults_stack.bucket().blob(name).upload_from_string(document_text(1, version=1))
        time.sleep(0.8)
        faults_stack.bucket().blob(name).upload_from_string(document_text(1, version=2))
        wait_for(lambda: settled(faults_stack, [name]), 120, "the document indexed")
        time.sleep(3)  # let any late v1 message arrive; it must change nothing
    finally:
        vertex.set_delay(0)
    count_exactly_once(faults_stack, [name])
    with psycopg.connect(faults_stack.env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT content FROM ragrun.chunks JOIN ragrun.documents d USING (document_id)"
            " WHERE d.name = %s",
            (name,),
        ).fetchall()
    contents = [content for (content,) in rows]
    assert contents and all("version 2" in c for c in contents if "version" in c)
    assert not any("version 1" in c for c in contents)


def test_poison_message_is_dead_lettered_while_others_flow(faults_stack: Stack) -> None:
    """A vector batch the database can never take goes to the dead-letter topic."""
    env = faults_stack.env
    project = env["GOOGLE_CLOUD_PROJECT"]
    poison_doc = DocumentRef(bucket="faults", name="poison.txt", generation=1, chunk_count=1)
    poison = VectorBatch(
        document=poison_doc,
        chunks=[Chunk(chunk_id=chunk_id("faults", "poison.txt", 1, 0), index=0,
                      text="NUL \x00 is not storable in PostgreSQL text", tokens=8)],
        model="vertex:text-embedding-005",
        vectors=np.ones((1, DIM), dtype=np.float32) / np.sqrt(DIM),
    )  # fmt: skip
    publisher = pubsub_v1.PublisherClient()
    data, attrs = poison.encode()
    publisher.publish(publisher.topic_path(project, "ragrun-vectors"), data, **attrs).result(30)

    docs = {f"flow/doc-{i:02}.txt": document_text(i) for i in range(20)}
    upload(faults_stack, docs)
    wait_for(lambda: settled(faults_stack, list(docs)), 180, "the other documents indexed")

    def listed() -> list[dict[str, object]]:
        out = faults_stack.cli("dlq", "list", "writer", "--json").stdout
        return [d for d in json.loads(out) if str(d["document"]).startswith(poison_doc.uri)]

    letters: list[dict[str, object]] = []

    def dead_lettered() -> bool:
        letters[:] = listed()
        return bool(letters)

    wait_for(dead_lettered, 180, "the poison message on the writer's dead-letter subscription")
    assert "valid message the writer kept failing on" in str(letters[0]["reason"])
    assert listed(), "listing must leave the dead letter where it is"
    count_exactly_once(faults_stack, list(docs))

    # After "fixing" nothing, a replay sends it back; it dead-letters again, not lost.
    before = {letter["message_id"] for letter in letters}
    replayed = faults_stack.cli("dlq", "replay", "writer").stdout
    assert "writer: sent" in replayed and "sent 0 " not in replayed
    assert not before & {letter["message_id"] for letter in listed()}

    def back_again() -> bool:
        return any(letter["message_id"] not in before for letter in listed())

    wait_for(back_again, 180, "the replayed poison message to be dead-lettered again")
