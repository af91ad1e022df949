"""PostgreSQL + pgvector: connection pools and idempotent schema migrations.

The schema lives in its own PostgreSQL schema, ``ragrun``:

- ``documents``: one row per object (bucket, name) with the newest generation
  seen, the generation queries are served from (``active_generation``: the
  newest one completely written), its state and chunk counts, and the last error.
- ``chunks``: one row per chunk id with content, metadata, a generated
  ``tsvector`` for keyword search and a ``vector(N)`` column with an HNSW
  cosine index: index version 1.
- ``index_versions``: which embedding model and dimension each index version
  holds, and which one queries use (see :mod:`ragrun_common.versions`); every
  version after the first keeps its vectors in ``vectors_<N>``.

Migrations run at start-up under an advisory lock, so several processes can
start at once; each applies only what ``schema_migrations`` does not list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg_pool import ConnectionPool

from ragrun_common.errors import PermanentError

log = logging.getLogger(__name__)

SCHEMA = "ragrun"
_MIGRATION_LOCK = 0x7261_6772_756E  # "ragrun"

Migration = Callable[[int], sql.SQL | sql.Composed]


def _m1_tables(dim: int) -> sql.Composed:
    return sql.SQL(
        """
        CREATE TABLE ragrun.documents (
            document_id       text PRIMARY KEY,
            bucket            text NOT NULL,
            name              text NOT NULL,
            generation        bigint NOT NULL,
            active_generation bigint,
            content_type      text,
            size_bytes        bigint,
            metadata          jsonb NOT NULL DEFAULT '{{}}',
            state             text NOT NULL
                CHECK (state IN ('chunked', 'embedding', 'indexed', 'failed', 'deleted')),
            chunks_expected   integer NOT NULL DEFAULT 0,
            chunks_written    integer NOT NULL DEFAULT 0,
            error             text,
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now(),
            UNIQUE (bucket, name)
        );
        CREATE TABLE ragrun.chunks (
            chunk_id     text PRIMARY KEY,
            document_id  text NOT NULL REFERENCES ragrun.documents ON DELETE CASCADE,
            generation   bigint NOT NULL,
            chunk_index  integer NOT NULL,
            content      text NOT NULL,
            tokens       integer NOT NULL,
            metadata     jsonb NOT NULL DEFAULT '{{}}',
            model        text NOT NULL,
            content_tsv  tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
            embedding    vector({dim}) NOT NULL,
            written_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX chunks_document_generation ON ragrun.chunks (document_id, generation);
        CREATE INDEX chunks_embedding_hnsw ON ragrun.chunks
            USING hnsw (embedding vector_cosine_ops);
        CREATE INDEX chunks_content_tsv ON ragrun.chunks USING gin (content_tsv);
        """
    ).format(dim=sql.Literal(dim))


def _m2_query_filters(dim: int) -> sql.Composed:  # noqa: ARG001 - same signature as all
    """Indexes for the query service's document filters (bucket and name have UNIQUE)."""
    return sql.SQL(
        """
        CREATE INDEX documents_metadata ON ragrun.documents USING gin (metadata jsonb_path_ops);
        CREATE INDEX documents_content_type ON ragrun.documents (content_type);
        CREATE INDEX documents_created_at ON ragrun.documents (created_at);
        CREATE INDEX documents_updated_at ON ragrun.documents (updated_at);
        """
    ).format()


def _m3_document_revision(dim: int) -> sql.Composed:  # noqa: ARG001 - same signature as all
    """Which chunk set of a generation is newest: the chunker's revision and settings."""
    return sql.SQL(
        """
        ALTER TABLE ragrun.documents
            ADD COLUMN revision bigint NOT NULL DEFAULT 0,
            ADD COLUMN chunking text NOT NULL DEFAULT '';
        """
    ).format()


def _m4_index_versions(dim: int) -> sql.SQL:  # noqa: ARG001 - the column's dimension counts
    """Index versions (see :mod:`ragrun_common.versions`); version 1 is ``chunks.embedding``,
    recorded with the column's dimension (not that of the process that migrates).

    A chunk whose vectors the writer routes to another version has no version 1 vector.
    """
    return sql.SQL(
        """
        ALTER TABLE ragrun.chunks ALTER COLUMN embedding DROP NOT NULL;
        CREATE TABLE ragrun.index_versions (
            version      integer PRIMARY KEY CHECK (version >= 1),
            embeddings   text CHECK ((version = 1) = (embeddings IS NULL)),
            dim          integer NOT NULL CHECK (dim BETWEEN 1 AND 2000),
            state        text NOT NULL CHECK (state IN ('building', 'ready')),
            active       boolean NOT NULL DEFAULT false,
            created_at   timestamptz NOT NULL DEFAULT now(),
            activated_at timestamptz
        );
        CREATE UNIQUE INDEX index_versions_one_active ON ragrun.index_versions (active)
            WHERE active;
        INSERT INTO ragrun.index_versions (version, embeddings, dim, state, active, activated_at)
            SELECT 1, NULL, atttypmod, 'ready', true, now() FROM pg_attribute
            WHERE attrelid = 'ragrun.chunks'::regclass AND attname = 'embedding';
        """
    )


def _m5_pipeline_model(dim: int) -> sql.SQL:  # noqa: ARG001
    """The model of version 1's vectors (``chunks.embedding``), so the writer refuses
    another model's vectors there instead of mixing two embedding spaces.

    Taken from the vectors already stored: their one model, ``*`` (any: stored before
    models were recorded) when they mix several, or NULL (the first batch written
    claims it) when there are none.
    """
    return sql.SQL(
        """
        ALTER TABLE ragrun.index_versions ADD COLUMN pipeline_model text
            CHECK (version = 1 OR pipeline_model IS NULL);
        UPDATE ragrun.index_versions SET pipeline_model = (
            SELECT CASE WHEN count(DISTINCT model) = 1 THEN min(model)
                        WHEN count(DISTINCT model) > 1 THEN '*' END
            FROM ragrun.chunks WHERE embedding IS NOT NULL)
        WHERE version = 1;
        """
    )


MIGRATIONS: list[Migration] = [
    _m1_tables,
    _m2_query_filters,
    _m3_document_revision,
    _m4_index_versions,
    _m5_pipeline_model,
]


class SchemaMismatchError(PermanentError):
    """The database was created for another embedding dimension."""


def migrate(conn: psycopg.Connection[Any], dim: int) -> int:
    """Bring the schema up to date for vectors of ``dim``; return how many migrations ran."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ragrun.schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute(
            "SELECT coalesce(max(version), 0) FROM ragrun.schema_migrations"
        ).fetchone()
        current = int(row[0]) if row else 0
        for version, migration in enumerate(MIGRATIONS[current:], start=current + 1):
            conn.execute(migration(dim))
            conn.execute("INSERT INTO ragrun.schema_migrations (version) VALUES (%s)", (version,))
            log.info("schema.migrated", extra={"fields": {"version": version, "dim": dim}})
        stored = vector_dim(conn)
        others = conn.execute(
            "SELECT coalesce(array_agg(dim ORDER BY version), '{}') FROM ragrun.index_versions"
            " WHERE version > 1"
        ).fetchone()
    if stored != dim and dim not in (others[0] if others else []):
        raise SchemaMismatchError(
            f"the database stores {stored}-dimensional vectors but RAGRUN_EMBEDDING_DIM "
            f"resolves to {dim}; use a new database, the matching embedding settings, or "
            f"create an index version for them (`ragrun index create`)"
        )
    return len(MIGRATIONS) - current


def vector_dim(conn: psycopg.Connection[Any]) -> int:
    """The dimension of ``ragrun.chunks.embedding`` as declared in the catalog."""
    row = conn.execute(
        "SELECT atttypmod FROM pg_attribute"
        " WHERE attrelid = 'ragrun.chunks'::regclass AND attname = 'embedding'"
    ).fetchone()
    if row is None:
        raise SchemaMismatchError("ragrun.chunks has no embedding column")
    return int(row[0])


def _configure(conn: psycopg.Connection[Any]) -> None:
    register_vector(conn)
    # Filtered HNSW queries must keep scanning until enough rows pass the filter.
    conn.execute("SET hnsw.iterative_scan = strict_order")
    conn.commit()


def make_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    name: str = "ragrun",
    open_wait_s: float = 30.0,
) -> ConnectionPool[psycopg.Connection[Any]]:
    """A pool whose connections know the vector type and are checked before use."""
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        configure=_configure,
        check=ConnectionPool.check_connection,
        open=False,
    )
    pool.open(wait=True, timeout=open_wait_s)
    return pool


def migrate_url(database_url: str, dim: int) -> int:
    """Connect once and migrate (used at service start-up and by ``ragrun up``)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return migrate(conn, dim)
