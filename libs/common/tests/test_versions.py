"""Index versions against a real PostgreSQL + pgvector (and the local Vertex AI stand-in)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql

from ragrun_common import db
from ragrun_common import versions as index_versions
from ragrun_common.batching import BatchLimits
from ragrun_common.db import SchemaMismatchError, migrate
from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.hashing import HashEmbedder
from ragrun_common.embeddings.spec import parse_embedding_spec
from ragrun_common.embeddings.vertex import VertexEmbedder
from ragrun_common.testing.postgres import wait_until_blocked
from ragrun_common.testing.vertex_stub import VertexStub
from ragrun_common.versions import (
    IndexVersion,
    VersionError,
    activate,
    active_version,
    build_index,
    claim_pipeline_model,
    coverage,
    create_version,
    drop,
    fill,
    get_version,
    list_versions,
    route,
    store_vectors,
)

DIM = 64
LIMITS = BatchLimits(max_items=50, max_tokens=20_000)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[object]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        migrate(c, DIM)
        register_vector(c)
        yield c


def seed(conn: psycopg.Connection[object], n: int) -> list[str]:
    """``n`` chunks of one document, with version 1 vectors from the hash embedder."""
    conn.execute(
        "INSERT INTO ragrun.documents (document_id, bucket, name, generation, active_generation,"
        " state) VALUES ('d', 'b', 'a.txt', 1, 1, 'indexed')"
    )
    texts = [f"passage {i} about {'rivers' if i % 2 else 'granite'} number {i}" for i in range(n)]
    vectors = HashEmbedder(DIM).embed(texts, Task.DOCUMENT)
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY ragrun.chunks (chunk_id, document_id, generation, chunk_index, content, tokens,"
            " model, embedding) FROM STDIN"
        ) as copy,
    ):
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            copy.write_row((f"c{i:05d}", "d", 1, i, text, 8, "hash", vector))
    return texts


def test_a_new_database_has_version_one_active(conn: psycopg.Connection[object]) -> None:
    [version] = list_versions(conn)
    assert (version.version, version.embeddings, version.dim, version.active) == (
        1,
        None,
        DIM,
        True,
    )
    assert active_version(conn).version == 1


def test_create_fill_index_activate_and_drop(conn: psycopg.Connection[object]) -> None:
    texts = seed(conn, 230)
    spec = parse_embedding_spec("hash", 32)
    version = create_version(conn, spec)
    assert (version.version, version.state, version.active) == (2, "building", False)
    with pytest.raises(VersionError, match="still building"):
        activate(conn, 2)

    seen: list[int] = []
    provider = HashEmbedder(32)
    done = fill(
        conn, version, provider, LIMITS, page=100, on_progress=lambda p: seen.append(p.done)
    )
    assert (done.done, done.total) == (230, 230)
    assert done.requests == 5  # pages of 100, 100, 30 in requests of at most 50
    assert seen == sorted(seen) and seen[-1] == 230
    # The stored vectors are the new model's, for the stored text.
    stored = conn.execute(
        "SELECT embedding FROM ragrun.vectors_2 WHERE chunk_id = 'c00007'"
    ).fetchone()
    assert stored is not None
    expected = HashEmbedder(32).embed([texts[7]], Task.DOCUMENT)[0]
    np.testing.assert_allclose(np.asarray(stored[0].to_numpy()), expected, atol=1e-6)

    # A second fill finds nothing to do: filling is idempotent and resumable.
    assert fill(conn, version, HashEmbedder(32), LIMITS).done == 0

    build_index(conn, version)
    index = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'ragrun' AND tablename = 'vectors_2'"
        " AND indexname = 'vectors_2_hnsw'"
    ).fetchone()
    assert index is not None and "hnsw" in index[0]
    assert get_version(conn, 2).state == "ready"

    activate(conn, 2)
    assert active_version(conn).version == 2
    assert [v.active for v in list_versions(conn)] == [False, True]
    with pytest.raises(VersionError, match="is active"):
        drop(conn, 2)
    with pytest.raises(VersionError, match="cannot be dropped"):
        drop(conn, 1)

    # Deleting chunks removes their vectors in every version.
    conn.execute("DELETE FROM ragrun.chunks WHERE chunk_index >= 200")
    assert coverage(conn, get_version(conn, 2)).vectors == 200

    activate(conn, 1)
    drop(conn, 2)
    assert [v.version for v in list_versions(conn)] == [1]
    gone = conn.execute("SELECT to_regclass('ragrun.vectors_2')").fetchone()
    assert gone == (None,)
    with pytest.raises(VersionError, match="no index version 2"):
        activate(conn, 2)
    # Version numbers are not reused while a higher one exists; after a drop the next is 2 again.
    assert create_version(conn, spec).version == 2


def test_fill_through_vertex_ai(conn: psycopg.Connection[object]) -> None:
    """`ragrun index create --embeddings vertex:gemini-embedding-001 --dim 768` in miniature."""
    seed(conn, 120)
    spec = parse_embedding_spec("vertex:gemini-embedding-001", 768)
    version = create_version(conn, spec)
    with VertexStub() as stub:
        provider = VertexEmbedder(
            model=spec.model,
            dim=spec.dim,
            project="ragrun-test",
            location="us-central1",
            base_url=stub.base_url,
            access_token="test-token",
        )
        stub.fail_next(1, status=400, message="too many texts")  # split, never dropped
        done = fill(conn, version, provider, BatchLimits(max_items=100, max_tokens=20_000))
        provider.close()
        requests = stub.requests
    assert done.done == 120
    assert coverage(conn, version).vectors == 120
    assert {r.model for r in requests} == {"gemini-embedding-001"}
    assert sum(r.n_texts for r in requests[1:]) == 120  # the rejected first request resent
    dims = conn.execute("SELECT DISTINCT vector_dims(embedding) FROM ragrun.vectors_2").fetchall()
    assert dims == [(768,)]


def numbers(versions: list[IndexVersion]) -> list[int]:
    return [v.version for v in versions]


def test_writer_routing(conn: psycopg.Connection[object]) -> None:
    version = create_version(conn, parse_embedding_spec("vertex:gemini-embedding-001", 768))
    versions = list_versions(conn)
    assert numbers(route(versions, "vertex:gemini-embedding-001", 768)) == [version.version]
    # Version 1 holds no vectors yet: the first model written there claims it.
    assert versions[0].pipeline_model is None
    assert numbers(route(versions, "local", DIM)) == [1]
    assert claim_pipeline_model(conn, "hash").pipeline_model == "hash"
    assert claim_pipeline_model(conn, "local").pipeline_model == "hash"  # taken
    versions = list_versions(conn)
    assert numbers(route(versions, "hash", DIM)) == [1]
    # Another model of the same dimension is refused, not mixed into version 1.
    with pytest.raises(VersionError, match="ragrun index create --embeddings local --dim 64"):
        route(versions, "local", DIM)
    with pytest.raises(VersionError, match="ragrun index create --embeddings hash --dim 768"):
        route(versions, "hash", 768)
    # A side version of version 1's own model gets the vectors too, not instead.
    same = create_version(conn, parse_embedding_spec("hash", DIM))
    assert numbers(route(list_versions(conn), "hash", DIM)) == [1, same.version]


def _schema_before_model_records(conn: psycopg.Connection[object]) -> None:
    """The schema as the migrations before version 1's model was recorded left it."""
    with conn.transaction():
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE SCHEMA ragrun")
        conn.execute("CREATE TABLE ragrun.schema_migrations (version integer PRIMARY KEY)")
        for number, migration in enumerate(db.MIGRATIONS[:4], start=1):
            conn.execute(migration(DIM))
            conn.execute("INSERT INTO ragrun.schema_migrations VALUES (%s)", (number,))


@pytest.mark.parametrize(
    ("models", "recorded"), [([], None), (["hash"], "hash"), (["hash", "local"], "*")]
)
def test_upgrading_records_the_model_of_version_ones_vectors(
    database_url: str, models: list[str], recorded: str | None
) -> None:
    with psycopg.connect(database_url, autocommit=True) as c:
        _schema_before_model_records(c)
        register_vector(c)
        if models:
            seed(c, 4)
            last = models[-1]
            c.execute("UPDATE ragrun.chunks SET model = %s WHERE chunk_id > 'c00001'", (last,))
        migrate(c, DIM)
        assert list_versions(c)[0].pipeline_model == recorded


def test_services_may_run_with_a_side_versions_dimension(
    conn: psycopg.Connection[object],
) -> None:
    with pytest.raises(SchemaMismatchError, match="ragrun index create"):
        migrate(conn, 768)
    create_version(conn, parse_embedding_spec("vertex:gemini-embedding-001", 768))
    assert migrate(conn, 768) == 0


def test_defer_and_rebuild_the_pipeline_index(
    conn: psycopg.Connection[object], database_url: str
) -> None:
    """A bulk load without the vector index, then one build; searches stay exact meanwhile."""
    from ragrun_common.versions import defer_index

    seed(conn, 50)
    version = get_version(conn, 1)
    defer_index(conn, version)
    assert get_version(conn, 1).state == "building"
    assert conn.execute(
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw'"
    ).fetchone() == (0,)
    assert active_version(conn).version == 1  # still answering, by exact scans
    # While another `ragrun index` command builds this version, a second build is
    # refused rather than dropping the first one's unfinished index.
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, 1)", (index_versions._BUILD_LOCK,))
        with pytest.raises(VersionError, match="being built by another"):
            build_index(conn, version)
    build_index(conn, version)
    assert get_version(conn, 1).state == "ready"
    assert conn.execute(
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw'"
    ).fetchone() == (1,)


def test_upgrading_records_version_one_with_the_columns_dimension(database_url: str) -> None:
    """A database from before index versions, upgraded by a process set for another
    dimension: version 1 keeps the column's, and the mismatch is refused every time."""
    with psycopg.connect(database_url, autocommit=True) as c, c.transaction():
        # The schema as the migrations before index versions left it, for 768 dimensions.
        c.execute("CREATE EXTENSION IF NOT EXISTS vector")
        c.execute("CREATE SCHEMA ragrun")
        c.execute("CREATE TABLE ragrun.schema_migrations (version integer PRIMARY KEY)")
        for number, migration in enumerate(db.MIGRATIONS[:3], start=1):
            c.execute(migration(768))
            c.execute("INSERT INTO ragrun.schema_migrations VALUES (%s)", (number,))
    with psycopg.connect(database_url, autocommit=True) as c:
        with pytest.raises(SchemaMismatchError, match="768-dimensional"):
            migrate(c, DIM)
        [version] = list_versions(c)
        assert (version.version, version.dim) == (1, 768)
        with pytest.raises(SchemaMismatchError, match="768-dimensional"):
            migrate(c, DIM)
        assert migrate(c, 768) == 0


def test_a_fill_skips_a_chunk_the_writer_deletes_meanwhile(
    conn: psycopg.Connection[object], database_url: str
) -> None:
    """`ragrun index sync` while a re-upload retires chunks: the deleted chunk's vector
    is skipped, not a foreign key error that stops the sync."""
    seed(conn, 3)
    version = create_version(conn, parse_embedding_spec("hash", 16))
    vectors = HashEmbedder(16).embed(["a", "b", "c"], Task.DOCUMENT)
    with psycopg.connect(database_url) as writer:
        writer.execute("DELETE FROM ragrun.chunks WHERE chunk_id = 'c00001'")  # not committed
        stored: list[int] = []
        errors: list[BaseException] = []

        def store() -> None:
            try:
                with psycopg.connect(database_url) as filler:
                    register_vector(filler)
                    stored.append(
                        store_vectors(filler, version, ["c00000", "c00001", "c00002"], vectors)
                    )
            except BaseException as e:  # reported below
                errors.append(e)

        thread = threading.Thread(target=store)
        thread.start()
        wait_until_blocked(conn, "the fill waiting on the row being deleted")
        writer.commit()
        thread.join(30)
    assert errors == []
    assert stored == [2]
    rows = conn.execute(sql.SQL("SELECT chunk_id FROM {} ORDER BY 1").format(version.table))
    assert [r[0] for r in rows.fetchall()] == ["c00000", "c00002"]
