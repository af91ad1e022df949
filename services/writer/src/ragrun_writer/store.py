"""Apply a flush plan to PostgreSQL in one transaction.

Order of work, all in one transaction so a crash leaves nothing half-done:

1. Insert a missing document row, lock it, and compare the stored version
   with the plan's (see :mod:`ragrun_writer.plan`): an older one is stale and
   skipped, a newer one resets the counts. Queries keep serving the
   ``active_generation`` until its successor is complete.
2. Binary COPY every chunk row straight into ``ragrun.chunks`` when none of
   them is stored yet (a first delivery); otherwise into a session-local
   staging table, then ``INSERT ... SELECT ... ON CONFLICT (chunk_id)``: a
   redelivered batch changes nothing, a changed chunk (re-embedded) is updated. Vectors go to
   every index version of their model and dimension
   (:func:`ragrun_common.versions.route`): version 1 is the chunk row's own
   column (the first model written there claims it), any other version a table
   of its own, loaded from a second staging table in the same transaction.
3. Count each touched document's rows of its newest chunk set; once all
   expected chunks are present that set becomes the served one and every other
   row of the document (older generations, other chunk sets, indexes past the
   new count) is deleted.

A chunk set of the generation being served, cut with other settings (a replay
after ``RAGRUN_CHUNK_TOKENS`` changed, say), is written under the negated
generation, which queries never match, and moved into place once complete, so
queries see the old complete set until the new one replaces it in one commit.
Each chunk row's metadata names its ``chunking``; the document row keeps the
newest set's ``revision`` and ``chunking`` in columns of their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ragrun_common.versions import (
    PIPELINE_VERSION,
    IndexVersion,
    claim_pipeline_model,
    list_versions,
    route,
)
from ragrun_writer.plan import DocumentPlan, Row, Stored, compare, rows_generation

log = logging.getLogger("ragrun.writer")

_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS ragrun_staging
    (LIKE ragrun.chunks INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
"""
_COPY = """
COPY ragrun_staging
    (chunk_id, document_id, generation, chunk_index, content, tokens, metadata, model, embedding)
FROM STDIN WITH (FORMAT BINARY)
"""
_COPY_TYPES = ["text", "text", "int8", "int4", "text", "int4", "jsonb", "text", "vector"]
_COPY_DIRECT = _COPY.replace("COPY ragrun_staging", "COPY ragrun.chunks")
_ANY_EXISTS = "SELECT 1 FROM ragrun.chunks WHERE chunk_id = ANY(%s) LIMIT 1"
_VECTOR_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS ragrun_vector_staging
    (version integer, chunk_id text, embedding vector) ON COMMIT DELETE ROWS
"""
_COPY_VECTORS = """
COPY ragrun_vector_staging (version, chunk_id, embedding) FROM STDIN WITH (FORMAT BINARY)
"""
_MERGE_VECTORS = """
INSERT INTO {table} (chunk_id, embedding)
SELECT chunk_id, embedding FROM ragrun_vector_staging WHERE version = %(version)s
ON CONFLICT (chunk_id) DO UPDATE SET embedding = EXCLUDED.embedding
"""

_INSERT_DOCUMENT = """
INSERT INTO ragrun.documents
    (document_id, bucket, name, generation, content_type, size_bytes, metadata,
     state, chunks_expected, error, revision, chunking)
VALUES (%(document_id)s, %(bucket)s, %(name)s, %(generation)s, %(content_type)s,
        %(size)s, %(metadata)s, %(state)s, %(expected)s, %(error)s, %(revision)s, %(chunking)s)
ON CONFLICT (document_id) DO NOTHING
"""
_CURRENT = """
SELECT generation, state, active_generation, chunks_expected, revision, chunking
FROM ragrun.documents WHERE document_id = %s FOR UPDATE
"""
_REPLACE_DOCUMENT = """
UPDATE ragrun.documents SET
    generation = %(generation)s,
    content_type = %(content_type)s,
    size_bytes = %(size)s,
    metadata = %(metadata)s,
    state = %(state)s,
    chunks_expected = %(expected)s,
    chunks_written = 0,
    error = %(error)s,
    revision = %(revision)s,
    chunking = %(chunking)s,
    updated_at = now()
WHERE document_id = %(document_id)s
"""
_EXPECT = """
UPDATE ragrun.documents SET chunks_expected = %(expected)s, updated_at = now()
WHERE document_id = %(document_id)s
"""
_RETIRE = """
WITH gone AS (DELETE FROM ragrun.chunks WHERE document_id = %(document_id)s)
UPDATE ragrun.documents SET active_generation = NULL, chunks_written = 0, updated_at = now()
WHERE document_id = %(document_id)s
"""
_SERVED_CHUNKING = """
SELECT coalesce(metadata ->> 'chunking', '') FROM ragrun.chunks
WHERE document_id = %s AND generation = %s LIMIT 1
"""
_CLEAR_OTHER_SETS = """
DELETE FROM ragrun.chunks
WHERE document_id = %(document_id)s AND generation = %(rows_generation)s
  AND coalesce(metadata ->> 'chunking', '') <> %(chunking)s
"""
_MERGE = """
INSERT INTO ragrun.chunks
    (chunk_id, document_id, generation, chunk_index, content, tokens, metadata, model, embedding)
SELECT chunk_id, document_id, generation, chunk_index, content, tokens, metadata, model, embedding
FROM ragrun_staging
ON CONFLICT (chunk_id) DO UPDATE SET
    content = EXCLUDED.content,
    tokens = EXCLUDED.tokens,
    metadata = EXCLUDED.metadata,
    model = EXCLUDED.model,
    -- A vector stored in another version leaves version 1's as it was, if the text is.
    embedding = CASE
        WHEN EXCLUDED.embedding IS NULL AND ragrun.chunks.content = EXCLUDED.content
        THEN ragrun.chunks.embedding ELSE EXCLUDED.embedding END,
    written_at = now()
WHERE (ragrun.chunks.content, ragrun.chunks.model)
      IS DISTINCT FROM (EXCLUDED.content, EXCLUDED.model)
   OR (ragrun.chunks.embedding IS NULL AND EXCLUDED.embedding IS NOT NULL)
"""
_COUNT = """
SELECT count(*) FROM ragrun.chunks
WHERE document_id = %(document_id)s AND generation = %(rows_generation)s
  AND chunk_index < %(expected)s AND coalesce(metadata ->> 'chunking', '') = %(chunking)s
"""
_UNSERVE = """
DELETE FROM ragrun.chunks WHERE document_id = %(document_id)s AND generation = %(generation)s
"""
_PROMOTE = """
UPDATE ragrun.chunks SET generation = %(generation)s
WHERE document_id = %(document_id)s AND generation = %(rows_generation)s
"""
_DROP_OTHERS = """
DELETE FROM ragrun.chunks
WHERE document_id = %(document_id)s
  AND (generation <> %(generation)s OR chunk_index >= %(expected)s
       OR coalesce(metadata ->> 'chunking', '') <> %(chunking)s)
"""
_PROGRESS = """
UPDATE ragrun.documents SET
    chunks_written = %(written)s,
    state = %(state)s,
    active_generation = CASE WHEN %(complete)s THEN generation ELSE active_generation END,
    updated_at = now()
WHERE document_id = %(document_id)s
"""


@dataclass(frozen=True, slots=True)
class FlushResult:
    documents: int
    rows_loaded: int
    stale: int
    indexed: list[str]


def _state(plan: DocumentPlan) -> str:
    if plan.ref.deleted:
        return "deleted"
    return "failed" if plan.ref.error is not None else "chunked"


def _document_params(plan: DocumentPlan) -> dict[str, Any]:
    ref = plan.ref
    return {
        "document_id": ref.document_id,
        "bucket": ref.bucket,
        "name": ref.name,
        "generation": ref.generation,
        "content_type": ref.content_type,
        "size": ref.size,
        "metadata": Jsonb(ref.metadata),
        "state": _state(plan),
        "expected": ref.chunk_count,
        "error": ref.error,
        "revision": ref.revision,
        "chunking": ref.chunking,
    }


@dataclass(frozen=True, slots=True)
class _Live:
    """A chunk set to load: where its rows go and how many make it complete."""

    plan: DocumentPlan
    rows_generation: int
    expected: int

    def key(self) -> dict[str, Any]:
        ref = self.plan.ref
        return {
            "document_id": ref.document_id,
            "generation": ref.generation,
            "rows_generation": self.rows_generation,
            "expected": self.expected,
            "chunking": ref.chunking,
        }


def _row_metadata(plan: DocumentPlan, metadata: dict[str, Any]) -> dict[str, Any]:
    chunking = plan.ref.chunking
    return {**metadata, "chunking": chunking} if chunking else metadata


def _copy(cur: psycopg.Cursor[Any], statement: str, tuples: list[tuple[Any, ...]]) -> None:
    with cur.copy(statement) as copy:
        copy.set_types(_COPY_TYPES)
        for row in tuples:
            copy.write_row(row)


def _load_chunks(
    conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], tuples: list[tuple[Any, ...]]
) -> None:
    """Store chunk rows: one straight COPY when none of them exists yet, else a merge.

    A first delivery (the usual case) costs what a raw COPY costs; a redelivery,
    a replay or a re-embedding goes through the staging table and the upsert.
    Should another writer store some of the rows between the check and the COPY,
    the COPY's savepoint is rolled back and the merge does the work.
    """
    if cur.execute(_ANY_EXISTS, ([t[0] for t in tuples],)).fetchone() is None:
        try:
            with conn.transaction():
                _copy(cur, _COPY_DIRECT, tuples)
        except psycopg.errors.UniqueViolation:
            log.info("writer.copy_conflict", extra={"fields": {"rows": len(tuples)}})
        else:
            return
    cur.execute(_STAGING_DDL)
    _copy(cur, _COPY, tuples)
    cur.execute(_MERGE)


def _merge_vectors(cur: psycopg.Cursor[Any], rows: list[tuple[IndexVersion, Row]]) -> None:
    """Load vectors of versions other than 1 into their tables (chunk rows exist by now)."""
    cur.execute(_VECTOR_STAGING_DDL)
    with cur.copy(_COPY_VECTORS) as copy:
        copy.set_types(["int4", "text", "vector"])
        for version, r in rows:
            copy.write_row((version.version, r.chunk.chunk_id, r.vector))
    for version in {version.version: version for version, _ in rows}.values():
        query = sql.SQL(_MERGE_VECTORS).format(table=version.table)
        cur.execute(query, {"version": version.version})


def _routes(
    conn: psycopg.Connection[Any], versions: list[IndexVersion], keys: set[tuple[str, int]]
) -> dict[tuple[str, int], list[IndexVersion]]:
    """The versions each (model, dimension) goes to; the first model written to a
    version 1 without one claims it, and any other model is then refused there."""
    routes: dict[tuple[str, int], list[IndexVersion]] = {}
    for model, dim in sorted(keys):
        targets = route(versions, model, dim)
        if any(v.version == PIPELINE_VERSION and v.pipeline_model is None for v in targets):
            claimed = claim_pipeline_model(conn, model)
            versions = [claimed if v.version == PIPELINE_VERSION else v for v in versions]
            targets = route(versions, model, dim)
        routes[model, dim] = targets
    return routes


def write_flush(conn: psycopg.Connection[Any], plans: list[DocumentPlan]) -> FlushResult:
    """Apply ``plans`` in one transaction (see the module docstring)."""
    live: list[_Live] = []
    stale = 0
    indexed: list[str] = []
    with conn.transaction(), conn.cursor() as cur:
        # First, before any chunk row: `ragrun index create` and `drop` lock the
        # versions, then the chunks (a vector table's foreign key), so taking them in
        # the other order could deadlock with them.
        versions = list_versions(conn, lock=True)
        for plan in plans:
            ref = plan.ref
            params = _document_params(plan)
            cur.execute(_INSERT_DOCUMENT, params)
            row = cur.execute(_CURRENT, (ref.document_id,)).fetchone()
            assert row is not None  # inserted just above if it was missing
            generation, state, active, expected, revision, chunking = row
            order = compare(Stored(generation, state, revision, chunking), ref)
            if order < 0:
                stale += 1  # an older generation or revision, or one already deleted
                continue
            if order > 0:
                cur.execute(_REPLACE_DOCUMENT, params)
                expected = ref.chunk_count
            elif ref.chunk_count_final and expected != ref.chunk_count and not plan.is_tombstone:
                # The manifest of a streamed chunk set: until it came, the stored
                # count was only an upper bound (see DocumentRef.chunk_count_final).
                cur.execute(_EXPECT, {"document_id": ref.document_id, "expected": ref.chunk_count})
                expected = ref.chunk_count
            if plan.is_tombstone:
                cur.execute(_RETIRE, {"document_id": ref.document_id})
                continue
            served = None
            if active == ref.generation:
                found = cur.execute(_SERVED_CHUNKING, (ref.document_id, active)).fetchone()
                served = None if found is None else str(found[0])
            target = _Live(
                plan, rows_generation(ref.generation, active, served, ref.chunking), expected
            )
            if order > 0:
                # Rows of a chunk set this one replaces, in the place this one's go.
                cur.execute(_CLEAR_OTHER_SETS, target.key())
            live.append(target)

        rows = [(item, row) for item in live for row in item.plan.rows.values()]
        if rows:
            routes = _routes(conn, versions, {(r.model, len(r.vector)) for _, r in rows})
            elsewhere = [
                (version, r)
                for _, r in rows
                for version in routes[r.model, len(r.vector)]
                if version.version != PIPELINE_VERSION
            ]
            pipeline = {
                key
                for key, targets in routes.items()
                if any(v.version == PIPELINE_VERSION for v in targets)
            }
            tuples = [
                (
                    r.chunk.chunk_id,
                    r.document_id,
                    item.rows_generation,
                    r.chunk.index,
                    r.chunk.text,
                    r.chunk.tokens,
                    Jsonb(_row_metadata(item.plan, r.chunk.metadata)),
                    r.model,
                    r.vector if (r.model, len(r.vector)) in pipeline else None,
                )
                for item, r in rows
            ]
            _load_chunks(conn, cur, tuples)
            if elsewhere:
                _merge_vectors(cur, elsewhere)

        for item in live:
            key = item.key()
            count = cur.execute(_COUNT, key).fetchone()
            written = int(count[0]) if count else 0
            complete = written >= item.expected
            if complete:
                if item.rows_generation != item.plan.ref.generation:
                    cur.execute(_UNSERVE, key)
                    cur.execute(_PROMOTE, key)
                cur.execute(_DROP_OTHERS, key)
                indexed.append(item.plan.ref.uri)
            state = "indexed" if complete else "embedding" if written > 0 else "chunked"
            cur.execute(
                _PROGRESS,
                {**key, "written": written, "state": state, "complete": complete},
            )
    return FlushResult(documents=len(plans), rows_loaded=len(rows), stale=stale, indexed=indexed)
