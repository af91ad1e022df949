"""The writer's pure core: what one flush must do, decided without a database.

A flush receives vector batches from many messages, possibly several copies of
the same batch (at-least-once delivery) and several generations of the same
document (re-uploads). The plan keeps, per document, the newest version it
carries, drops chunks of older versions in the flush, and removes duplicate
chunk ids, so the SQL step is a plain set-based upsert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ragrun_common.contracts import Chunk, DocumentRef, VectorBatch, Vectors


@dataclass(frozen=True, slots=True)
class Row:
    """One chunk row to load."""

    document_id: str
    generation: int
    chunk: Chunk
    model: str
    vector: Vectors


@dataclass(slots=True)
class DocumentPlan:
    """The newest version of one document in this flush and its chunk rows."""

    ref: DocumentRef
    rows: dict[str, Row] = field(default_factory=dict)

    @property
    def is_tombstone(self) -> bool:
        return self.ref.deleted or self.ref.error is not None


def _rank(ref: DocumentRef) -> tuple[int, bool]:
    # Within one generation a failure or deletion outranks the chunk batches.
    return (ref.generation, ref.deleted or ref.error is not None)


def plan_flush(batches: Sequence[VectorBatch]) -> list[DocumentPlan]:
    """Per-document plans in document-id order (a stable lock order for the database)."""
    plans: dict[str, DocumentPlan] = {}
    for batch in batches:
        ref = batch.document
        plan = plans.get(ref.document_id)
        if plan is None or _rank(ref) > _rank(plan.ref):
            keep = plan.rows if plan and plan.ref.generation == ref.generation else {}
            plan = plans[ref.document_id] = DocumentPlan(ref=ref, rows=keep)
        if ref.generation != plan.ref.generation or plan.is_tombstone:
            continue
        for chunk, vector in zip(batch.chunks, batch.vectors, strict=True):
            plan.rows[chunk.chunk_id] = Row(
                ref.document_id, ref.generation, chunk, batch.model, vector
            )
    for plan in plans.values():
        if plan.is_tombstone:
            plan.rows.clear()
    return [plans[key] for key in sorted(plans)]
