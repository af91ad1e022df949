"""Contract tests: the real google-genai client, through VertexEmbedder, against VertexStub.

Nothing in the client is patched; the stub answers with the REST shapes Vertex AI
uses, so these tests break if the SDK changes what it sends or expects.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.vertex import VertexEmbedder
from ragrun_common.errors import PermanentError, RetryableError
from ragrun_common.testing.vertex_stub import VertexStub

PROJECT = "ragrun-test"
LOCATION = "europe-west1"


@pytest.fixture(scope="module")
def stub() -> Iterator[VertexStub]:
    with VertexStub() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_stub(stub: VertexStub) -> None:
    stub.clear()


def make_embedder(
    stub: VertexStub, model: str = "text-embedding-005", dim: int = 256, timeout_s: float = 10.0
) -> VertexEmbedder:
    return VertexEmbedder(
        model=model,
        dim=dim,
        project=PROJECT,
        location=LOCATION,
        base_url=stub.base_url,
        access_token="test-token",
        timeout_s=timeout_s,
    )


@pytest.fixture
def embedder(stub: VertexStub) -> Iterator[VertexEmbedder]:
    provider = make_embedder(stub)
    yield provider
    provider.close()


TEXTS = [
    "PostgreSQL stores vectors with the pgvector extension",
    "Pub/Sub redelivers messages that were not acknowledged",
    "Cloud Storage notifies on object finalize",
]


def test_text_embedding_005_uses_predict_and_returns_unit_vectors(
    stub: VertexStub, embedder: VertexEmbedder
) -> None:
    vectors = embedder.embed(TEXTS, Task.DOCUMENT)

    assert vectors.shape == (3, 256)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    [request] = stub.requests
    assert (request.method, request.model) == ("predict", "text-embedding-005")
    assert (request.project, request.location) == (PROJECT, LOCATION)
    assert request.texts == tuple(TEXTS)
    assert request.task_type == "RETRIEVAL_DOCUMENT"
    assert request.dimensionality == 256
    assert request.auto_truncate is True
    assert request.tokens > 0


def test_task_type_reaches_the_server(stub: VertexStub, embedder: VertexEmbedder) -> None:
    embedder.embed(["what stores vectors?"], Task.QUERY)
    embedder.embed(["vectors live in PostgreSQL"], Task.DOCUMENT)

    assert [r.task_type for r in stub.requests] == ["RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT"]


def test_same_text_gives_same_vector_in_any_batch(embedder: VertexEmbedder) -> None:
    alone = embedder.embed([TEXTS[1]], Task.DOCUMENT)
    batched = embedder.embed(TEXTS, Task.DOCUMENT)

    np.testing.assert_allclose(alone[0], batched[1], rtol=1e-5, atol=1e-6)


def test_similar_texts_score_higher_than_unrelated(embedder: VertexEmbedder) -> None:
    query = embedder.embed(["how does pgvector store vectors in PostgreSQL"], Task.QUERY)[0]
    docs = embedder.embed(TEXTS, Task.DOCUMENT)

    scores = docs @ query
    assert int(np.argmax(scores)) == 0
    assert scores[0] > scores[1] + 0.2
    assert scores[0] > scores[2] + 0.2


@pytest.mark.parametrize(
    ("texts", "method"), [(TEXTS, "batchEmbedContents"), (TEXTS[:1], "embedContent")]
)
def test_gemini_embedding_001(stub: VertexStub, texts: list[str], method: str) -> None:
    provider = make_embedder(stub, model="gemini-embedding-001", dim=768)
    try:
        vectors = provider.embed(texts, Task.DOCUMENT)
    finally:
        provider.close()

    assert vectors.shape == (len(texts), 768)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    [request] = stub.requests
    assert (request.method, request.model) == (method, "gemini-embedding-001")
    assert request.texts == tuple(texts)
    assert request.task_type == "RETRIEVAL_DOCUMENT"
    assert request.dimensionality == 768


def test_no_texts_makes_no_request(stub: VertexStub, embedder: VertexEmbedder) -> None:
    assert embedder.embed([], Task.DOCUMENT).shape == (0, 256)
    assert stub.requests == []


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_statuses_are_retryable_and_not_retried_by_the_sdk(
    stub: VertexStub, embedder: VertexEmbedder, status: int
) -> None:
    stub.fail_next(1, status=status)

    with pytest.raises(RetryableError, match=str(status)):
        embedder.embed(TEXTS, Task.DOCUMENT)
    assert [r.status for r in stub.requests] == [status]  # one attempt: Pub/Sub owns retries
    assert embedder.embed(TEXTS, Task.DOCUMENT).shape == (3, 256)


@pytest.mark.parametrize("status", [400, 403])
def test_client_errors_are_permanent(
    stub: VertexStub, embedder: VertexEmbedder, status: int
) -> None:
    stub.fail_next(1, status=status)

    with pytest.raises(PermanentError, match=str(status)):
        embedder.embed(TEXTS, Task.DOCUMENT)


def test_unknown_model_is_permanent(stub: VertexStub) -> None:
    provider = make_embedder(stub, model="text-embedding-999")
    try:
        with pytest.raises(PermanentError, match="404"):
            provider.embed(TEXTS, Task.DOCUMENT)
    finally:
        provider.close()


def test_more_texts_than_vertex_accepts_is_permanent(embedder: VertexEmbedder) -> None:
    with pytest.raises(PermanentError, match="400"):
        embedder.embed(["word"] * 251, Task.DOCUMENT)


@pytest.mark.parametrize("kind", ["count", "dim", "json"])
def test_malformed_answers_are_retryable(
    stub: VertexStub, embedder: VertexEmbedder, kind: str
) -> None:
    stub.malformed_next(1, kind=kind)  # type: ignore[arg-type]

    with pytest.raises(RetryableError, match="malformed"):
        embedder.embed(TEXTS, Task.DOCUMENT)


def test_dropped_connection_is_retryable(stub: VertexStub, embedder: VertexEmbedder) -> None:
    stub.disconnect_next(1)

    with pytest.raises(RetryableError):
        embedder.embed(TEXTS, Task.DOCUMENT)
    assert embedder.embed(TEXTS, Task.DOCUMENT).shape == (3, 256)


def test_timeout_is_retryable(stub: VertexStub) -> None:
    provider = make_embedder(stub, timeout_s=0.2)
    stub.set_delay(2.0)
    try:
        with pytest.raises(RetryableError, match="Timeout"):
            provider.embed(TEXTS, Task.DOCUMENT)
    finally:
        stub.set_delay(0.0)
        provider.close()


def test_unreachable_server_is_retryable() -> None:
    with VertexStub() as gone:
        base_url = gone.base_url
    provider = VertexEmbedder(
        model="text-embedding-005",
        dim=256,
        project=PROJECT,
        location=LOCATION,
        base_url=base_url,
        access_token="test-token",
    )
    try:
        with pytest.raises(RetryableError):
            provider.embed(TEXTS, Task.DOCUMENT)
    finally:
        provider.close()


def test_embedder_is_safe_to_share_between_threads(
    stub: VertexStub, embedder: VertexEmbedder
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: embedder.embed([f"text {i}"], Task.DOCUMENT), range(32)))

    assert all(r.shape == (1, 256) for r in results)
    assert len(stub.requests) == 32
