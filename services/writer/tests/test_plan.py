"""The writer's pure core: which version of a document wins, and where its rows go."""

from __future__ import annotations

import numpy as np
import pytest

from ragrun_common.contracts import Chunk, DocumentRef, VectorBatch, chunk_id
from ragrun_writer.plan import Stored, compare, plan_flush, rows_generation


def ref(generation: int = 5, revision: int = 100, chunking: str = "a", **kw: object) -> DocumentRef:
    return DocumentRef(
        bucket="b", name="n", generation=generation, revision=revision, chunking=chunking, **kw
    )  # type: ignore[arg-type]


def vb(doc: DocumentRef, *indexes: int) -> VectorBatch:
    chunks = [
        Chunk(
            chunk_id=chunk_id("b", "n", doc.generation, i, doc.chunking),
            index=i,
            text="t",
            tokens=1,
        )
        for i in indexes
    ]
    return VectorBatch(
        document=doc, chunks=chunks, model="m", vectors=np.ones((len(chunks), 2), np.float32)
    )


@pytest.mark.parametrize(
    ("stored", "incoming", "expected"),
    [
        (Stored(5, "indexed", 100, "a"), ref(), 0),
        (Stored(5, "indexed", 100, "a"), ref(revision=200, chunking="b"), 1),
        (Stored(5, "indexed", 200, "b"), ref(revision=100), -1),
        (Stored(5, "indexed", 900, "b"), ref(generation=6, revision=1), 1),
        (Stored(6, "chunked", 1, "a"), ref(generation=5, revision=900), -1),
        (Stored(5, "deleted", 100, "a"), ref(revision=900), -1),
        (Stored(5, "failed", 100, "a"), ref(revision=200), 1),
        (Stored(5, "failed", 200, "a"), ref(revision=100), -1),
        # Messages from before revisions: a failure outranks chunks, as it always did.
        (Stored(5, "indexed", 0, ""), ref(revision=0, chunking="", error="bad"), 1),
        (Stored(5, "failed", 0, ""), ref(revision=0, chunking=""), -1),
    ],
)
def test_version_order(stored: Stored, incoming: DocumentRef, expected: int) -> None:
    assert compare(stored, incoming) == expected


def test_rows_of_a_differently_cut_set_wait_out_of_sight() -> None:
    assert rows_generation(5, active_generation=5, served_chunking="a", chunking="b") == -5
    assert rows_generation(5, active_generation=5, served_chunking="a", chunking="a") == 5
    assert rows_generation(5, active_generation=5, served_chunking=None, chunking="b") == 5
    assert rows_generation(5, active_generation=4, served_chunking="a", chunking="b") == 5
    assert rows_generation(5, active_generation=None, served_chunking=None, chunking="b") == 5


def test_plan_keeps_only_the_newest_set_of_each_document() -> None:
    old, new = ref(revision=100, chunking="a"), ref(revision=200, chunking="b")
    (plan,) = plan_flush([vb(old, 0, 1, 2), vb(new, 0), vb(old, 3), vb(new, 1, 1)])
    assert plan.ref == new
    assert sorted(r.chunk.index for r in plan.rows.values()) == [0, 1]
    assert set(plan.rows) == {chunk_id("b", "n", 5, i, "b") for i in (0, 1)}


def test_messages_from_before_revisions_still_decode_with_their_ids() -> None:
    old = DocumentRef.model_validate_json('{"bucket": "b", "name": "n", "generation": 1}')
    assert (old.chunking, old.revision) == ("", 0)
    # Without a fingerprint the id is the one older chunkers computed.
    assert (
        chunk_id("b", "n", 1, 0)
        == chunk_id("b", "n", 1, 0, "")
        == "6c46d6d03fa09b1baaa5e5f03ac9b018"
    )
    assert chunk_id("b", "n", 1, 0, "tokens=256") != chunk_id("b", "n", 1, 0)
