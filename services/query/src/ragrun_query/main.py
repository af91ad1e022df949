"""The HTTP adapter: Flask routes over the search core, and the gunicorn entry points.

Run with ``gunicorn 'ragrun_query.main:app_from_env()'`` or ``python -m ragrun_query``.
Every error leaves as JSON: ``{"error": {"message": ..., "field"?: ...}}``.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from typing import Any

import psycopg
from flask import Flask, request
from flask.typing import ResponseReturnValue
from psycopg_pool import ConnectionPool
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ragrun_common.db import make_pool, migrate_url
from ragrun_common.embeddings.base import EmbeddingProvider, Task
from ragrun_common.embeddings.registry import create_provider
from ragrun_common.errors import PermanentError, RetryableError
from ragrun_common.logs import configure_logging
from ragrun_query.search import QueryRequest, RequestError, decode_body, search
from ragrun_query.settings import QuerySettings

log = logging.getLogger(__name__)

# Readiness must answer before the platform's probe gives up, so it never waits
# the pool's full timeout for a connection.
READY_TIMEOUT_S = 2.0

# One process whose threads share one pool; the embedding call and the database
# wait are I/O, so threads are enough.
GUNICORN_WORKERS = 1
GUNICORN_THREADS = 8
GUNICORN_TIMEOUT_S = 60


def _error(message: str, *, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if field is not None:
        body["field"] = field
    return {"error": body}


def create_app(
    settings: QuerySettings,
    *,
    pool: ConnectionPool | None = None,
    provider: EmbeddingProvider | None = None,
) -> Flask:
    """Build the query app; create the pool and provider the caller did not pass.

    A pool created here is closed when the process exits; a pool passed in
    belongs to the caller.
    """
    if provider is None:
        provider = create_provider(settings)
    if pool is None:
        pool = make_pool(
            settings.database_url, max_size=settings.pool_max_size, name="ragrun-query"
        )
        atexit.register(pool.close)
    # Closures do not keep mypy's narrowing of the optional parameters.
    db = pool
    embedder = provider

    app = Flask(__name__)
    # Werkzeug answers 413 when Content-Length exceeds this, but a chunked body is only
    # cut off at it; reading one byte past the limit lets the route tell the two apart.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.extensions["ragrun_query"] = {"settings": settings, "pool": db, "provider": embedder}

    @app.post("/v1/query")
    def query() -> ResponseReturnValue:
        started = time.perf_counter()
        raw = request.get_data(cache=False)
        if len(raw) > settings.max_body_bytes:
            raise RequestEntityTooLarge()
        body = decode_body(raw)
        req = QueryRequest.from_json(body, default_k=settings.default_k, max_k=settings.max_k)
        vector = embedder.embed([req.query], Task.QUERY)[0]
        embedded = time.perf_counter()
        with db.connection() as conn:
            results = search(conn, vector, req, settings.ef_search)
        done = time.perf_counter()
        log.info(
            "query.served",
            extra={
                "fields": {
                    "results": len(results),
                    "k": req.k,
                    "filters": sorted(req.filter.active()),
                    "embed_ms": round((embedded - started) * 1000, 1),
                    "search_ms": round((done - embedded) * 1000, 1),
                    "duration_ms": round((done - started) * 1000, 1),
                }
            },
        )
        return {"results": [result.to_json() for result in results]}

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> ResponseReturnValue:
        try:
            with db.connection(timeout=READY_TIMEOUT_S) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as e:  # includes the pool's PoolTimeout and PoolClosed
            log.warning("query.not_ready", extra={"fields": {"reason": str(e)}})
            return {"status": "unavailable", "reason": str(e)}, 503
        return {"status": "ok"}

    @app.errorhandler(RequestError)
    def bad_request(e: RequestError) -> ResponseReturnValue:
        return _error(e.message, field=e.field), 400

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(e: RequestEntityTooLarge) -> ResponseReturnValue:  # noqa: ARG001
        message = f"the body must be at most {settings.max_body_bytes} bytes"
        return _error(message, field="body"), 413

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> ResponseReturnValue:
        return _error(e.description or e.name), e.code or 500

    @app.errorhandler(RetryableError)
    def provider_unavailable(e: RetryableError) -> ResponseReturnValue:
        log.warning("query.embedding_unavailable", extra={"fields": {"reason": str(e)}})
        return _error("the embedding provider is unavailable; retry later"), 503

    @app.errorhandler(PermanentError)
    def provider_rejected(e: PermanentError) -> ResponseReturnValue:
        log.error("query.embedding_rejected", extra={"fields": {"reason": str(e)}})
        return _error(f"the embedding provider rejected the query: {e}"), 502

    @app.errorhandler(psycopg.OperationalError)
    def database_unavailable(e: psycopg.OperationalError) -> ResponseReturnValue:
        log.warning("query.database_unavailable", extra={"fields": {"reason": str(e)}})
        return _error("the database is unavailable; retry later"), 503

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> ResponseReturnValue:  # noqa: ARG001
        log.exception("query.failed")
        return _error("internal error"), 500

    return app


def app_from_env() -> Flask:
    """The gunicorn entry point: settings from the environment, schema migrated first."""
    settings = QuerySettings()
    configure_logging("query", settings.log_level)
    migrate_url(settings.database_url, settings.embedding.dim)
    return create_app(settings)


def gunicorn_argv(settings: QuerySettings) -> list[str]:
    """The command line that serves :func:`app_from_env` with this interpreter's gunicorn."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{host}:{settings.port}",
        "--worker-class",
        "gthread",
        "--workers",
        str(GUNICORN_WORKERS),
        "--threads",
        str(GUNICORN_THREADS),
        "--timeout",
        str(GUNICORN_TIMEOUT_S),
        "ragrun_query.main:app_from_env()",
    ]


def main() -> None:
    """``python -m ragrun_query``: replace this process with gunicorn."""
    argv = gunicorn_argv(QuerySettings())
    os.execv(argv[0], argv)
