"""The HTTP API against a real PostgreSQL + pgvector holding a small corpus."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
import pytest
from flask.testing import FlaskClient
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from ragrun_common.contracts import Vectors, document_id
from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.hashing import HashEmbedder
from ragrun_common.errors import PermanentError, RetryableError
from ragrun_query.main import app_from_env, create_app, gunicorn_argv
from ragrun_query.search import QueryRequest, SearchConfig, detect_index, search
from ragrun_query.settings import QuerySettings

DIM = 384


def post(client: FlaskClient, body: object) -> tuple[int, Any]:
    response = client.post("/v1/query", json=body)
    return response.status_code, response.get_json()


def documents(results: list[dict[str, Any]]) -> set[str]:
    return {r["document"] for r in results}


def test_matching_document_ranks_first(client: FlaskClient, corpus: Any) -> None:
    status, body = post(client, {"query": "autovacuum tuning and table bloat"})
    assert status == 200
    results = body["results"]
    best = results[0]
    assert best["document"] == corpus.postgres.uri
    assert best["content"] == "PostgreSQL vacuum and autovacuum tuning reduce table bloat"
    assert best["generation"] == 2
    assert best["chunk_id"] in corpus.postgres.chunk_ids(2)
    assert best["metadata"] == {"chunk_index": 0, "page": 1}
    assert set(best) == {
        "chunk_id",
        "document_id",
        "document",
        "generation",
        "content",
        "score",
        "ranks",
        "metadata",
    }
    assert best["document_id"] == document_id(corpus.postgres.bucket, corpus.postgres.name)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > scores[-1]


def test_k_limits_results(client: FlaskClient) -> None:
    status, body = post(client, {"query": "PostgreSQL", "k": 2})
    assert status == 200
    assert len(body["results"]) == 2


def test_default_k_comes_from_settings(make_settings: Any, pool: ConnectionPool) -> None:
    app = create_app(make_settings(default_k=3), pool=pool, provider=HashEmbedder(DIM))
    status, body = post(app.test_client(), {"query": "notes"})
    assert status == 200
    assert len(body["results"]) == 3


def test_only_active_generations_are_served(client: FlaskClient, corpus: Any) -> None:
    # The query is word for word the text of a superseded chunk and of a chunk
    # whose document has no servable generation yet.
    status, body = post(client, {"query": "zebra migration patterns", "k": 100})
    assert status == 200
    returned = {r["chunk_id"] for r in body["results"]}
    assert returned == corpus.active_chunk_ids()
    assert not returned & corpus.postgres.chunk_ids(1)
    assert not returned & corpus.pending.chunk_ids(1)


def test_bucket_filter(client: FlaskClient, corpus: Any) -> None:
    status, body = post(client, {"query": "PostgreSQL", "filter": {"bucket": "archive"}})
    assert status == 200
    assert documents(body["results"]) == {corpus.cooking.uri}


def test_content_type_filter(client: FlaskClient, corpus: Any) -> None:
    body = {"query": "PostgreSQL", "filter": {"content_type": "text/markdown"}}
    status, answer = post(client, body)
    assert status == 200
    assert documents(answer["results"]) == {corpus.pubsub.uri}


def test_prefix_filter(client: FlaskClient, corpus: Any) -> None:
    status, body = post(client, {"query": "pasta", "k": 100, "filter": {"prefix": "guides/"}})
    assert status == 200
    assert documents(body["results"]) == {
        corpus.postgres.uri,
        corpus.pubsub.uri,
        corpus.cooking.uri,
    }


def test_filters_combine(client: FlaskClient, corpus: Any) -> None:
    body = {
        "query": "pasta",
        "k": 100,
        "filter": {"bucket": "docs", "prefix": "guides/", "content_type": "text/plain"},
    }
    status, answer = post(client, body)
    assert status == 200
    assert documents(answer["results"]) == {corpus.postgres.uri}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("100%_", "literal"),  # LIKE would also match 100xxdone/
        ("100%", "literal"),
        ("back\\slash", "backslash"),  # LIKE would read \s as an escaped s
        ("backslash", "no_backslash"),
    ],
)
def test_prefix_is_literal(client: FlaskClient, corpus: Any, prefix: str, expected: str) -> None:
    body = {"query": "report notes", "k": 100, "filter": {"prefix": prefix}}
    status, answer = post(client, body)
    assert status == 200
    assert documents(answer["results"]) == {getattr(corpus, expected).uri}


def test_filter_matching_nothing_returns_empty(client: FlaskClient) -> None:
    status, body = post(client, {"query": "PostgreSQL", "filter": {"bucket": "nope"}})
    assert status == 200
    assert body == {"results": [], "index_version": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"k": 3}, "query"),
        ({"query": ""}, "query"),
        ({"query": "q", "k": 0}, "k"),
        ({"query": "q", "k": 101}, "k"),
        ({"query": "q", "k": "3"}, "k"),
        ({"query": "q", "filter": []}, "filter"),
        ({"query": "q", "filter": {"bucket": 3}}, "filter.bucket"),
        ({"query": "q", "filter": {"prefix": None, "owner": "me"}}, "filter.owner"),
        ({"query": "q", "limit": 3}, "limit"),
        (["q"], "body"),
    ],
)
def test_bad_input_is_400_naming_the_field(client: FlaskClient, body: object, field: str) -> None:
    status, answer = post(client, body)
    assert status == 400
    assert answer["error"]["field"] == field
    assert answer["error"]["message"]


@pytest.mark.parametrize("raw", [b"", b"query=vacuum", b'{"query": "q"', b"\xff\xfe"])
def test_non_json_body_is_400(client: FlaskClient, raw: bytes) -> None:
    response = client.post("/v1/query", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "body"


def test_json_without_content_type_is_accepted(client: FlaskClient) -> None:
    response = client.post("/v1/query", data=json.dumps({"query": "PostgreSQL", "k": 1}))
    assert response.status_code == 200
    assert len(response.get_json()["results"]) == 1


def test_oversized_body_is_413(client: FlaskClient) -> None:
    body = json.dumps({"query": "x" * (64 * 1024)})
    response = client.post("/v1/query", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["field"] == "body"


def test_body_at_the_limit_is_read(make_settings: Any, pool: ConnectionPool) -> None:
    body = json.dumps({"query": "PostgreSQL", "k": 1}).encode()
    settings = make_settings(max_body_bytes=len(body))
    client = create_app(settings, pool=pool, provider=HashEmbedder(DIM)).test_client()
    response = client.post("/v1/query", data=body, content_type="application/json")
    assert response.status_code == 200
    response = client.post("/v1/query", data=body + b" ", content_type="application/json")
    assert response.status_code == 413


@pytest.mark.parametrize("extra", [0, 1, 10_000])
def test_chunked_body_is_limited_too(make_settings: Any, pool: ConnectionPool, extra: int) -> None:
    body = json.dumps({"query": "PostgreSQL", "k": 1}).encode()
    settings = make_settings(max_body_bytes=len(body))
    client = create_app(settings, pool=pool, provider=HashEmbedder(DIM)).test_client()
    # No Content-Length: the body ends where the stream does, as with chunked encoding.
    response = client.post(
        "/v1/query",
        input_stream=io.BytesIO(body + b" " * extra),
        content_type="application/json",
    )
    assert response.status_code == (200 if extra == 0 else 413)


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_503_without_database(make_settings: Any) -> None:
    closed = ConnectionPool("postgresql://127.0.0.1:1/none", open=False)
    app = create_app(make_settings(), pool=closed, provider=HashEmbedder(DIM))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["reason"]


def test_unknown_route_and_method_answer_json(client: FlaskClient) -> None:
    response = client.get("/v1/query")
    assert response.status_code == 405
    assert response.get_json()["error"]["message"]
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.get_json()["error"]["message"]


class FailingProvider:
    name = "failing"
    dim = DIM

    def __init__(self, error: Exception) -> None:
        self.error = error

    def embed(self, texts: Sequence[str], task: Task) -> Vectors:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RetryableError("quota exceeded"), 503),
        (PermanentError("text too long for the model"), 502),
        (RuntimeError("boom"), 500),
    ],
)
def test_provider_errors_map_to_status(
    make_settings: Any, pool: ConnectionPool, error: Exception, status: int
) -> None:
    app = create_app(make_settings(), pool=pool, provider=FailingProvider(error))
    response = app.test_client().post("/v1/query", json={"query": "q"})
    assert response.status_code == status
    assert response.get_json()["error"]["message"]
    if status == 502:
        assert "text too long for the model" in response.get_json()["error"]["message"]
    if status == 500:
        assert "boom" not in response.get_data(as_text=True)


def test_query_is_logged_once_with_count_and_duration(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ragrun_query"):
        status, _ = post(client, {"query": "PostgreSQL", "k": 2, "filter": {"bucket": "docs"}})
    assert status == 200
    records = [r for r in caplog.records if r.getMessage() == "query.served"]
    assert len(records) == 1
    fields = records[0].fields  # type: ignore[attr-defined]
    assert fields["results"] == 2
    assert fields["k"] == 2
    assert fields["filters"] == ["bucket"]
    assert fields["duration_ms"] >= 0
    assert "PostgreSQL" not in json.dumps(fields)


def test_ef_search_does_not_leak_past_the_search(seeded_url: str) -> None:
    with psycopg.connect(seeded_url) as conn:
        register_vector(conn)
        vector = HashEmbedder(DIM).embed(["PostgreSQL"], Task.QUERY)[0]
        search(conn, vector, QueryRequest(query="PostgreSQL", k=1), SearchConfig(ef_search=40))
        # The first search loaded pgvector into this session, so the setting exists now.
        default = conn.execute("SHOW hnsw.ef_search").fetchone()
        config = SearchConfig(ef_search=321, max_scan_tuples=777)
        outcome = search(conn, vector, QueryRequest(query="PostgreSQL", k=3), config)
        assert len(outcome.results) == 3
        assert conn.execute("SHOW hnsw.ef_search").fetchone() == default == ("40",)
        assert conn.execute("SHOW hnsw.max_scan_tuples").fetchone() == ("20000",)
        assert conn.execute("SHOW hnsw.iterative_scan").fetchone() == ("off",)


def test_search_accepts_float64_vectors(seeded_url: str, corpus: Any) -> None:
    with psycopg.connect(seeded_url) as conn:
        register_vector(conn)
        vector = HashEmbedder(DIM).embed(["autovacuum bloat"], Task.QUERY)[0].astype(np.float64)
        request = QueryRequest(query="q", k=1, mode="vector")
        results = search(conn, vector, request, SearchConfig()).results
    assert results[0].uri == corpus.postgres.uri


def test_app_from_env(seeded_url: str, monkeypatch: pytest.MonkeyPatch, corpus: Any) -> None:
    monkeypatch.setenv("DATABASE_URL", seeded_url)
    monkeypatch.setenv("RAGRUN_EMBEDDINGS", "hash")
    monkeypatch.setenv("RAGRUN_QUERY_POOL_MAX_SIZE", "1")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        app = app_from_env()
        try:
            status, body = post(app.test_client(), {"query": "dead letter topics", "k": 1})
        finally:
            app.extensions["ragrun_query"]["pool"].close()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert status == 200
    assert body["results"][0]["document"] == corpus.pubsub.uri


def test_gunicorn_argv() -> None:
    argv = gunicorn_argv(QuerySettings.model_validate({"host": "::", "port": 9000}))
    assert argv[1:3] == ["-m", "gunicorn"]
    assert argv[argv.index("--bind") + 1] == "[::]:9000"
    assert argv[argv.index("--threads") + 1] == "8"
    assert argv[-1] == "ragrun_query.main:app_from_env()"


def test_index_detection_and_scann_settings(seeded_url: str) -> None:
    """PostgreSQL has no ScaNN: HNSW is found; the ScaNN knob is still settable (AlloyDB)."""
    with psycopg.connect(seeded_url) as conn:
        register_vector(conn)
        assert detect_index(conn) == "hnsw"
        vector = HashEmbedder(DIM).embed(["pasta"], Task.QUERY)[0]
        config = SearchConfig(index="scann", num_leaves_to_search=7)
        request = QueryRequest(query="pasta", k=2, ef_search=9)
        assert len(search(conn, vector, request, config).results) == 2
