"""The query service follows the active index version: its vectors and its query model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from flask.testing import FlaskClient
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from ragrun_common.batching import BatchLimits
from ragrun_common.db import make_pool, migrate
from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.hashing import HashEmbedder
from ragrun_common.embeddings.local import LocalEmbedder
from ragrun_common.embeddings.spec import parse_embedding_spec
from ragrun_common.versions import activate, build_index, create_version, drop, fill
from ragrun_query.main import create_app
from ragrun_query.settings import QuerySettings

DIM_2 = 8
TEXTS = [
    "autovacuum keeps table bloat in check on busy PostgreSQL servers",
    "Pub/Sub redelivers a message until the subscriber acknowledges it",
    "Cloud Storage sends a notification when an object is finalized",
    "the HNSW graph trades recall for speed through ef_search",
]


@pytest.fixture
def db(database_url: str) -> Iterator[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn, 384)
        register_vector(conn)
        conn.execute(
            "INSERT INTO ragrun.documents (document_id, bucket, name, generation,"
            " active_generation, state) VALUES ('d', 'docs', 'notes.txt', 1, 1, 'indexed')"
        )
        vectors = HashEmbedder(384).embed(TEXTS, Task.DOCUMENT)
        for i, (text, vector) in enumerate(zip(TEXTS, vectors, strict=True)):
            conn.execute(
                "INSERT INTO ragrun.chunks (chunk_id, document_id, generation, chunk_index,"
                " content, tokens, model, embedding) VALUES (%s, 'd', 1, %s, %s, 9, 'hash', %s)",
                (f"c{i}", i, text, vector),
            )
    yield database_url


@pytest.fixture
def pool(db: str) -> Iterator[ConnectionPool]:
    pool = make_pool(db, max_size=2, name="versions-tests")
    yield pool
    pool.close()


@pytest.fixture
def client(db: str, pool: ConnectionPool) -> FlaskClient:
    settings = QuerySettings(database_url=db, embeddings="hash", ef_search=100)  # type: ignore[call-arg]
    return create_app(settings, pool=pool, provider=HashEmbedder(384)).test_client()


def ask(client: FlaskClient, query: str) -> dict[str, Any]:
    response = client.post("/v1/query", json={"query": query, "mode": "vector", "k": 2})
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def cosine(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_activation_switches_vectors_and_query_model(
    db: str, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ragrun_query.main.ACTIVE_VERSION_TTL_S", 0.0)
    query = "table bloat and autovacuum"
    before = ask(client, query)
    assert before["index_version"] == 1

    with psycopg.connect(db, autocommit=True) as conn:
        register_vector(conn)
        version = create_version(conn, parse_embedding_spec("hash", DIM_2))
        fill(conn, version, HashEmbedder(DIM_2), BatchLimits(max_items=250, max_tokens=20_000))
        build_index(conn, version)
        assert ask(client, query)["index_version"] == 1  # built, not yet active
        activate(conn, version.version)

    after = ask(client, query)
    assert after["index_version"] == 2
    # The score is the new model's, applied to query and passage alike. Eight hashed
    # dimensions collide, so the two models score the same passage differently.
    top = TEXTS.index(after["results"][0]["content"])
    new = cosine(*HashEmbedder(DIM_2).embed([query, TEXTS[top]], Task.DOCUMENT))
    old = cosine(*HashEmbedder(384).embed([query, TEXTS[top]], Task.DOCUMENT))
    assert new != pytest.approx(old, abs=1e-3)
    assert after["results"][0]["score"] == pytest.approx(new, abs=1e-5)


def test_a_dropped_version_is_noticed_at_once(
    db: str, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the service's cache of the active version, the old one is dropped: one retry."""
    monkeypatch.setattr("ragrun_query.main.ACTIVE_VERSION_TTL_S", 3600.0)
    with psycopg.connect(db, autocommit=True) as conn:
        register_vector(conn)
        version = create_version(conn, parse_embedding_spec("hash", DIM_2))
        fill(conn, version, HashEmbedder(DIM_2), BatchLimits(max_items=250, max_tokens=20_000))
        build_index(conn, version)
        activate(conn, version.version)
        assert ask(client, "object notification")["index_version"] == 2
        activate(conn, 1)
        drop(conn, version.version)
    answer = ask(client, "object notification")
    assert answer["index_version"] == 1
    assert answer["results"][0]["content"] == TEXTS[2]


def test_version_one_is_searched_with_the_model_that_wrote_it(
    db: str, pool: ConnectionPool
) -> None:
    """A query service set to another model than the pipeline's still embeds questions
    in version 1's space: the writer recorded the model of its vectors."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE ragrun.index_versions SET pipeline_model = 'hash' WHERE version = 1")
    settings = QuerySettings(database_url=db, embeddings="local")  # type: ignore[call-arg]
    client = create_app(settings, pool=pool, provider=LocalEmbedder()).test_client()
    query = "table bloat and autovacuum"
    answer = ask(client, query)
    assert answer["index_version"] == 1
    top = TEXTS.index(answer["results"][0]["content"])
    expected = cosine(*HashEmbedder(384).embed([query, TEXTS[top]], Task.DOCUMENT))
    assert answer["results"][0]["score"] == pytest.approx(expected, abs=1e-5)
