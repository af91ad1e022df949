"""Apply a flush plan to PostgreSQL in one transaction.

Order of work, all in one transaction so a crash leaves nothing half-done:

1. Upsert each document row; a version older than the stored one is stale and
   skipped, a newer one resets the counts (queries keep serving the old
   ``active_generation`` until the new one is complete).
2. Binary COPY every chunk row into a session-local staging table, then
   ``INSERT ... SELECT ... ON CONFLICT (chunk_id)``: a redelivered batch
   changes nothing, a changed chunk (re-chunked or re-embedded) is updated.
3. Recount each touched document's chunks for its generation; once all
   expected chunks are present the generation becomes the active one and older
   generations' chunks are deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ragrun_writer.plan import DocumentPlan

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

_UPSERT_DOCUMENT = """
INSERT INTO ragrun.documents AS d
    (document_id, bucket, name, generation, content_type, size_bytes, metadata,
     state, chunks_expected, error)
VALUES (%(document_id)s, %(bucket)s, %(name)s, %(generation)s, %(content_type)s,
        %(size)s, %(metadata)s, %(state)s, %(expected)s, %(error)s)
ON CONFLICT (document_id) DO UPDATE SET
    generation = EXCLUDED.generation,
    content_type = EXCLUDED.content_type,
    size_bytes = EXCLUDED.size_bytes,
    metadata = EXCLUDED.metadata,
    state = EXCLUDED.state,
    chunks_expected = EXCLUDED.chunks_expected,
    chunks_written = 0,
    error = EXCLUDED.error,
    updated_at = now()
WHERE d.generation < EXCLUDED.generation
   OR (d.generation = EXCLUDED.generation
       AND EXCLUDED.state IN ('failed', 'deleted')
       AND d.state NOT IN ('failed', 'deleted'))
"""
_CURRENT = "SELECT generation, state FROM ragrun.documents WHERE document_id = %s FOR UPDATE"
_RETIRE = """
WITH gone AS (DELETE FROM ragrun.chunks WHERE document_id = %(document_id)s)
UPDATE ragrun.documents SET active_generation = NULL, chunks_written = 0, updated_at = now()
WHERE document_id = %(document_id)s
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
    embedding = EXCLUDED.embedding,
    written_at = now()
WHERE (ragrun.chunks.content, ragrun.chunks.model)
      IS DISTINCT FROM (EXCLUDED.content, EXCLUDED.model)
"""
_RECOUNT = """
UPDATE ragrun.documents d SET
    chunks_written = n.written,
    state = CASE WHEN n.written >= d.chunks_expected THEN 'indexed'
                 WHEN n.written > 0 THEN 'embedding' ELSE 'chunked' END,
    active_generation = CASE WHEN n.written >= d.chunks_expected
                             THEN d.generation ELSE d.active_generation END,
    updated_at = now()
FROM (SELECT count(*) AS written FROM ragrun.chunks
      WHERE document_id = %(document_id)s AND generation = %(generation)s) n
WHERE d.document_id = %(document_id)s AND d.generation = %(generation)s
  AND d.state NOT IN ('failed', 'deleted')
RETURNING d.state
"""
_DROP_OLD = """
DELETE FROM ragrun.chunks WHERE document_id = %(document_id)s AND generation <> %(generation)s
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


def write_flush(conn: psycopg.Connection[Any], plans: list[DocumentPlan]) -> FlushResult:
    """Apply ``plans`` in one transaction (see the module docstring)."""
    live: list[DocumentPlan] = []
    stale = 0
    indexed: list[str] = []
    with conn.transaction(), conn.cursor() as cur:
        for plan in plans:
            ref = plan.ref
            state = _state(plan)
            cur.execute(
                _UPSERT_DOCUMENT,
                {
                    "document_id": ref.document_id,
                    "bucket": ref.bucket,
                    "name": ref.name,
                    "generation": ref.generation,
                    "content_type": ref.content_type,
                    "size": ref.size,
                    "metadata": Jsonb(ref.metadata),
                    "state": state,
                    "expected": ref.chunk_count,
                    "error": ref.error,
                },
            )
            row = cur.execute(_CURRENT, (ref.document_id,)).fetchone()
            assert row is not None  # upserted just above
            generation, current_state = row
            if generation != ref.generation:
                stale += 1
                continue
            if plan.is_tombstone:
                if current_state == state:
                    cur.execute(_RETIRE, {"document_id": ref.document_id})
                continue
            if current_state in ("failed", "deleted"):
                stale += 1  # this version already failed or was deleted
                continue
            live.append(plan)

        rows = [row for plan in live for row in plan.rows.values()]
        if rows:
            cur.execute(_STAGING_DDL)
            with cur.copy(_COPY) as copy:
                copy.set_types(_COPY_TYPES)
                for r in rows:
                    copy.write_row(
                        (
                            r.chunk.chunk_id,
                            r.document_id,
                            r.generation,
                            r.chunk.index,
                            r.chunk.text,
                            r.chunk.tokens,
                            Jsonb(r.chunk.metadata),
                            r.model,
                            r.vector,
                        )
                    )
            cur.execute(_MERGE)

        for plan in live:
            key = {"document_id": plan.ref.document_id, "generation": plan.ref.generation}
            result = cur.execute(_RECOUNT, key).fetchone()
            if result is not None and result[0] == "indexed":
                cur.execute(_DROP_OLD, key)
                indexed.append(plan.ref.uri)
    return FlushResult(documents=len(plans), rows_loaded=len(rows), stale=stale, indexed=indexed)
