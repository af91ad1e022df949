"""The writer against a real PostgreSQL + pgvector: idempotent, generation-safe loads."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from ragrun_common.contracts import Chunk, DocumentRef, VectorBatch, chunk_id
from ragrun_common.db import migrate
from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.hashing import HashEmbedder
from ragrun_common.embeddings.spec import parse_embedding_spec
from ragrun_common.testing.postgres import wait_until_blocked
from ragrun_common.versions import create_version
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
            chunk_id=chunk_id(doc.bucket, doc.name, doc.generation, i, doc.chunking),
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
    """A chunk whose text changed under the same id (same chunking) is rewritten in place."""
    write(conn, batch(ref(count=1), [0], "first version"))
    write(conn, batch(ref(count=1), [0], "re-chunked"))
    assert chunks(conn) == [(1, 0, "re-chunked")]


# --- replays: several chunk sets of one generation ---------------------------------


def served(conn: psycopg.Connection[object], name: str = "a.txt") -> list[tuple[int, str]]:
    """(index, text) of what a query can find: rows of the active generation, as search.py joins."""
    return [
        (i, t)
        for i, t in conn.execute(
            "SELECT c.chunk_index, c.content FROM ragrun.chunks c JOIN ragrun.documents d"
            "  ON d.document_id = c.document_id AND c.generation = d.active_generation"
            " WHERE d.name = %s ORDER BY 1",
            (name,),
        ).fetchall()
    ]


def rechunked(count: int, chunking: str, revision: int, **kw: object) -> DocumentRef:
    return ref(count=count, chunking=chunking, revision=revision, **kw)


def test_replay_with_new_settings_swaps_sets_only_when_complete(
    conn: psycopg.Connection[object],
) -> None:
    """Fewer, larger chunks after a replay: no stale extra chunk, no gap while it runs."""
    old = rechunked(3, "tokens=64", revision=100)
    write(conn, empty(old), batch(old, [0, 1, 2], "small {i}"))
    assert served(conn) == [(0, "small 0"), (1, "small 1"), (2, "small 2")]

    new = rechunked(2, "tokens=256", revision=200)
    write(conn, empty(new))
    assert document(conn)[:5] == ("chunked", 1, 1, 0, 2)
    write(conn, batch(new, [0], "large {i}"))
    # Half the new set is written: queries still see exactly the old complete set.
    assert document(conn)[:5] == ("embedding", 1, 1, 1, 2)
    assert served(conn) == [(0, "small 0"), (1, "small 1"), (2, "small 2")]

    write(conn, batch(new, [1], "large {i}"))
    assert document(conn)[:5] == ("indexed", 1, 1, 2, 2)
    assert served(conn) == [(0, "large 0"), (1, "large 1")]
    assert chunks(conn) == [(1, 0, "large 0"), (1, 1, "large 1")]  # nothing stale or hidden
    tags = conn.execute("SELECT DISTINCT metadata->>'chunking' FROM ragrun.chunks").fetchall()
    assert tags == [("tokens=256",)]


def test_replay_with_more_chunks_than_before(conn: psycopg.Connection[object]) -> None:
    old = rechunked(2, "tokens=256", revision=100)
    write(conn, batch(old, [0, 1], "large {i}"))
    new = rechunked(4, "tokens=64", revision=200)
    write(conn, batch(new, [0, 1, 2], "small {i}"))
    assert served(conn) == [(0, "large 0"), (1, "large 1")]
    write(conn, batch(new, [3], "small {i}"))
    assert document(conn)[:5] == ("indexed", 1, 1, 4, 4)
    assert chunks(conn) == [(1, i, f"small {i}") for i in range(4)]


def test_late_copies_of_an_older_revision_do_not_flip_back(
    conn: psycopg.Connection[object],
) -> None:
    old = rechunked(3, "tokens=64", revision=100)
    new = rechunked(2, "tokens=256", revision=200)
    write(conn, batch(old, [0, 1, 2], "small {i}"))
    write(conn, batch(new, [0, 1], "large {i}"))
    before = conn.execute("SELECT chunk_id, written_at FROM ragrun.chunks ORDER BY 1").fetchall()
    # A redelivered manifest and batches of the old revision, alone and mixed with the new.
    write(conn, empty(old))
    write(conn, batch(old, [0, 1, 2], "small {i}"))
    write(conn, batch(old, [2], "small {i}"), batch(new, [1], "large {i}"))
    assert document(conn)[:5] == ("indexed", 1, 1, 2, 2)
    assert served(conn) == [(0, "large 0"), (1, "large 1")]
    after = conn.execute("SELECT chunk_id, written_at FROM ragrun.chunks ORDER BY 1").fetchall()
    assert after == before


def test_newest_revision_wins_within_one_flush(conn: psycopg.Connection[object]) -> None:
    old = rechunked(3, "tokens=64", revision=100)
    new = rechunked(2, "tokens=256", revision=200)
    write(conn, batch(new, [0, 1], "large {i}"), empty(old), batch(old, [0, 1, 2], "small {i}"))
    assert document(conn)[:5] == ("indexed", 1, 1, 2, 2)
    assert chunks(conn) == [(1, 0, "large 0"), (1, 1, "large 1")]


def test_a_set_replaced_before_it_completed_leaves_nothing(
    conn: psycopg.Connection[object],
) -> None:
    """Two replays in a row: the first new set is abandoned half-way."""
    write(conn, batch(rechunked(2, "tokens=128", revision=100), [0, 1], "first {i}"))
    write(conn, batch(rechunked(3, "tokens=64", revision=200), [0, 1], "second {i}"))
    third = rechunked(1, "tokens=512", revision=300)
    write(conn, empty(third))
    assert served(conn) == [(0, "first 0"), (1, "first 1")]
    write(conn, batch(third, [0], "third {i}"))
    assert served(conn) == [(0, "third 0")]
    assert chunks(conn) == [(1, 0, "third 0")]


def test_replay_while_the_first_set_is_still_incomplete(conn: psycopg.Connection[object]) -> None:
    write(conn, batch(rechunked(3, "tokens=64", revision=100), [0, 1], "small {i}"))
    assert document(conn)[:4] == ("embedding", 1, None, 2)
    new = rechunked(2, "tokens=256", revision=200)
    write(conn, batch(new, [1], "large {i}"))
    assert document(conn)[:5] == ("embedding", 1, None, 1, 2)
    assert chunks(conn) == [(1, 1, "large 1")]  # the unfinished old rows went at once
    write(conn, batch(new, [0], "large {i}"))
    assert document(conn)[:5] == ("indexed", 1, 1, 2, 2)


def test_same_settings_replayed_keeps_rows_and_trims_a_shorter_count(
    conn: psycopg.Connection[object],
) -> None:
    """A duplicate notification re-chunks with the same fingerprint: same ids, no rewrite."""
    first = rechunked(3, "tokens=64", revision=100)
    write(conn, batch(first, [0, 1, 2]))
    before = conn.execute(
        "SELECT chunk_id, written_at FROM ragrun.chunks WHERE chunk_index < 2 ORDER BY 1"
    ).fetchall()
    again = rechunked(2, "tokens=64", revision=200)  # e.g. a parser fix yields one chunk less
    write(conn, empty(again))
    assert document(conn)[:5] == ("indexed", 1, 1, 2, 2)
    assert chunks(conn) == [(1, 0, "text 0"), (1, 1, "text 1")]
    write(conn, batch(again, [0, 1]))
    after = conn.execute("SELECT chunk_id, written_at FROM ragrun.chunks ORDER BY 1").fetchall()
    assert after == before


def test_rows_from_before_fingerprints_are_replaced_by_a_fingerprinted_set(
    conn: psycopg.Connection[object],
) -> None:
    write(conn, batch(ref(count=2), [0, 1], "legacy {i}"))  # revision 0, no chunking
    new = rechunked(1, "tokens=256", revision=200)
    write(conn, empty(new))
    assert served(conn) == [(0, "legacy 0"), (1, "legacy 1")]
    write(conn, batch(new, [0], "new {i}"))
    assert chunks(conn) == [(1, 0, "new 0")]


def test_newer_revision_recovers_a_failed_document(conn: psycopg.Connection[object]) -> None:
    """A replay after a parser fix indexes what failed before."""
    write(conn, empty(rechunked(0, "v1", revision=100, error="PDF is encrypted")))
    assert document(conn)[0] == "failed"
    fixed = rechunked(1, "v2", revision=200)
    write(conn, batch(fixed, [0]))
    assert document(conn) == ("indexed", 1, 1, 1, 1, None)
    # The old failure, redelivered, is older than the fix.
    write(conn, empty(rechunked(0, "v1", revision=100, error="PDF is encrypted")))
    assert document(conn) == ("indexed", 1, 1, 1, 1, None)


def test_deletion_is_final_for_its_generation_whatever_the_revision(
    conn: psycopg.Connection[object],
) -> None:
    write(conn, batch(rechunked(1, "tokens=64", revision=100), [0]))
    write(conn, empty(rechunked(0, "tokens=64", revision=200, deleted=True)))
    write(conn, batch(rechunked(1, "tokens=256", revision=300), [0]))  # a replayed finalize
    assert document(conn)[:3] == ("deleted", 1, None)
    assert chunks(conn) == []


def test_new_generation_during_a_replay_wins(conn: psycopg.Connection[object]) -> None:
    write(conn, batch(rechunked(2, "tokens=64", revision=100), [0, 1], "v1 {i}"))
    write(conn, batch(rechunked(2, "tokens=256", revision=200), [0], "replayed {i}"))
    upload = ref(generation=2, count=1, chunking="tokens=256", revision=300)
    write(conn, batch(upload, [0], "v2 {i}"))
    assert document(conn)[:5] == ("indexed", 2, 2, 1, 1)
    assert chunks(conn) == [(2, 0, "v2 0")]
    write(conn, batch(rechunked(2, "tokens=256", revision=400), [1], "replayed {i}"))  # gen 1
    assert chunks(conn) == [(2, 0, "v2 0")]


def test_streamed_set_completes_only_with_its_manifest_sent_last(
    conn: psycopg.Connection[object],
) -> None:
    """Batches of a streamed document bound the count; the manifest (last) has the total."""
    streamed = ref(count=1000, chunk_count_final=False)  # 1000: the chunker's RAGRUN_MAX_CHUNKS
    manifest = ref(count=3)
    write(conn, batch(streamed, [0, 1]))
    assert document(conn)[:5] == ("embedding", 1, None, 2, 1000)
    write(conn, batch(streamed, [2]))
    assert document(conn)[:4] == ("embedding", 1, None, 3)  # all chunks there, count not known
    write(conn, empty(manifest))
    assert document(conn)[:5] == ("indexed", 1, 1, 3, 3)


def test_streamed_manifest_delivered_first_or_in_the_same_flush(
    conn: psycopg.Connection[object],
) -> None:
    streamed = ref(count=1000, chunk_count_final=False)
    write(conn, empty(ref(count=2)))  # the manifest overtook the batches
    write(conn, batch(streamed, [0]))
    assert document(conn)[:5] == ("embedding", 1, None, 1, 2)
    write(conn, batch(streamed, [1]))
    assert document(conn)[:5] == ("indexed", 1, 1, 2, 2)

    other = ref(name="b.txt", count=1000, chunk_count_final=False)
    write(conn, batch(other, [0]), empty(ref(name="b.txt", count=2)), batch(other, [1]))
    assert document(conn, "b.txt")[:5] == ("indexed", 1, 1, 2, 2)


def test_streamed_set_that_fails_midway_is_recorded_failed(
    conn: psycopg.Connection[object],
) -> None:
    streamed = ref(count=1000, chunk_count_final=False)
    write(conn, batch(streamed, [0, 1]))
    write(conn, empty(ref(count=0, error="not valid UTF-8")))
    assert document(conn)[0] == "failed" and chunks(conn) == []
    write(conn, batch(streamed, [2]))  # a late batch of the failed set changes nothing
    assert document(conn)[0] == "failed" and chunks(conn) == []


def test_vectors_of_another_index_version_go_to_its_table(
    conn: psycopg.Connection[object],
) -> None:
    """After the embedder switches to a new version's model, new documents land in it."""
    create_version(conn, parse_embedding_spec("hash", 32))
    doc = ref(count=2)
    chunks_ = batch(doc, [0, 1]).chunks
    vectors = HashEmbedder(32).embed([c.text for c in chunks_], Task.DOCUMENT)
    new_model = VectorBatch(document=doc, chunks=chunks_, model="hash", vectors=vectors)
    write(conn, new_model)
    write(conn, new_model)  # redelivered: nothing changes
    assert document(conn)[0] == "indexed"
    rows = conn.execute(
        "SELECT c.chunk_index, c.embedding IS NULL, vector_dims(v.embedding)"
        " FROM ragrun.chunks c JOIN ragrun.vectors_2 v USING (chunk_id) ORDER BY 1"
    ).fetchall()
    assert rows == [(0, True, 32), (1, True, 32)]

    # The pipeline's own model still writes version 1, and keeps the other vectors.
    write(conn, batch(doc, [0, 1]))
    rows = conn.execute(
        "SELECT c.embedding IS NULL, v.chunk_id IS NOT NULL"
        " FROM ragrun.chunks c LEFT JOIN ragrun.vectors_2 v USING (chunk_id)"
    ).fetchall()
    assert rows == [(False, True), (False, True)]


def test_vectors_that_fit_no_index_version_are_refused(conn: psycopg.Connection[object]) -> None:
    from ragrun_common.versions import VersionError

    doc = ref(count=1)
    chunks_ = batch(doc, [0]).chunks
    vectors = HashEmbedder(32).embed([chunks_[0].text], Task.DOCUMENT)
    stray = VectorBatch(document=doc, chunks=chunks_, model="hash", vectors=vectors)
    with pytest.raises(VersionError, match="fit no index version"):
        write(conn, stray)
    assert conn.execute("SELECT count(*) FROM ragrun.chunks").fetchone() == (0,)


def test_a_flush_waits_for_index_drop_without_deadlocking(
    conn: psycopg.Connection[object], database_url: str
) -> None:
    """`ragrun index drop` locks the versions, then needs the chunks table; a flush
    (here a redelivery, which reads chunks) must wait for it before touching chunks."""
    doc = ref(count=1)
    write(conn, batch(doc, [0]))
    create_version(conn, parse_embedding_spec("hash", 16))
    with psycopg.connect(database_url) as cli, psycopg.connect(database_url) as writer:
        register_vector(writer)
        cli.execute("LOCK TABLE ragrun.index_versions IN EXCLUSIVE MODE")  # as drop does
        errors: list[BaseException] = []

        def flush() -> None:
            try:
                write(writer, batch(doc, [0]))
            except BaseException as e:  # reported below
                errors.append(e)

        thread = threading.Thread(target=flush)
        thread.start()
        wait_until_blocked(conn, "the flush waiting for the versions lock")
        # What DROP TABLE of a vector table takes on the chunks it references.
        cli.execute("SET lock_timeout = '5s'")
        cli.execute("LOCK TABLE ragrun.chunks IN ACCESS EXCLUSIVE MODE")
        cli.commit()
        thread.join(30)
    assert not thread.is_alive()
    assert errors == []
    assert document(conn)[0] == "indexed"
