"""Search modes, reranking, document status, API keys, request ids and CORS over HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from ragrun_common.contracts import Vectors, document_id
from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.hashing import HashEmbedder
from ragrun_common.logs import CloudLoggingFormatter
from ragrun_query.main import create_app

DIM = 384


class NoEmbeddings:
    """A provider that must not be called."""

    name = "none"
    dim = DIM

    def embed(self, texts: Sequence[str], task: Task) -> Vectors:
        raise AssertionError("keyword search must not embed the query")


# -- search modes --------------------------------------------------------------


def test_keyword_mode_ranks_by_text_and_skips_the_embedding(
    make_settings: Any, pool: ConnectionPool, corpus: Any
) -> None:
    app = create_app(make_settings(), pool=pool, provider=NoEmbeddings())
    response = app.test_client().post(
        "/v1/query", json={"query": "autovacuum bloat", "mode": "keyword"}
    )
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["document"] for r in results] == [corpus.postgres.uri]
    assert results[0]["ranks"] == {"vector": None, "keyword": 1}
    assert results[0]["score"] > 0


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"dead letter"', {"pubsub"}),  # a phrase
        ("report -drafted", {"literal"}),  # exclusion
        ("pasta or lookups", {"cooking", "postgres"}),  # either word
        ("pasta lookups", {"cooking", "postgres"}),  # plain words: any of them
        ("the and of", set()),  # only stop words: nothing to match, not an error
        ("(((", set()),
    ],
)
def test_keyword_mode_speaks_websearch_syntax(
    client: FlaskClient, corpus: Any, query: str, expected: set[str]
) -> None:
    response = client.post("/v1/query", json={"query": query, "mode": "keyword", "k": 100})
    assert response.status_code == 200
    uris = {r["document"] for r in response.get_json()["results"]}
    assert uris == {getattr(corpus, name).uri for name in expected}


def test_hybrid_fuses_both_legs_with_reciprocal_rank_fusion(
    make_settings: Any, pool: ConnectionPool
) -> None:
    app = create_app(make_settings(rrf_k=10), pool=pool, provider=HashEmbedder(DIM))
    response = app.test_client().post("/v1/query", json={"query": "PostgreSQL indexes", "k": 100})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert any(r["ranks"]["keyword"] is not None for r in results)
    for result in results:
        ranks = result["ranks"]
        expected = sum(1 / (10 + rank) for rank in ranks.values() if rank is not None)
        assert result["score"] == pytest.approx(expected)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    # The chunk both legs rank first comes first.
    assert results[0]["ranks"] == {"vector": 1, "keyword": 1}


def test_vector_mode_reports_cosine_similarity(client: FlaskClient) -> None:
    response = client.post("/v1/query", json={"query": "pasta", "mode": "vector", "k": 3})
    results = response.get_json()["results"]
    assert [r["ranks"]["vector"] for r in results] == [1, 2, 3]
    assert all(r["ranks"]["keyword"] is None for r in results)
    assert all(-1.0 <= r["score"] <= 1.0 for r in results)


# -- reranking -------------------------------------------------------------------


class ShortestFirst:
    """Prefers short passages, so its order differs from the search's."""

    name = "shortest"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def score(self, query: str, passages: Sequence[str]) -> Sequence[float]:
        self.calls.append((query, len(passages)))
        return [-float(len(p)) for p in passages]


def test_reranker_reorders_the_candidates(make_settings: Any, pool: ConnectionPool) -> None:
    reranker = ShortestFirst()
    settings = make_settings(rerank_candidates=6)
    app = create_app(settings, pool=pool, provider=HashEmbedder(DIM), reranker=reranker)
    client = app.test_client()
    response = client.post("/v1/query", json={"query": "PostgreSQL", "k": 3})
    results = response.get_json()["results"]
    assert reranker.calls == [("PostgreSQL", 6)]
    assert len(results) == 3
    assert [r["ranks"]["rerank"] for r in results] == [1, 2, 3]
    lengths = [len(r["content"]) for r in results]
    assert lengths == sorted(lengths)
    assert all(r["score"] == -len(r["content"]) for r in results)
    # A request can opt out.
    response = client.post("/v1/query", json={"query": "PostgreSQL", "k": 3, "rerank": False})
    assert all("rerank" not in r["ranks"] for r in response.get_json()["results"])
    assert len(reranker.calls) == 1


def test_asking_for_a_reranker_that_is_not_configured_is_501(client: FlaskClient) -> None:
    response = client.post("/v1/query", json={"query": "q", "rerank": True})
    assert response.status_code == 501
    assert "RAGRUN_QUERY_RERANK" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("value", ["bogus", "cross-encoder", "none:x"])
def test_bad_rerank_setting_fails_at_start(make_settings: Any, value: str) -> None:
    with pytest.raises(ValueError, match="RAGRUN_QUERY_RERANK"):
        make_settings(rerank=value)


# -- documents ---------------------------------------------------------------------


def test_document_status_by_id_and_by_uri(client: FlaskClient, corpus: Any) -> None:
    doc = corpus.postgres
    doc_id = document_id(doc.bucket, doc.name)
    response = client.get(f"/v1/documents/{doc_id}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["document_id"] == doc_id
    assert body["uri"] == doc.uri
    assert body["state"] == "indexed"
    assert body["generation"] == 2
    assert body["active_generation"] == 2
    # Three chunks were written over two generations; two are served.
    assert body["chunks"] == {"expected": 3, "written": 3, "served": 2}
    assert body["error"] is None
    assert body["metadata"] == doc.metadata
    assert body["created_at"].startswith("2024-03-01T10:00:00")
    by_uri = client.get("/v1/documents", query_string={"uri": doc.uri})
    assert by_uri.status_code == 200
    assert by_uri.get_json() == body


def test_pending_document_has_no_served_chunks(client: FlaskClient, corpus: Any) -> None:
    doc = corpus.pending
    body = client.get("/v1/documents", query_string={"uri": doc.uri}).get_json()
    assert body["state"] == "embedding"
    assert body["active_generation"] is None
    assert body["chunks"]["served"] == 0


def test_failed_document_shows_its_error(client: FlaskClient, pool: ConnectionPool) -> None:
    doc_id = document_id("docs", "broken.pdf")
    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO ragrun.documents (document_id, bucket, name, generation, state, error)"
            " VALUES (%s, 'docs', 'broken.pdf', 7, 'failed', 'the PDF is encrypted')"
            " ON CONFLICT DO NOTHING",
            (doc_id,),
        )
    body = client.get(f"/v1/documents/{doc_id}").get_json()
    assert body["state"] == "failed"
    assert body["error"] == "the PDF is encrypted"
    assert body["chunks"] == {"expected": 0, "written": 0, "served": 0}


@pytest.mark.parametrize(
    ("path", "query", "status", "field"),
    [
        ("/v1/documents/" + "0" * 32, None, 404, None),
        ("/v1/documents/not-an-id", None, 400, "document_id"),
        ("/v1/documents/" + "A" * 32, None, 400, "document_id"),
        ("/v1/documents", None, 400, "uri"),
        ("/v1/documents", {"uri": "s3://b/n"}, 400, "uri"),
        ("/v1/documents", {"uri": "gs://bucket-only"}, 400, "uri"),
        ("/v1/documents", {"uri": "gs:///name"}, 400, "uri"),
        ("/v1/documents", {"uri": "gs://b/n\x00"}, 400, "uri"),
        ("/v1/documents", {"uri": "gs://nope/none.txt"}, 404, None),
    ],
)
def test_document_errors(
    client: FlaskClient, path: str, query: dict[str, str] | None, status: int, field: str | None
) -> None:
    response = client.get(path, query_string=query)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["message"]
    assert error.get("field") == field


# -- API keys -------------------------------------------------------------------------


@pytest.fixture
def locked(make_settings: Any, pool: ConnectionPool) -> FlaskClient:
    settings = make_settings(api_keys=" key-one , key-two,")
    return create_app(settings, pool=pool, provider=HashEmbedder(DIM)).test_client()


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer key-one"},
        {"Authorization": "bearer key-two"},
        {"X-API-Key": "key-two"},
        {"Authorization": "Basic a2V5LW9uZQ==", "X-API-Key": "key-one"},
    ],
)
def test_valid_keys_are_accepted(locked: FlaskClient, headers: dict[str, str]) -> None:
    response = locked.post("/v1/query", json={"query": "PostgreSQL", "k": 1}, headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer key-three"},
        {"Authorization": "Bearer key-one-and-more"},
        {"Authorization": "key-one"},
        {"X-API-Key": ""},
        {"X-API-Key": "KEY-ONE"},
        {"X-API-Key": "kéy"},
    ],
)
def test_missing_or_wrong_keys_are_401(locked: FlaskClient, headers: dict[str, str]) -> None:
    for method, path in [("post", "/v1/query"), ("post", "/v1/answer"), ("get", "/v1/documents")]:
        response = getattr(locked, method)(path, json={"query": "q"}, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "API key" in response.get_json()["error"]["message"]


def test_health_and_openapi_stay_open(locked: FlaskClient) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert locked.get(path).status_code == 200


def test_open_service_warns_once_at_start(
    make_settings: Any, pool: ConnectionPool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ragrun_query"):
        create_app(make_settings(), pool=pool, provider=HashEmbedder(DIM))
        create_app(make_settings(api_keys="k"), pool=pool, provider=HashEmbedder(DIM))
    warnings = [r for r in caplog.records if r.getMessage() == "query.auth_disabled"]
    assert len(warnings) == 1


# -- request ids and logs ----------------------------------------------------------------


def test_every_response_carries_a_request_id(client: FlaskClient) -> None:
    first = client.post("/v1/query", json={"query": "q", "k": 1})
    second = client.get("/healthz")
    ids = {first.headers["X-Request-Id"], second.headers["X-Request-Id"]}
    assert len(ids) == 2
    assert all(len(i) == 32 for i in ids)


def test_callers_request_id_is_kept_and_named_in_errors(client: FlaskClient) -> None:
    response = client.post("/v1/query", json={"k": 1}, headers={"X-Request-Id": "abc-123"})
    assert response.status_code == 400
    assert response.headers["X-Request-Id"] == "abc-123"
    assert response.get_json()["error"]["request_id"] == "abc-123"
    unsafe = client.get("/healthz", headers={"X-Request-Id": "a b" + "x" * 200})
    assert unsafe.headers["X-Request-Id"] != "a b" + "x" * 200


def test_logs_carry_request_id_and_trace(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    trace = "0af7651916cd43dd8448eb211c80319c"
    headers = {"X-Request-Id": "req-1", "X-Cloud-Trace-Context": f"{trace}/12345;o=1"}
    with caplog.at_level(logging.INFO, logger="ragrun_query"):
        client.post("/v1/query", json={"query": "PostgreSQL", "k": 1}, headers=headers)
    record = next(r for r in caplog.records if r.getMessage() == "query.served")
    line = json.loads(CloudLoggingFormatter("query").format(record))
    assert line["logging.googleapis.com/labels"] == {"request_id": "req-1"}
    assert line["logging.googleapis.com/trace"] == f"projects/ragrun-local/traces/{trace}"
    assert line["logging.googleapis.com/spanId"] == "12345"
    assert line["mode"] == "hybrid"
    assert line["exact_fallback"] is False


# -- CORS -------------------------------------------------------------------------------------


def test_cors_is_off_by_default(client: FlaskClient) -> None:
    response = client.post(
        "/v1/query", json={"query": "q", "k": 1}, headers={"Origin": "https://app.example"}
    )
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = client.options(
        "/v1/query",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_cors_allows_configured_origins_only(make_settings: Any, pool: ConnectionPool) -> None:
    settings = make_settings(
        cors_origins="https://app.example/, https://admin.example", api_keys="k"
    )
    client = create_app(settings, pool=pool, provider=HashEmbedder(DIM)).test_client()
    preflight = client.options(
        "/v1/query",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    # Browsers send preflights without credentials: they pass without a key.
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    actual = client.post(
        "/v1/query",
        json={"query": "q", "k": 1},
        headers={"Origin": "https://admin.example", "X-API-Key": "k"},
    )
    assert actual.status_code == 200
    assert actual.headers["Access-Control-Allow-Origin"] == "https://admin.example"
    assert "X-Request-Id" in actual.headers["Access-Control-Expose-Headers"]
    assert "Origin" in actual.headers["Vary"]
    other = client.options(
        "/v1/query",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    # Refused or absent, the Origin still shapes the answer: caches must key on it.
    assert "Origin" in other.headers["Vary"]
    assert "Origin" in client.get("/healthz").headers["Vary"]


def test_cors_wildcard(make_settings: Any, pool: ConnectionPool) -> None:
    settings = make_settings(cors_origins="*")
    client = create_app(settings, pool=pool, provider=HashEmbedder(DIM)).test_client()
    response = client.get("/healthz", headers={"Origin": "https://any.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
