"""Message contracts: versioned, compact, and strict about what they accept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragrun_common.contracts import (
    SCHEMA_ATTR,
    VERSION_ATTR,
    Chunk,
    ChunkBatch,
    DocumentRef,
    VectorBatch,
    chunk_id,
    document_id,
)
from ragrun_common.errors import ContractError
from ragrun_common.pubsub import Received, count_weight

DOC = DocumentRef(bucket="b", name="dir/a.pdf", generation=7, chunk_count=250)


def chunks(n: int, text: str = "x" * 1000) -> list[Chunk]:
    return [
        Chunk(chunk_id=chunk_id("b", "dir/a.pdf", 7, i), index=i, text=text, tokens=250)
        for i in range(n)
    ]


def test_ids_are_deterministic_and_distinct() -> None:
    assert chunk_id("b", "a", 1, 0) == chunk_id("b", "a", 1, 0)
    ids = {chunk_id("b", "a", g, i) for g in (1, 2) for i in range(100)}
    assert len(ids) == 200
    assert document_id("b", "a/b") != document_id("b/a", "b")


def test_vector_batch_round_trip_is_exact() -> None:
    vectors = np.random.default_rng(0).standard_normal((3, 768)).astype(np.float32)
    batch = VectorBatch(document=DOC, chunks=chunks(3), model="local", vectors=vectors)
    data, attrs = batch.encode()
    assert attrs[SCHEMA_ATTR] == "ragrun.vector-batch" and attrs[VERSION_ATTR] == "1"
    assert attrs["dim"] == "768" and attrs["count"] == "3"
    back = VectorBatch.decode(data, attrs)
    assert back.chunks == batch.chunks and back.document == DOC
    np.testing.assert_array_equal(back.vectors, vectors)


def test_full_batch_of_250_x_768_is_far_below_pubsub_limit() -> None:
    vectors = np.random.default_rng(1).standard_normal((250, 768)).astype(np.float32)
    batch = VectorBatch(document=DOC, chunks=chunks(250), model="m", vectors=vectors)
    data, _ = batch.encode()
    as_json_floats = len(json.dumps(vectors.tolist()))
    assert len(data) < 1_100_000  # 768 kB of vectors + 250 kB of text + header
    assert len(data) < as_json_floats / 3


def test_chunk_batch_round_trip() -> None:
    batch = ChunkBatch(document=DOC, chunks=chunks(2, "héllo"))
    assert ChunkBatch.decode(*batch.encode()) == batch
    assert batch.encode()[1]["count"] == "2"


@pytest.mark.parametrize(
    ("data", "attrs"),
    [
        (b"{}", {SCHEMA_ATTR: "ragrun.chunk-batch", VERSION_ATTR: "1"}),
        (b"not json", {SCHEMA_ATTR: "ragrun.chunk-batch", VERSION_ATTR: "1"}),
        (
            ChunkBatch(document=DOC).encode()[0],
            {SCHEMA_ATTR: "ragrun.chunk-batch", VERSION_ATTR: "9"},
        ),
        (ChunkBatch(document=DOC).encode()[0], {}),
    ],
)
def test_bad_chunk_batches_are_contract_errors(data: bytes, attrs: dict[str, str]) -> None:
    with pytest.raises(ContractError):
        ChunkBatch.decode(data, attrs)


def test_truncated_vector_batch_is_a_contract_error() -> None:
    batch = VectorBatch(
        document=DOC, chunks=chunks(2), model="m", vectors=np.ones((2, 4), np.float32)
    )
    data, attrs = batch.encode()
    with pytest.raises(ContractError, match="expected 2x4 floats"):
        VectorBatch.decode(data[:-4], attrs)
    with pytest.raises(ContractError):
        VectorBatch.decode(b"JUNK" + data[4:], attrs)


@pytest.mark.parametrize("header", [b'"x"', b"null", b"[]", b'{"dim": 1e999, "chunks": []}'])
def test_a_header_that_is_no_batch_is_a_contract_error(header: bytes) -> None:
    """Not an AttributeError or OverflowError that would fail the whole gathered batch."""
    _, attrs = VectorBatch(
        document=DOC, chunks=[], model="m", vectors=np.ones((0, 4), np.float32)
    ).encode()
    data = b"RGV1" + len(header).to_bytes(4, "little") + header
    with pytest.raises(ContractError, match="malformed vector batch"):
        VectorBatch.decode(data, attrs)


def test_vector_count_must_match_chunks() -> None:
    with pytest.raises(ContractError):
        VectorBatch(document=DOC, chunks=chunks(2), model="m", vectors=np.ones((3, 4), np.float32))


@pytest.mark.parametrize(
    ("count", "weight"), [("12", 12), (None, 1), ("n/a", 1), ("-3", 1), ("", 1)]
)
def test_a_bad_count_attribute_weighs_one(count: str | None, weight: int) -> None:
    """The workers gather by this weight before any handler runs: it must not raise."""
    attributes = {} if count is None else {"count": count}
    assert count_weight(Received(b"", attributes, "1", None)) == weight
