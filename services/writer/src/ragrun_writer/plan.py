"""The writer's pure core: what one flush must do, decided without a database.

A flush receives vector batches from many messages, possibly several copies of
the same batch (at-least-once delivery), several generations of the same
document (re-uploads) and several chunk sets of one generation (a replay after
the chunking settings changed). The plan keeps, per document, the newest
version it carries, drops chunks of older versions in the flush, and removes
duplicate chunk ids, so the SQL step is a plain set-based upsert.

Versions are ordered by :func:`version_key`: generation first; within a
generation a deletion is final, then the newest ``revision`` (when the chunker
processed the event) wins, a failure outranking chunks of the same revision.
:func:`compare` applies the same order to what the database holds, and
:func:`rows_generation` says where a chunk set's rows go so that the complete
set being served stays untouched until its successor is complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ragrun_common.contracts import Chunk, DocumentRef, VectorBatch, Vectors

VersionKey = tuple[int, bool, int, bool, str]


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


def version_key(
    generation: int, *, deleted: bool, revision: int, failed: bool, chunking: str
) -> VersionKey:
    """Sort key of one version of a document: the greatest is the one to keep.

    A deletion ends its generation whatever comes later (a replayed event must
    not bring a deleted object back). Otherwise the chunker's newest processing
    wins, so a replay with new settings replaces the old chunks and a late copy
    of an old message cannot flip them back. Messages from before revisions
    all have revision 0; among them a failure outranks chunks, as it always did.
    ``chunking`` only breaks exact ties deterministically.
    """
    return (generation, deleted, revision, failed, chunking)


def ref_key(ref: DocumentRef) -> VersionKey:
    return version_key(
        ref.generation,
        deleted=ref.deleted,
        revision=ref.revision,
        failed=ref.error is not None,
        chunking=ref.chunking,
    )


def same_set(a: DocumentRef, b: DocumentRef) -> bool:
    """Whether two messages belong to one chunk set (one processing of one generation)."""
    return (a.generation, a.revision, a.chunking) == (b.generation, b.revision, b.chunking)


def knows_more(ref: DocumentRef, than: DocumentRef) -> bool:
    """Whether ``ref`` has the final chunk count of a set that ``than`` only bounds.

    Batches of a streamed document carry an upper bound; its manifest, sent
    last but possibly delivered first, carries the count that decides completion.
    """
    return (
        same_set(ref, than)
        and ref.chunk_count_final
        and not than.chunk_count_final
        and ref.error is None
        and not ref.deleted
        and than.error is None
        and not than.deleted
    )


def plan_flush(batches: Sequence[VectorBatch]) -> list[DocumentPlan]:
    """Per-document plans in document-id order (a stable lock order for the database)."""
    plans: dict[str, DocumentPlan] = {}
    for batch in batches:
        ref = batch.document
        plan = plans.get(ref.document_id)
        if plan is None or ref_key(ref) > ref_key(plan.ref):
            keep = plan.rows if plan and same_set(plan.ref, ref) else {}
            plan = plans[ref.document_id] = DocumentPlan(ref=ref, rows=keep)
        elif knows_more(ref, plan.ref):
            plan.ref = ref  # the manifest of a streamed set: its count is the final one
        if not same_set(ref, plan.ref) or plan.is_tombstone:
            continue
        for chunk, vector in zip(batch.chunks, batch.vectors, strict=True):
            plan.rows[chunk.chunk_id] = Row(
                ref.document_id, ref.generation, chunk, batch.model, vector
            )
    for plan in plans.values():
        if plan.is_tombstone:
            plan.rows.clear()
    return [plans[key] for key in sorted(plans)]


@dataclass(frozen=True, slots=True)
class Stored:
    """What the database says about a document's newest version."""

    generation: int
    state: str
    revision: int
    chunking: str

    def key(self) -> VersionKey:
        return version_key(
            self.generation,
            deleted=self.state == "deleted",
            revision=self.revision,
            failed=self.state == "failed",
            chunking=self.chunking,
        )


def compare(stored: Stored, ref: DocumentRef) -> int:
    """-1 if ``ref`` is older than the stored version (stale), 0 if it is it, 1 if newer."""
    new, old = ref_key(ref), stored.key()
    return (new > old) - (new < old)


def rows_generation(
    generation: int, active_generation: int | None, served_chunking: str | None, chunking: str
) -> int:
    """The ``generation`` value the rows of a chunk set are stored under.

    Normally the set's own generation. But while that generation is the one
    queries serve and the set was cut differently (``chunking`` differs from the
    served rows'), its rows wait under the negated generation, which no query
    matches, until the set is complete and replaces the served one. Rows of the
    same chunking have the same ids and are updated in place.
    """
    if active_generation == generation and served_chunking not in (None, chunking):
        return -generation
    return generation
