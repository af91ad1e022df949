"""Index versions: an embedding model and dimension each, with its own vectors and index.

Version 1 holds the vectors in ``ragrun.chunks.embedding`` that the pipeline
writes with the model the embedder runs (``RAGRUN_EMBEDDINGS``). Every later
version keeps its vectors in a table of its own, ``ragrun.vectors_<N>``: a
chunk id and a vector per row, removed with their chunk. A new version is
filled from the chunk text already stored (nothing is downloaded or parsed
again), then indexed in one bulk build, which is far faster than maintaining
the index row by row.

Exactly one version is active. The query service searches it and embeds
queries with its model, so activating a complete version switches every
query at once, and the previous version stays intact until it is dropped.

The writer stores each vector batch in every version made with the batch's
model and dimension (see :func:`route`): after switching the embedder to a new
version's model, new documents land in that version. Version 1 records the
model of its vectors (the first batch written claims it), so a batch of another
model is refused rather than mixed into it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import psycopg
from psycopg import sql

from ragrun_common.batching import BatchLimits, plan_batches
from ragrun_common.embeddings.base import EmbeddingProvider
from ragrun_common.embeddings.requests import embed_request
from ragrun_common.embeddings.spec import EmbeddingSpec, parse_embedding_spec
from ragrun_common.errors import PermanentError

log = logging.getLogger(__name__)

PIPELINE_VERSION = 1
# First key of the advisory lock a build holds (the second is the version).
_BUILD_LOCK = 0x52474258
State = Literal["building", "ready"]


class VersionError(PermanentError):
    """An index version that does not exist, or an operation it does not allow."""


def vectors_table(version: int) -> sql.Identifier:
    """The table holding index version ``version``'s vectors (column ``embedding``)."""
    if version == PIPELINE_VERSION:
        return sql.Identifier("ragrun", "chunks")
    return sql.Identifier("ragrun", f"vectors_{int(version)}")


@dataclass(frozen=True, slots=True)
class IndexVersion:
    """One row of ``ragrun.index_versions``.

    ``embeddings`` is the provider (``RAGRUN_EMBEDDINGS`` syntax) that made the
    vectors; ``None`` for version 1, whose vectors come from the pipeline.
    ``pipeline_model`` is, for version 1, the model of those vectors: ``None`` until
    the first batch claims it, ``*`` for vectors of several models stored before
    models were recorded.
    """

    version: int
    embeddings: str | None
    dim: int
    state: State
    active: bool
    created_at: datetime | None = None
    activated_at: datetime | None = None
    pipeline_model: str | None = None

    def takes(self, model: str, dim: int) -> bool:
        """Whether vectors of ``model`` and ``dim`` belong here (version 1: or may claim it)."""
        if self.dim != dim:
            return False
        if self.version != PIPELINE_VERSION:
            return self.embeddings == model
        return self.pipeline_model in (None, "*", model)

    @property
    def table(self) -> sql.Identifier:
        """The table holding this version's vectors (column ``embedding``)."""
        return vectors_table(self.version)

    @property
    def index_name(self) -> str:
        if self.version == PIPELINE_VERSION:
            return "chunks_embedding_hnsw"
        return f"vectors_{self.version}_hnsw"

    def spec(self) -> EmbeddingSpec | None:
        """The provider spec of a side version (``None`` for version 1)."""
        if self.embeddings is None:
            return None
        return parse_embedding_spec(self.embeddings, self.dim)


_COLUMNS = "version, embeddings, dim, state, active, created_at, activated_at, pipeline_model"


def _version(row: Sequence[Any]) -> IndexVersion:
    return IndexVersion(
        version=int(row[0]),
        embeddings=row[1],
        dim=int(row[2]),
        state=row[3],
        active=bool(row[4]),
        created_at=row[5],
        activated_at=row[6],
        pipeline_model=row[7],
    )


def list_versions(conn: psycopg.Connection[Any], *, lock: bool = False) -> list[IndexVersion]:
    """All versions; ``lock`` holds them (no create, drop or activation) until commit.

    The lock is ``FOR KEY SHARE``: it lets a writer claim version 1's model (an
    update of another column) while other writers hold the versions too.
    """
    query = f"SELECT {_COLUMNS} FROM ragrun.index_versions ORDER BY version"
    rows = conn.execute(query + (" FOR KEY SHARE" if lock else ""))
    return [_version(row) for row in rows.fetchall()]


def get_version(conn: psycopg.Connection[Any], version: int) -> IndexVersion:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM ragrun.index_versions WHERE version = %s", (version,)
    ).fetchone()
    if row is None:
        known = ", ".join(str(v.version) for v in list_versions(conn))
        raise VersionError(f"there is no index version {version} (versions: {known})")
    return _version(row)


def active_version(conn: psycopg.Connection[Any]) -> IndexVersion:
    row = conn.execute(f"SELECT {_COLUMNS} FROM ragrun.index_versions WHERE active").fetchone()
    if row is None:  # the partial unique index allows none only if someone deleted it
        raise VersionError("no index version is active")
    return _version(row)


@dataclass(frozen=True, slots=True)
class Coverage:
    """How many of the stored chunks a version has a vector for."""

    version: IndexVersion
    vectors: int
    chunks: int


def coverage(conn: psycopg.Connection[Any], version: IndexVersion) -> Coverage:
    chunks = conn.execute("SELECT count(*) FROM ragrun.chunks").fetchone()
    query: sql.Composable
    if version.version == PIPELINE_VERSION:
        query = sql.SQL("SELECT count(*) FROM ragrun.chunks WHERE embedding IS NOT NULL")
    else:
        query = sql.SQL("SELECT count(*) FROM {}").format(version.table)
    vectors = conn.execute(query).fetchone()
    return Coverage(version, int(vectors[0]) if vectors else 0, int(chunks[0]) if chunks else 0)


def create_version(conn: psycopg.Connection[Any], spec: EmbeddingSpec) -> IndexVersion:
    """Register a new version for ``spec`` and create its (empty, unindexed) table."""
    with conn.transaction():
        conn.execute("LOCK TABLE ragrun.index_versions IN EXCLUSIVE MODE")
        row = conn.execute(
            "INSERT INTO ragrun.index_versions (version, embeddings, dim, state)"
            " SELECT max(version) + 1, %s, %s, 'building' FROM ragrun.index_versions"
            f" RETURNING {_COLUMNS}",
            (spec.name, spec.dim),
        ).fetchone()
        assert row is not None
        version = _version(row)
        conn.execute(
            sql.SQL(
                "CREATE TABLE {table} ("
                " chunk_id text PRIMARY KEY REFERENCES ragrun.chunks ON DELETE CASCADE,"
                " embedding vector({dim}) NOT NULL)"
            ).format(table=version.table, dim=sql.Literal(spec.dim))
        )
    log.info("index.version_created", extra={"fields": {"version": version.version}})
    return version


def _missing(
    conn: psycopg.Connection[Any], version: IndexVersion, after: str, limit: int
) -> list[tuple[str, str, int]]:
    """(chunk id, text, tokens) of chunks past ``after`` without a vector in ``version``."""
    query = sql.SQL(
        "SELECT c.chunk_id, c.content, c.tokens FROM ragrun.chunks c"
        " WHERE c.chunk_id > %s"
        " AND NOT EXISTS (SELECT 1 FROM {table} v WHERE v.chunk_id = c.chunk_id)"
        " ORDER BY c.chunk_id LIMIT %s"
    ).format(table=version.table)
    return [(r[0], r[1], int(r[2])) for r in conn.execute(query, (after, limit)).fetchall()]


def store_vectors(
    conn: psycopg.Connection[Any],
    version: IndexVersion,
    chunk_ids: Sequence[str],
    vectors: np.ndarray[Any, Any],
) -> int:
    """Binary-COPY vectors into a side version; rows whose chunk is gone are skipped.

    Idempotent: a vector already stored for a chunk is replaced.
    """
    if version.version == PIPELINE_VERSION:
        raise VersionError("version 1 is written by the pipeline's writer")
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS ragrun_version_staging"
            " (chunk_id text, embedding vector) ON COMMIT DELETE ROWS"
        )
        with cur.copy(
            "COPY ragrun_version_staging (chunk_id, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "vector"])
            for chunk_id, vector in zip(chunk_ids, vectors, strict=True):
                copy.write_row((chunk_id, vector))
        cur.execute(
            sql.SQL(
                "INSERT INTO {table} (chunk_id, embedding)"
                " SELECT s.chunk_id, s.embedding FROM ragrun_version_staging s"
                " JOIN ragrun.chunks c ON c.chunk_id = s.chunk_id"
                # Waits for a writer deleting the chunk, then skips it: without the
                # lock, its deletion could commit before the foreign key check.
                " FOR KEY SHARE OF c"
                " ON CONFLICT (chunk_id) DO UPDATE SET embedding = EXCLUDED.embedding"
            ).format(table=version.table)
        )
        return cur.rowcount


@dataclass(frozen=True, slots=True)
class FillProgress:
    done: int
    total: int
    requests: int


def fill(
    conn: psycopg.Connection[Any],
    version: IndexVersion,
    provider: EmbeddingProvider,
    limits: BatchLimits,
    *,
    page: int = 2_000,
    on_progress: Callable[[FillProgress], None] | None = None,
) -> FillProgress:
    """Embed every stored chunk ``version`` has no vector for; safe to run again.

    Chunks are read in pages in chunk id order and embedded in requests within
    ``limits``; each page is committed on its own, so an interrupted fill
    resumes where it stopped.
    """
    if version.version == PIPELINE_VERSION:
        raise VersionError("version 1 is filled by the pipeline; replay or reindex instead")
    if provider.dim != version.dim:
        raise VersionError(f"the provider makes {provider.dim} dimensions, not {version.dim}")
    progress = coverage(conn, version)
    total = progress.chunks - progress.vectors
    done = requests = 0
    after = ""
    while True:
        rows = _missing(conn, version, after, page)
        conn.commit()  # read outside any long transaction
        if not rows:
            break
        after = rows[-1][0]
        for request in plan_batches(rows, lambda r: r[2], limits):
            vectors = embed_request(provider, [text for _, text, _ in request])
            requests += 1
            store_vectors(conn, version, [chunk_id for chunk_id, _, _ in request], vectors)
            done += len(request)
            if on_progress is not None:
                on_progress(FillProgress(done, max(total, done), requests))
    return FillProgress(done, max(total, done), requests)


def build_index(
    conn: psycopg.Connection[Any], version: IndexVersion, *, maintenance_work_mem: str = "512MB"
) -> None:
    """Build a version's HNSW index without blocking the writer, then mark the version ready.

    ``conn`` must be in autocommit mode (``CREATE INDEX CONCURRENTLY``). A build
    interrupted earlier leaves an invalid index, which is dropped and built again;
    a valid one is kept.
    """
    # Two builds of one version at once: the second would take the first's index,
    # still being built, for an interrupted one and drop it.
    lock = (_BUILD_LOCK, version.version)
    taken = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", lock).fetchone()
    if not (taken and taken[0]):
        raise VersionError(
            f"index version {version.version} is being built by another `ragrun index` "
            "command; wait for it to finish"
        )
    try:
        _build_index(conn, version, maintenance_work_mem)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", lock)


def _build_index(
    conn: psycopg.Connection[Any], version: IndexVersion, maintenance_work_mem: str
) -> None:
    index = sql.Identifier("ragrun", version.index_name)
    valid = conn.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'ragrun' AND c.relname = %s",
        (version.index_name,),
    ).fetchone()
    if valid is not None and not valid[0]:
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY {}").format(index))
    if valid is None or not valid[0]:
        memory = (maintenance_work_mem,)
        conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", memory)
        conn.execute(
            sql.SQL(
                "CREATE INDEX CONCURRENTLY {index} ON {table}"
                " USING hnsw (embedding vector_cosine_ops)"
            ).format(index=sql.Identifier(version.index_name), table=version.table)
        )
        conn.execute("RESET maintenance_work_mem")
    conn.execute(
        "UPDATE ragrun.index_versions SET state = 'ready' WHERE version = %s", (version.version,)
    )


def defer_index(conn: psycopg.Connection[Any], version: IndexVersion) -> None:
    """Drop a version's HNSW index for a bulk load; :func:`build_index` builds it again.

    Loading without the index runs at COPY speed, and one build afterwards is
    several times faster than maintaining the graph row by row. Meanwhile
    searches of the version stay correct, as exact scans. ``conn`` must be in
    autocommit mode.
    """
    conn.execute(
        "UPDATE ragrun.index_versions SET state = 'building' WHERE version = %s",
        (version.version,),
    )
    index = sql.Identifier("ragrun", version.index_name)
    conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(index))
    log.info("index.deferred", extra={"fields": {"version": version.version}})


def activate(conn: psycopg.Connection[Any], version: int) -> IndexVersion:
    """Make ``version`` the one queries use, in one commit; it must be ready."""
    with conn.transaction():
        conn.execute("LOCK TABLE ragrun.index_versions IN EXCLUSIVE MODE")
        target = get_version(conn, version)
        if target.state != "ready":
            raise VersionError(
                f"index version {version} is still {target.state}: "
                f"finish it with `ragrun index sync {version}` first"
            )
        conn.execute("UPDATE ragrun.index_versions SET active = false WHERE active")
        conn.execute(
            "UPDATE ragrun.index_versions SET active = true, activated_at = now()"
            " WHERE version = %s",
            (version,),
        )
    log.info("index.version_activated", extra={"fields": {"version": version}})
    return get_version(conn, version)


def drop(conn: psycopg.Connection[Any], version: int) -> None:
    """Delete a side version that is not active, with its vectors and index."""
    with conn.transaction():
        conn.execute("LOCK TABLE ragrun.index_versions IN EXCLUSIVE MODE")
        target = get_version(conn, version)
        if target.version == PIPELINE_VERSION:
            raise VersionError("version 1 holds the pipeline's vectors and cannot be dropped")
        if target.active:
            raise VersionError(f"index version {version} is active: activate another version first")
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target.table))
        conn.execute("DELETE FROM ragrun.index_versions WHERE version = %s", (version,))
    log.info("index.version_dropped", extra={"fields": {"version": version}})


def route(versions: Sequence[IndexVersion], model: str, dim: int) -> list[IndexVersion]:
    """Every version the writer stores vectors of ``model`` and ``dim`` in.

    The side versions made with that model and dimension, and version 1 when they
    are its own (or it has none yet: see :func:`claim_pipeline_model`); none is a
    configuration error, never a reason to mix two models' vectors.
    """
    targets = [v for v in versions if v.takes(model, dim)]
    if not targets:
        have = ", ".join(
            f"{v.version}: {v.embeddings or v.pipeline_model or 'pipeline'} {v.dim}d"
            for v in versions
        )
        raise VersionError(
            f"vectors of {model} with {dim} dimensions fit no index version ({have}); "
            f"create one with `ragrun index create --embeddings {model} --dim {dim}`"
        )
    return targets


def claim_pipeline_model(conn: psycopg.Connection[Any], model: str) -> IndexVersion:
    """Record ``model`` as version 1's if it has none yet; version 1 as it now is.

    Inside the writer's transaction, after :func:`list_versions` with ``lock``: a
    concurrent claim waits for this one, then finds the model taken.
    """
    conn.execute(
        "UPDATE ragrun.index_versions SET pipeline_model = %s"
        " WHERE version = %s AND pipeline_model IS NULL",
        (model, PIPELINE_VERSION),
    )
    return get_version(conn, PIPELINE_VERSION)
