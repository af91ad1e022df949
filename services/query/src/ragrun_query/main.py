"""The HTTP adapter: Flask routes over the search core, and the gunicorn entry points.

Run with ``gunicorn 'ragrun_query.main:app_from_env()'`` or ``python -m ragrun_query``.
Every error leaves as JSON: ``{"error": {"message": ..., "field"?: ..., "request_id": ...}}``,
and every response carries ``X-Request-Id`` (the caller's, when it sent a sane one).
"""

from __future__ import annotations

import atexit
import hmac
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from flask import Flask, Response, g, has_request_context, request, stream_with_context
from flask.typing import ResponseReturnValue
from opentelemetry import trace
from psycopg_pool import ConnectionPool
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ragrun_common.contracts import document_id
from ragrun_common.db import make_pool, migrate_url
from ragrun_common.embeddings.base import EmbeddingProvider, Task
from ragrun_common.embeddings.registry import create_provider
from ragrun_common.embeddings.spec import EmbeddingSpec, parse_embedding_spec
from ragrun_common.errors import PermanentError, RetryableError
from ragrun_common.logs import configure_logging
from ragrun_common.telemetry import TelemetrySettings, TracedProvider, configure_telemetry, tracer
from ragrun_common.versions import PIPELINE_VERSION, IndexVersion, active_version
from ragrun_query.answer import (
    NO_SOURCES_ANSWER,
    SYSTEM_INSTRUCTION,
    AnswerModel,
    AnswerRequest,
    GeminiAnswerModel,
    build_prompt,
    citations,
)
from ragrun_query.errors import (
    AnswerRejectedError,
    AnswerUnavailableError,
    NotConfiguredError,
    RequestError,
)
from ragrun_query.openapi import openapi_document
from ragrun_query.rerank import Reranker, create_reranker, rerank
from ragrun_query.search import (
    QueryRequest,
    Result,
    SearchConfig,
    decode_body,
    detect_index,
    search,
)
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

#: Routes anyone may call, with or without an API key.
OPEN_ENDPOINTS = frozenset({"healthz", "readyz", "openapi"})
_REQUEST_ID = re.compile(r"^[!-~]{1,128}$")  # visible ASCII: safe to echo in a header
_DOCUMENT_ID = re.compile(r"^[0-9a-f]{32}$")
_CORS_METHODS = "GET, POST, OPTIONS"
_CORS_HEADERS = "Authorization, Content-Type, X-API-Key, X-Request-Id"
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _error(message: str, *, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if field is not None:
        body["field"] = field
    if has_request_context() and "request_id" in g:
        body["request_id"] = g.request_id
    return {"error": body}


def _extra(**fields: Any) -> dict[str, Any]:
    """Log ``extra`` with the request id, and the trace the platform sent unless this
    process records a sampled span of its own (the log filter then names that)."""
    extra: dict[str, Any] = {"fields": fields}
    if has_request_context() and "request_id" in g:
        extra["labels"] = {"request_id": g.request_id}
        span = trace.get_current_span().get_span_context()
        if span.is_valid and span.trace_flags.sampled:
            return extra  # the log filter names the span, which is exported
        if g.get("trace"):
            extra["trace"] = g.trace
        if g.get("span_id"):
            extra["spanId"] = g.span_id
    return extra


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 1)


@dataclass(slots=True)
class _Retrieval:
    results: list[Result]
    embed_ms: float
    search_ms: float
    exact_fallback: bool
    reranked: bool
    version: int


# How long the active index version is trusted before it is read again.
ACTIVE_VERSION_TTL_S = 1.0


@dataclass(frozen=True, slots=True)
class _Active:
    """The index version to search, its search settings and its query embedder."""

    version: int
    config: SearchConfig
    provider: EmbeddingProvider
    expires: float


class _Index:
    """Which index version is active, re-read at most every ``ACTIVE_VERSION_TTL_S``.

    Questions are embedded with the model of the active version's vectors, through a
    provider built once per model: a side version's recorded spec, version 1's
    recorded model, or the service's own provider (``RAGRUN_EMBEDDINGS``) while
    version 1 has none recorded.
    """

    def __init__(self, settings: QuerySettings, pool: ConnectionPool, provider: EmbeddingProvider):
        self._settings = settings
        self._pool = pool
        self._provider = provider
        self._base: SearchConfig | None = None
        self._active: _Active | None = None
        self._providers: dict[tuple[str, int], EmbeddingProvider] = {}
        self._lock = threading.Lock()

    def current(self) -> _Active:
        with self._lock:
            active = self._active
            if active is None or time.monotonic() >= active.expires:
                active = self._active = self._load()
            return active

    def forget(self) -> None:
        with self._lock:
            self._active = None

    def _load(self) -> _Active:
        with self._pool.connection() as conn:
            if self._base is None:
                self._base = self._settings.search_config(detect_index(conn))
            try:
                version = active_version(conn)
            except psycopg.errors.UndefinedTable:
                # A replica whose primary has not applied the versions migration yet.
                conn.rollback()
                version = None
        expires = time.monotonic() + ACTIVE_VERSION_TTL_S
        spec = _spec(version) if version is not None else None
        if version is None or spec is None:
            return _Active(1, self._base, self._provider, expires)
        provider = self._provider
        if (spec.name, spec.dim) != (self._provider.name, self._provider.dim):
            key = (spec.name, spec.dim)
            if key not in self._providers:
                self._providers[key] = TracedProvider(create_provider(self._settings, spec))
            provider = self._providers[key]
        config = self._base
        if version.version != PIPELINE_VERSION:
            config = replace(self._base, version=version.version, index="hnsw")
        return _Active(version.version, config, provider, expires)


def _spec(version: IndexVersion) -> EmbeddingSpec | None:
    """The model questions for ``version`` are embedded with; ``None``: the service's own.

    Version 1 names the model its vectors came from once the writer has recorded
    one, and questions must be embedded with that, whatever this service was set to.
    """
    if version.version != PIPELINE_VERSION:
        return version.spec()
    if version.pipeline_model in (None, "*"):
        return None
    try:
        return parse_embedding_spec(version.pipeline_model, version.dim)
    except ValueError as e:
        log.warning(
            "query.pipeline_model_unknown",
            extra=_extra(model=version.pipeline_model, error=str(e)),
        )
        return None


def create_app(
    settings: QuerySettings,
    *,
    pool: ConnectionPool | None = None,
    provider: EmbeddingProvider | None = None,
    reranker: Reranker | None = None,
    answer_model: AnswerModel | None = None,
    traced: bool = False,
) -> Flask:
    """Build the query app; create the pool, provider, reranker and answer model not passed.

    A pool created here is closed when the process exits; a pool passed in
    belongs to the caller. ``traced`` makes every request a server span (OpenTelemetry's
    Flask instrumentation, continuing the caller's ``traceparent``), with the query
    embedding, the search, reranking and the answer's generation as its children.
    """
    if provider is None:
        provider = TracedProvider(create_provider(settings))
    if pool is None:
        pool = make_pool(
            settings.database_url, max_size=settings.pool_max_size, name="ragrun-query"
        )
        atexit.register(pool.close)
    if reranker is None:
        reranker = create_reranker(settings.rerank)
    if answer_model is None and settings.answer_model:
        token = settings.vertex_access_token
        answer_model = GeminiAnswerModel(
            model=settings.answer_model,
            project=settings.project,
            location=settings.location,
            base_url=settings.vertex_base_url,
            access_token=token.get_secret_value() if token else None,
            temperature=settings.answer_temperature,
            max_output_tokens=settings.answer_max_output_tokens,
            timeout_s=settings.answer_timeout_s,
        )
    # Closures do not keep mypy's narrowing of the optional parameters.
    db = pool
    embedder = provider
    index = _Index(settings, db, embedder)
    api_keys = tuple(key.encode() for key in settings.api_key_list)
    cors_origins = settings.cors_origin_list
    if not api_keys:
        log.warning(
            "query.auth_disabled",
            extra=_extra(reason="RAGRUN_API_KEYS is not set: every caller is served"),
        )

    app = Flask(__name__)
    # An API answers 404 for a path it does not serve rather than redirecting "//" to "/".
    app.url_map.merge_slashes = False
    # Werkzeug answers 413 when Content-Length exceeds this, but a chunked body is only
    # cut off at it; reading one byte past the limit lets the route tell the two apart.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.extensions["ragrun_query"] = {
        "settings": settings,
        "pool": db,
        "provider": embedder,
        "reranker": reranker,
        "answer_model": answer_model,
    }
    document = openapi_document(settings)
    if traced:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor.instrument_app(app, excluded_urls="healthz,readyz")  # type: ignore[no-untyped-call]

    # -- request plumbing ------------------------------------------------------

    @app.before_request
    def start_request() -> ResponseReturnValue | None:
        g.started = time.perf_counter()
        supplied = request.headers.get("X-Request-Id", "")
        g.request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        g.trace, g.span_id = _trace(request.headers, settings.project)
        if _is_preflight() and _allowed_origin(cors_origins) is not None:
            return Response(status=204)
        if api_keys and request.endpoint not in OPEN_ENDPOINTS and not _authorized(api_keys):
            log.warning("query.unauthorized", extra=_extra(path=request.path))
            body = _error("a valid API key is required: Authorization: Bearer KEY or X-API-Key")
            return body, 401, {"WWW-Authenticate": 'Bearer realm="ragrun"'}
        return None

    @app.after_request
    def finish_request(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if cors_origins:
            # The answer depends on the Origin header whether or not it is allowed, so
            # a cache must not give one origin's response to another.
            response.vary.add("Origin")
        origin = _allowed_origin(cors_origins)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "X-Request-Id"
            if _is_preflight():
                response.headers["Access-Control-Allow-Methods"] = _CORS_METHODS
                response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
                response.headers["Access-Control-Max-Age"] = "600"
        return response

    def read_json() -> object:
        raw = request.get_data(cache=False)
        if len(raw) > settings.max_body_bytes:
            raise RequestEntityTooLarge()
        return decode_body(raw)

    def retrieve(req: QueryRequest) -> _Retrieval:
        use_reranker = reranker is not None and req.rerank is not False
        if req.rerank and reranker is None:
            raise NotConfiguredError(
                "no reranker is configured on this service (RAGRUN_QUERY_RERANK=none)"
            )
        limit = max(settings.rerank_candidates, req.k) if use_reranker else req.k
        for attempt in (1, 2):
            active = index.current()
            started = time.perf_counter()
            vector = None
            if req.mode != "keyword":
                vector = active.provider.embed([req.query], Task.QUERY)[0]
            embedded = time.perf_counter()
            try:
                with tracer.start_as_current_span(
                    "search",
                    kind=trace.SpanKind.CLIENT,
                    attributes={
                        "db.system.name": "postgresql",
                        "ragrun.mode": req.mode,
                        "ragrun.k": req.k,
                        "ragrun.filters": req.filter_fields,
                        "ragrun.index_version": active.version,
                    },
                ) as span:
                    with db.connection() as conn:
                        outcome = search(conn, vector, req, active.config, limit=limit)
                    span.set_attribute("ragrun.results", len(outcome.results))
                    span.set_attribute("ragrun.exact_fallback", outcome.exact_fallback)
                break
            except psycopg.errors.UndefinedTable:
                # The version was dropped after another was activated: read which is active.
                index.forget()
                if attempt == 2:
                    raise
        searched = time.perf_counter()
        results = outcome.results
        if use_reranker and reranker is not None:
            with tracer.start_as_current_span("rerank", attributes={"ragrun.texts": len(results)}):
                results = rerank(reranker, req.query, results, req.k)
        return _Retrieval(
            results=results,
            embed_ms=_ms(started, embedded),
            search_ms=_ms(embedded, searched),
            exact_fallback=outcome.exact_fallback,
            reranked=use_reranker,
            version=active.version,
        )

    def served(event: str, req: QueryRequest, found: _Retrieval, **more: Any) -> None:
        log.info(
            event,
            extra=_extra(
                results=len(found.results),
                k=req.k,
                mode=req.mode,
                filters=req.filter_fields,
                exact_fallback=found.exact_fallback,
                reranked=found.reranked,
                index_version=found.version,
                embed_ms=found.embed_ms,
                search_ms=found.search_ms,
                duration_ms=_ms(g.started, time.perf_counter()),
                **more,
            ),
        )

    # -- routes ------------------------------------------------------------------

    @app.post("/v1/query")
    def query() -> ResponseReturnValue:
        req = QueryRequest.from_json(
            read_json(), default_k=settings.default_k, max_k=settings.max_k
        )
        found = retrieve(req)
        served("query.served", req, found)
        return {
            "results": [result.to_json() for result in found.results],
            "index_version": found.version,
        }

    @app.post("/v1/answer")
    def answer() -> ResponseReturnValue:
        offered = ["application/json", "text/event-stream"]
        wants_events = request.accept_mimetypes.best_match(offered) == "text/event-stream"
        req = AnswerRequest.from_json(
            read_json(),
            default_k=settings.answer_k,
            max_k=settings.max_k,
            stream_default=wants_events,
        )
        if answer_model is None:
            raise NotConfiguredError(
                "no answer model is configured on this service: set RAGRUN_ANSWER_MODEL "
                "(e.g. gemini-2.5-flash) to enable /v1/answer"
            )
        model = answer_model
        found = retrieve(req.search)
        sources = found.results
        source_json = [source.to_json() for source in sources]
        prompt = build_prompt(req.search.query, sources)
        if not req.stream:
            with tracer.start_as_current_span(
                "answer generation",
                kind=trace.SpanKind.CLIENT,
                attributes={"ragrun.model": model.name, "ragrun.sources": len(sources)},
            ):
                text = model.generate(SYSTEM_INSTRUCTION, prompt) if sources else NO_SOURCES_ANSWER
            cited = citations(text, sources)
            served("answer.served", req.search, found, citations=len(cited), stream=False)
            return {
                "answer": text,
                "citations": cited,
                "sources": source_json,
                "model": model.name,
            }
        # The stream outlives the request's span, so its span is ended by the stream.
        generation = tracer.start_span(
            "answer generation",
            kind=trace.SpanKind.CLIENT,
            attributes={"ragrun.model": model.name, "ragrun.sources": len(sources)},
        )
        try:
            with trace.use_span(generation, end_on_exit=False):
                # Ask for the first piece before answering 200, so that a model that is
                # down or refuses gets a proper status instead of an error event.
                pieces = (
                    model.stream(SYSTEM_INSTRUCTION, prompt)
                    if sources
                    else iter([NO_SOURCES_ANSWER])
                )
                first = next(pieces, "")
            if not first:  # the stream gives no empty pieces: it ended without text
                raise AnswerRejectedError("the model gave no answer")
        except BaseException:
            generation.end()
            raise

        def events() -> Iterator[str]:
            with trace.use_span(generation, end_on_exit=True):
                yield _sse("sources", {"sources": source_json})
                parts = [first]
                if first:
                    yield _sse("delta", {"text": first})
                try:
                    for piece in pieces:
                        parts.append(piece)
                        yield _sse("delta", {"text": piece})
                except (RetryableError, PermanentError) as e:
                    log.warning("answer.stream_failed", extra=_extra(reason=str(e)))
                    yield _sse("error", _error(f"the answer stopped: {e}"))
                    return
                text = "".join(parts)
                cited = citations(text, sources)
                served("answer.served", req.search, found, citations=len(cited), stream=True)
                yield _sse("done", {"answer": text, "citations": cited, "model": model.name})

        return Response(
            stream_with_context(events()), mimetype="text/event-stream", headers=_SSE_HEADERS
        )

    @app.get("/v1/documents/<doc_id>")
    def get_document(doc_id: str) -> ResponseReturnValue:
        if not _DOCUMENT_ID.match(doc_id):
            raise RequestError("document_id", "must be 32 lowercase hex characters")
        return _document(db, doc_id)

    @app.get("/v1/documents")
    def find_document() -> ResponseReturnValue:
        uri = request.args.get("uri")
        if uri is None:
            raise RequestError("uri", "required: ?uri=gs://BUCKET/NAME")
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        if not uri.startswith("gs://") or not bucket or not name or "\0" in uri:
            raise RequestError("uri", "must look like gs://BUCKET/NAME")
        return _document(db, document_id(bucket, name))

    @app.get("/openapi.json")
    def openapi() -> ResponseReturnValue:
        return document

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> ResponseReturnValue:
        try:
            with db.connection(timeout=READY_TIMEOUT_S) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as e:  # includes the pool's PoolTimeout and PoolClosed
            log.warning("query.not_ready", extra=_extra(reason=str(e)))
            return {"status": "unavailable", "reason": str(e)}, 503
        return {"status": "ok"}

    # -- errors ------------------------------------------------------------------

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

    @app.errorhandler(NotConfiguredError)
    def not_configured(e: NotConfiguredError) -> ResponseReturnValue:
        return _error(str(e)), 501

    @app.errorhandler(AnswerUnavailableError)
    def answer_unavailable(e: AnswerUnavailableError) -> ResponseReturnValue:
        log.warning("answer.model_unavailable", extra=_extra(reason=str(e)))
        return _error("the answer model is unavailable; retry later"), 503

    @app.errorhandler(AnswerRejectedError)
    def answer_rejected(e: AnswerRejectedError) -> ResponseReturnValue:
        log.error("answer.model_rejected", extra=_extra(reason=str(e)))
        return _error(f"the answer model gave no usable answer: {e}"), 502

    @app.errorhandler(RetryableError)
    def provider_unavailable(e: RetryableError) -> ResponseReturnValue:
        log.warning("query.embedding_unavailable", extra=_extra(reason=str(e)))
        return _error("the embedding provider is unavailable; retry later"), 503

    @app.errorhandler(PermanentError)
    def provider_rejected(e: PermanentError) -> ResponseReturnValue:
        log.error("query.embedding_rejected", extra=_extra(reason=str(e)))
        return _error(f"the embedding provider rejected the query: {e}"), 502

    @app.errorhandler(psycopg.errors.QueryCanceled)
    def too_slow(e: psycopg.errors.QueryCanceled) -> ResponseReturnValue:
        log.warning("query.timeout", extra=_extra(reason=str(e)))
        limit = settings.statement_timeout_ms
        return _error(f"the search took longer than {limit} ms; narrow it or retry"), 504

    @app.errorhandler(psycopg.OperationalError)
    def database_unavailable(e: psycopg.OperationalError) -> ResponseReturnValue:
        log.warning("query.database_unavailable", extra=_extra(reason=str(e)))
        return _error("the database is unavailable; retry later"), 503

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> ResponseReturnValue:  # noqa: ARG001
        log.exception("query.failed", extra=_extra())
        return _error("internal error"), 500

    return app


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _is_preflight() -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def _allowed_origin(allowed: tuple[str, ...]) -> str | None:
    """The value for Access-Control-Allow-Origin, or None when CORS does not apply."""
    origin = request.headers.get("Origin")
    if not allowed or origin is None:
        return None
    if "*" in allowed:
        return "*"
    return origin if origin.rstrip("/") in allowed else None


def _authorized(keys: tuple[bytes, ...]) -> bool:
    """Whether the request carries one of ``keys``, compared in constant time."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    supplied = token.strip() if scheme.lower() == "bearer" else ""
    supplied = supplied or request.headers.get("X-API-Key", "").strip()
    if not supplied:
        return False
    candidate = supplied.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:  # no early exit: the time does not tell which key matched
        matched |= hmac.compare_digest(candidate, key)
    return matched


def _trace(headers: Any, project: str) -> tuple[str | None, str | None]:
    """Cloud Logging's trace and span ids from X-Cloud-Trace-Context or traceparent."""
    cloud = headers.get("X-Cloud-Trace-Context", "")
    match = re.match(r"^([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?", cloud)
    if match:
        return f"projects/{project}/traces/{match[1].lower()}", match[2]
    parent = headers.get("traceparent", "")
    match = re.match(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$", parent)
    if match:
        return f"projects/{project}/traces/{match[1]}", match[2]
    return None, None


_DOCUMENT_SQL = """
SELECT d.document_id, d.bucket, d.name, d.generation, d.active_generation, d.state,
       d.content_type, d.size_bytes, d.metadata, d.chunks_expected, d.chunks_written,
       d.error, d.created_at, d.updated_at,
       (SELECT count(*) FROM ragrun.chunks c
         WHERE c.document_id = d.document_id AND c.generation = d.active_generation)
FROM ragrun.documents d WHERE d.document_id = %s
"""


def _document(pool: ConnectionPool, doc_id: str) -> ResponseReturnValue:
    with pool.connection() as conn:
        row = conn.execute(_DOCUMENT_SQL, (doc_id,)).fetchone()
    if row is None:
        return _error(f"no document {doc_id}"), 404
    return {
        "document_id": row[0],
        "uri": f"gs://{row[1]}/{row[2]}",
        "bucket": row[1],
        "name": row[2],
        "generation": row[3],
        "active_generation": row[4],
        "state": row[5],
        "content_type": row[6],
        "size_bytes": row[7],
        "metadata": row[8],
        "chunks": {"expected": row[9], "written": row[10], "served": row[14]},
        "error": row[11],
        "created_at": row[12].isoformat() if row[12] else None,
        "updated_at": row[13].isoformat() if row[13] else None,
    }


def app_from_env() -> Flask:
    """The gunicorn entry point: settings from the environment, schema migrated first.

    On a read replica (``RAGRUN_QUERY_MIGRATE=false``) the writer applies the
    migrations, on the primary.
    """
    settings = QuerySettings()
    configure_logging("query", settings.log_level, project=settings.project)
    telemetry = TelemetrySettings()
    configure_telemetry("query", settings.project, telemetry)
    if settings.migrate:
        migrate_url(settings.database_url, settings.embedding.dim)
    provider = create_provider(settings)
    if settings.embedding.kind == "local":
        # Load the model before the first request rather than during it (seconds).
        started = time.perf_counter()
        provider.embed(["warm-up"], Task.QUERY)
        log.info("query.model_loaded", extra=_extra(load_ms=_ms(started, time.perf_counter())))
    return create_app(
        settings,
        provider=TracedProvider(provider),
        traced=telemetry.traces_exporter != "none",
    )


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
