"""Fixtures: a throwaway PostgreSQL database with a small, known corpus.

The server is the session's embedded PostgreSQL (root conftest ``postgres_server``);
if it cannot start, the database tests fail. One database serves the whole
session: the tests only read.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ragrun_cli.components import Postgres
from ragrun_common.contracts import chunk_id, document_id
from ragrun_common.db import make_pool, migrate
from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.hashing import HashEmbedder
from ragrun_query.main import create_app
from ragrun_query.settings import QuerySettings

DIM = 384


@dataclass(frozen=True)
class Doc:
    bucket: str
    name: str
    content_type: str
    active_generation: int | None
    # generation -> chunk texts
    chunks: dict[int, list[str]]
    # GCS custom metadata, and when the document row was created
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: str = "2025-01-01T00:00:00+00:00"

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    def chunk_ids(self, generation: int) -> set[str]:
        texts = self.chunks[generation]
        return {chunk_id(self.bucket, self.name, generation, i) for i in range(len(texts))}


POSTGRES = Doc(
    "docs",
    "guides/postgres.txt",
    "text/plain",
    2,
    {
        1: ["obsolete draft about zebra migration patterns"],
        2: [
            "PostgreSQL vacuum and autovacuum tuning reduce table bloat",
            "Indexes in PostgreSQL speed up lookups",
        ],
    },
    metadata={"team": "db", "priority": "5", "lang": "en"},
    created_at="2024-03-01T10:00:00+00:00",
)
PUBSUB = Doc(
    "docs",
    "guides/pubsub.md",
    "text/markdown",
    5,
    {5: ["Pub/Sub dead letter topics collect undeliverable messages"]},
    metadata={"team": "infra", "priority": "10", "lang": "en"},
    created_at="2024-06-15T08:30:00+00:00",
)
COOKING = Doc(
    "archive",
    "guides/cooking.txt",
    "text/plain",
    1,
    {1: ["pasta with tomato basil sauce"]},
    # An em space before the digit: not a plain number, and no error either.
    metadata={"team": "food", "priority": "high", "lang": "it", "rating": "\u20034"},
    created_at="2023-11-20T12:00:00+00:00",
)
LITERAL = Doc("docs", "100%_done/report.txt", "text/plain", 1, {1: ["quarterly report finished"]})
WILDCARD = Doc("docs", "100xxdone/report.txt", "text/plain", 1, {1: ["quarterly report drafted"]})
BACKSLASH = Doc("docs", "back\\slash/notes.txt", "text/plain", 1, {1: ["meeting notes monday"]})
NO_BACKSLASH = Doc("docs", "backslash/notes.txt", "text/plain", 1, {1: ["meeting notes tuesday"]})
# Still being embedded: no generation is servable yet.
PENDING = Doc("docs", "pending/new.txt", "text/plain", None, {1: ["zebra migration patterns"]})

CORPUS = [POSTGRES, PUBSUB, COOKING, LITERAL, WILDCARD, BACKSLASH, NO_BACKSLASH, PENDING]


@dataclass(frozen=True)
class Corpus:
    """What the test database holds, for assertions (test modules cannot import conftest)."""

    postgres: Doc = POSTGRES
    pubsub: Doc = PUBSUB
    cooking: Doc = COOKING
    literal: Doc = LITERAL
    wildcard: Doc = WILDCARD
    backslash: Doc = BACKSLASH
    no_backslash: Doc = NO_BACKSLASH
    pending: Doc = PENDING

    def active_chunk_ids(self) -> set[str]:
        return {
            cid
            for doc in CORPUS
            if doc.active_generation is not None
            for cid in doc.chunk_ids(doc.active_generation)
        }


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return Corpus()


@pytest.fixture(scope="session")
def pg_server_url(postgres_server: Postgres) -> str:
    """The session's PostgreSQL + pgvector server (any database on it)."""
    return postgres_server.admin_url()


@pytest.fixture(scope="session")
def query_database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database on the test server, dropped at the end of the session."""
    server_url = pg_server_url
    name = f"query_test_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _seed(conn: psycopg.Connection[object]) -> None:
    embedder = HashEmbedder(DIM)
    with conn.transaction():
        for doc in CORPUS:
            doc_id = document_id(doc.bucket, doc.name)
            total = sum(len(texts) for texts in doc.chunks.values())
            conn.execute(
                "INSERT INTO ragrun.documents (document_id, bucket, name, generation,"
                " active_generation, content_type, state, chunks_expected, chunks_written,"
                " metadata, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    doc_id,
                    doc.bucket,
                    doc.name,
                    max(doc.chunks),
                    doc.active_generation,
                    doc.content_type,
                    "indexed" if doc.active_generation is not None else "embedding",
                    total,
                    total,
                    Jsonb(doc.metadata),
                    doc.created_at,
                    doc.created_at,
                ),
            )
            for generation, texts in doc.chunks.items():
                vectors = embedder.embed(texts, Task.DOCUMENT)
                for index, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
                    conn.execute(
                        "INSERT INTO ragrun.chunks (chunk_id, document_id, generation,"
                        " chunk_index, content, tokens, metadata, model, embedding)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (
                            chunk_id(doc.bucket, doc.name, generation, index),
                            doc_id,
                            generation,
                            index,
                            text,
                            len(text.split()),
                            Jsonb({"chunk_index": index, "page": index + 1}),
                            "hash",
                            vector,
                        ),
                    )


@pytest.fixture(scope="session")
def seeded_url(query_database_url: str) -> str:
    """The test database, migrated for 384 dimensions and holding :data:`CORPUS`."""
    with psycopg.connect(query_database_url, autocommit=True) as conn:
        migrate(conn, DIM)
        register_vector(conn)
        _seed(conn)
    return query_database_url


@pytest.fixture(scope="session")
def pool(seeded_url: str) -> Iterator[ConnectionPool]:
    pool = make_pool(seeded_url, max_size=2, name="query-tests")
    try:
        yield pool
    finally:
        pool.close()


SettingsFactory = Callable[..., QuerySettings]


@pytest.fixture
def make_settings(seeded_url: str) -> SettingsFactory:
    """Settings for the test database with the documented defaults, plus ``overrides``."""

    def make(**overrides: object) -> QuerySettings:
        values: dict[str, Any] = {
            "database_url": seeded_url,
            "embeddings": "hash",
            "default_k": 10,
            "max_k": 100,
            "ef_search": 100,
            "max_body_bytes": 64 * 1024,
        }
        values.update(overrides)
        return QuerySettings(**values)

    return make


@pytest.fixture
def app(make_settings: SettingsFactory, pool: ConnectionPool) -> Flask:
    return create_app(make_settings(), pool=pool, provider=HashEmbedder(DIM))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
