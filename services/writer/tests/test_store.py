"""The writer against a real PostgreSQL + pgvector: idempotent, generation-safe loads."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from ragrun_common.contracts import Chunk, DocumentRef, VectorBatch, chunk_id
from ragrun_common.db import migrate
from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.hashing import HashEmbedder
from ragrun_writer.plan import plan_flush
from ragrun_writer.store import write_flush

DIM = 384
EMBEDDER = HashEmbedder(DIM)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[object]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        migrate(c, DIM)
        register_vector(c)
        yield c


def empty(doc: DocumentRef) -> VectorBatch:
    """A batch with no chunks: a manifest, failure or deletion."""
    return VectorBatch(
        document=doc, chunks=[], model="hash", vectors=np.zeros((0, DIM), np.float32)
    )


def ref(name: str = "a.txt", generation: int = 1, count: int = 3, **kw: object) -> DocumentRef:
    return DocumentRef(bucket="b", name=name, generation=generation, chunk_count=count, **kw)  # type: ignore[arg-type]


def batch(doc: DocumentRef, indexes: list[int], text: str = "text {i}") -> VectorBatch:
    chunks = [
        Chunk(
            chunk_id=chunk_id(doc.bucket, doc.name, doc.generation, i),
            index=i,
            text=text.format(i=i),
            tokens=3,
        )
        for i in indexes
    ]
    vectors = EMBEDDER.embed([c.text for c in chunks], Task.DOCUMENT)
    return VectorBatch(document=doc, chunks=chunks, model="hash", vectors=vectors)


def write(conn: psycopg.Connection[object], *batches: VectorBatch) -> None:
    write_flush(conn, plan_flush(list(batches)))


def document(conn: psycopg.Connection[object], name: str = "a.txt") -> tuple[object, ...]:
    row = conn.execute(
        "SELECT state, generation, active_generation, chunks_written, chunks_expected, error"
        " FROM ragrun.documents WHERE name = %s",
        (name,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def chunks(conn: psycopg.Connection[object]) -> list[tuple[int, int, str]]:
    return [
        (g, i, t)
        for g, i, t in conn.execute(
            "SELECT generation, chunk_index, content FROM ragrun.chunks ORDER BY 1, 2"
        ).fetchall()
    ]


def test_document_goes_chunked_embedding_indexed(conn: psycopg.Connection[object]) -> None:
    doc = ref(count=3)
    write(
        conn,
        empty(doc),
    )
    assert document(conn)[:4] == ("chunked", 1, None, 0)
    write(conn, batch(doc, [0, 1]))
    assert document(conn)[:4] == ("embedding", 1, None, 2)
    write(conn, batch(doc, [2]))
    assert document(conn)[:5] == ("indexed", 1, 1, 3, 3)
    assert [i for _, i, _ in chunks(conn)] == [0, 1, 2]


def test_redelivered_batches_change_nothing(conn: psycopg.Connection[object]) -> None:
    doc = ref(count=2)
    first = batch(doc, [0, 1])
    write(conn, first)
    before = conn.execute("SELECT chunk_id, written_at FROM ragrun.chunks ORDER BY 1").fetchall()
    write(conn, first, first)  # twice more, twice in one flush
    after = conn.execute("SELECT chunk_id, written_at FROM ragrun.chunks ORDER BY 1").fetchall()
    assert after == before
    assert document(conn)[:5] == ("indexed", 1, 1, 2, 2)


def test_new_generation_replaces_old_only_when_complete(conn: psycopg.Connection[object]) -> None:
    write(conn, batch(ref(generation=1, count=2), [0, 1], "old {i}"))
    new = ref(generation=2, count=2)
    write(conn, batch(new, [0], "new {i}"))
    # Half-written new version: queries keep serving the complete old one.
    assert document(conn)[:4] == ("embedding", 2, 1, 1)
    write(conn, batch(new, [1], "new {i}"))
    assert document(conn)[:4] == ("indexed", 2, 2, 2)
    assert chunks(conn) == [(2, 0, "new 0"), (2, 1, "new 1")]


def test_late_event_for_older_generation_is_ignored(conn: psycopg.Connection[object]) -> None:
    write(conn, batch(ref(generation=5, count=1), [0], "current"))
    write(conn, batch(ref(generation=3, count=2), [0, 1], "stale {i}"))
    assert document(conn)[:4] == ("indexed", 5, 5, 1)
    assert chunks(conn) == [(5, 0, "current")]


def test_failure_is_recorded_with_its_reason(conn: psycopg.Connection[object]) -> None:
    write(conn, batch(ref(generation=1, count=1), [0]))
    failed = ref(generation=2, count=0, error="PDF is encrypted")
    write(
        conn,
        empty(failed),
    )
    state, gen, active, written, _, error = document(conn)
    assert (state, gen, active, written, error) == ("failed", 2, None, 0, "PDF is encrypted")
    assert chunks(conn) == []


def test_deletion_removes_chunks_and_blocks_late_versions(conn: psycopg.Connection[object]) -> None:
    write(conn, batch(ref(generation=1, count=1), [0]))
    gone = ref(generation=1, count=0, deleted=True)
    write(
        conn,
        empty(gone),
    )
    write(conn, batch(ref(generation=1, count=1), [0]))  # a late redelivery of the same version
    assert document(conn)[:3] == ("deleted", 1, None)
    assert chunks(conn) == []


def test_changed_content_for_same_chunk_id_is_updated(conn: psycopg.Connection[object]) -> None:
    """Replay with new chunking settings rewrites chunks in place, no duplicates."""
    write(conn, batch(ref(count=1), [0], "first version"))
    write(conn, batch(ref(count=1), [0], "re-chunked"))
    assert chunks(conn) == [(1, 0, "re-chunked")]
