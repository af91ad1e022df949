"""The writer's message handling against a real PostgreSQL: what it acks, what it nacks."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from ragrun_common.contracts import Chunk, DocumentRef, VectorBatch, chunk_id
from ragrun_common.db import make_pool, migrate_url
from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.hashing import HashEmbedder
from ragrun_common.embeddings.spec import parse_embedding_spec
from ragrun_common.pubsub import Outcome, Received
from ragrun_common.retry import Backoff
from ragrun_common.versions import create_version
from ragrun_writer.main import Writer


@pytest.fixture
def pool(database_url: str) -> Iterator[ConnectionPool]:
    migrate_url(database_url, 384)
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_version(conn, parse_embedding_spec("hash", 16))
    pool = make_pool(database_url, max_size=1, name="writer-main-tests")
    yield pool
    pool.close()


def message(name: str, dim: int, model: str = "hash") -> Received:
    doc = DocumentRef(bucket="b", name=name, generation=1, chunk_count=1)
    chunk = Chunk(chunk_id=chunk_id("b", name, 1, 0), index=0, text=f"{name} text", tokens=3)
    vectors = HashEmbedder(dim).embed([chunk.text], Task.DOCUMENT)
    data, attributes = VectorBatch(
        document=doc, chunks=[chunk], model=model, vectors=vectors
    ).encode()
    return Received(data=data, attributes=attributes, message_id=name, delivery_attempt=1)


def test_vectors_are_written_to_the_version_of_their_dimension(pool: ConnectionPool) -> None:
    """The writer serves every index version, whatever RAGRUN_EMBEDDING_DIM it runs with:
    during a model switch the embedder may send the new dimension first."""
    writer = Writer(pool=pool, backoff=Backoff(deadline_s=0))
    outcomes = writer.handle([message("old.txt", 384), message("new.txt", 16), message("x.txt", 7)])
    # A dimension no version has is nacked (toward the dead-letter topic), not dropped.
    assert outcomes == [Outcome.ACK, Outcome.ACK, Outcome.NACK]
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT d.name, c.embedding IS NOT NULL, v.chunk_id IS NOT NULL"
            " FROM ragrun.chunks c JOIN ragrun.documents d USING (document_id)"
            " LEFT JOIN ragrun.vectors_2 v USING (chunk_id) ORDER BY 1"
        ).fetchall()
    assert rows == [("new.txt", False, True), ("old.txt", True, False)]


def test_another_model_of_the_same_dimension_is_refused_not_mixed(pool: ConnectionPool) -> None:
    """The embedder switched to another 384-d model without `ragrun index create`: its
    vectors would be meaningless next to version 1's, so they are nacked toward the
    dead-letter topic with the command that fixes it; version 1's model is whichever
    wrote there first."""
    writer = Writer(pool=pool, backoff=Backoff(deadline_s=0))
    assert writer.handle([message("first.txt", 384)]) == [Outcome.ACK]
    outcomes = writer.handle([message("other.txt", 384, model="local"), message("b.txt", 384)])
    assert outcomes == [Outcome.NACK, Outcome.ACK]
    with pool.connection() as conn:
        names = conn.execute(
            "SELECT d.name FROM ragrun.chunks c JOIN ragrun.documents d USING (document_id)"
            " ORDER BY 1"
        ).fetchall()
        pipeline_model = conn.execute(
            "SELECT pipeline_model FROM ragrun.index_versions WHERE version = 1"
        ).fetchone()
    assert names == [("b.txt",), ("first.txt",)]
    assert pipeline_model == ("hash",)


def test_a_read_only_database_holds_the_messages_instead_of_failing_each(
    database_url: str, pool: ConnectionPool, caplog: pytest.LogCaptureFixture
) -> None:
    """During a failover the old primary refuses writes: the batch waits as for a lost
    database, rather than each document being reported failed and nacked toward the
    dead-letter topic."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    read_only = make_pool(database_url, max_size=1, name="writer-read-only")
    try:
        writer = Writer(pool=read_only, backoff=Backoff(deadline_s=0))
        outcomes = writer.handle([message("a.txt", 384), message("b.txt", 384)])
    finally:
        read_only.close()
    assert outcomes == [Outcome.NACK, Outcome.NACK]
    events = [r.getMessage() for r in caplog.records]
    assert "writer.retry" in events
    assert "writer.batch_failed" not in events
