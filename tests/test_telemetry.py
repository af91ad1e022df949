"""One document, one trace: chunker -> embedder -> writer through the real emulator.

The three stages run in this process as the plain classes their entry points
build (``Chunker``, ``Embedder``, ``Writer``), against the Pub/Sub emulator,
fake-gcs-server (which publishes the real GCS notification), PostgreSQL with
pgvector and a local server speaking Vertex AI's REST API. Messages are pulled
with real subscriber clients: the GCS notification with a synchronous pull (as
the push subscription would hand it over), the chunks and vectors with the
same streaming-pull worker the services run. Spans go to an in-memory exporter,
metrics to an in-memory reader, log lines through the Cloud Logging formatter.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import json
import logging
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from google.cloud import pubsub_v1
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from ragrun_chunker.events import PUBSUB_PUBLISHED, decode_event
from ragrun_chunker.main import Chunker
from ragrun_chunker.settings import ChunkerSettings
from ragrun_cli.components import FakeGcs, PubSubEmulator
from ragrun_cli.provision import Policies, provision
from ragrun_common import telemetry
from ragrun_common.contracts import chunk_id, document_id
from ragrun_common.db import make_pool, migrate_url
from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.hashing import HashEmbedder
from ragrun_common.embeddings.vertex import VertexEmbedder
from ragrun_common.errors import RetryableError
from ragrun_common.gcs import storage_client
from ragrun_common.logs import CloudLoggingFormatter, TraceContextFilter
from ragrun_common.pubsub import BatchingSubscriber, make_publisher
from ragrun_common.settings import CommonSettings
from ragrun_common.testing.gemini_stub import GeminiStub
from ragrun_common.testing.vertex_stub import VertexStub
from ragrun_embedder.main import Embedder
from ragrun_embedder.settings import EmbedderSettings
from ragrun_query.main import create_app
from ragrun_query.settings import QuerySettings
from ragrun_writer.main import Writer

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "architecture.md"
PROJECT = "ragrun-telemetry"
BUCKET = "telemetry-docs"
MODEL = "text-embedding-005"
DIM = 768


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def metric(self, name: str, **attributes: str) -> float:
        """Sum (or histogram count) of ``name`` over the points matching ``attributes``."""
        data = self.metrics.get_metrics_data()
        total = 0.0
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        point_attrs = dict(point.attributes or {})
                        if all(point_attrs.get(k) == v for k, v in attributes.items()):
                            total += getattr(point, "value", None) or getattr(point, "count", 0)
        return total


_installed: Telemetry | None = None


@pytest.fixture
def otel() -> Telemetry:
    """The process's tracer and meter providers, with in-memory exporters.

    OpenTelemetry takes a global provider once per process: installed by the
    first test that asks, emptied of spans for each test after it.
    """
    global _installed
    if _installed is None:
        spans = InMemorySpanExporter()
        metrics = InMemoryMetricReader()
        provider = telemetry.install(
            "test", span_processor=SimpleSpanProcessor(spans), metric_reader=metrics
        )
        assert trace.get_tracer_provider() is provider, "another tracer provider was set first"
        _installed = Telemetry(spans, metrics)
    _installed.spans.clear()
    return _installed


@pytest.fixture
def vertex() -> Iterator[VertexStub]:
    with VertexStub() as stub:
        yield stub


def _embedder_provider(stub: VertexStub) -> telemetry.TracedProvider:
    # As the embedder's main builds it: the HTTP provider, traced.
    return telemetry.TracedProvider(
        VertexEmbedder(
            model=MODEL,
            dim=DIM,
            project=PROJECT,
            location="us-central1",
            base_url=stub.base_url,
            access_token="test",
        )
    )


# --- the pipeline --------------------------------------------------------------


@pytest.fixture
def emulators(pubsub_emulator_available: None) -> Iterator[dict[str, str]]:
    """The Pub/Sub emulator and fake-gcs-server, with the environment pointing at them."""
    home = Path(tempfile.mkdtemp(prefix="ragrun-telemetry-"))
    pubsub = PubSubEmulator(home)
    gcs: FakeGcs | None = None
    try:
        pubsub.start()
        objects_topic = CommonSettings().objects_topic
        gcs = FakeGcs(home, PROJECT, objects_topic, pubsub.host)
        gcs.start()
        env = {
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "RAGRUN_BUCKET": BUCKET,
            "PUBSUB_EMULATOR_HOST": pubsub.host,
            "STORAGE_EMULATOR_HOST": gcs.url,
        }
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            mp.delenv("RAGRUN_TRACES_EXPORTER", raising=False)
            yield env
    finally:
        if gcs is not None:
            gcs.stop()
        pubsub.stop()
        shutil.rmtree(home, ignore_errors=True)


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _pull_one(subscription: str) -> dict[str, Any]:
    """The next message of ``subscription``, acked, as a Pub/Sub push body."""
    subscriber = pubsub_v1.SubscriberClient()
    try:
        path = subscriber.subscription_path(PROJECT, subscription)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            response = subscriber.pull(subscription=path, max_messages=1, timeout=10)
            if response.received_messages:
                received = response.received_messages[0]
                subscriber.acknowledge(subscription=path, ack_ids=[received.ack_id])
                message = received.message
                return {
                    "subscription": path,
                    "message": {
                        "data": base64.b64encode(message.data).decode(),
                        "attributes": dict(message.attributes),
                        "messageId": message.message_id,
                    },
                }
        raise AssertionError(f"no message on {subscription} within 30 s")
    finally:
        subscriber.close()


@contextlib.contextmanager
def _worker(subscription: str, handler: Any) -> Iterator[BatchingSubscriber]:
    """The services' streaming-pull worker on ``subscription``, in a thread."""
    worker = BatchingSubscriber(
        subscription_path=f"projects/{PROJECT}/subscriptions/{subscription}",
        handler=handler,
        max_messages=50,
        max_latency_s=0.05,
        weight=lambda m: int(m.attributes.get("count", "1") or 1),
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(pubsub_v1.SubscriberClient())
        except BaseException as e:  # surfaced in the test's thread below
            errors.append(e)

    thread = threading.Thread(target=run, name=f"worker-{subscription}", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=60)
        assert not thread.is_alive(), f"the {subscription} worker did not stop"
        if errors:
            raise errors[0]


def _document_state(database_url: str) -> str | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT state FROM ragrun.documents WHERE bucket = %s AND name = %s",
            (BUCKET, SAMPLE.name),
        ).fetchone()
    return None if row is None else str(row[0])


@contextlib.contextmanager
def _json_logs() -> Iterator[io.StringIO]:
    """The services' log lines as Cloud Logging JSON, with the trace filter on."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(CloudLoggingFormatter("test"))
    handler.addFilter(TraceContextFilter(PROJECT))
    logger = logging.getLogger("ragrun")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.integration
def test_one_trace_spans_chunker_embedder_and_writer(
    otel: Telemetry, emulators: dict[str, str], database_url: str, vertex: VertexStub
) -> None:
    settings = CommonSettings()
    # As `ragrun up` provisions, but with a pull subscription where the chunker is pushed to.
    provision(settings, chunker_endpoint=None, policies=Policies())
    migrate_url(database_url, DIM)
    stages = ("chunker", "embedder", "writer")
    chunks_before = {stage: otel.metric("ragrun.chunks", stage=stage) for stage in stages}
    rows_before = otel.metric("ragrun.rows.written")
    requests_before = otel.metric("ragrun.embedding.requests", outcome="ok")
    acked_before = otel.metric(
        "ragrun.messages", subscription=settings.embedder_subscription, outcome="ack"
    )

    storage = storage_client(PROJECT)
    blob = storage.bucket(BUCKET).blob(SAMPLE.name)
    blob.upload_from_filename(str(SAMPLE), content_type="text/markdown")

    publisher = make_publisher()
    pool = make_pool(database_url, max_size=2, name="test-writer")
    try:
        # Two texts per chunk batch and per embedding request: several of each.
        chunker = Chunker(ChunkerSettings(batch_max_texts=2), storage, publisher)
        embedder = Embedder(
            settings=EmbedderSettings(batch_max_texts=2, embeddings=f"vertex:{MODEL}"),
            provider=_embedder_provider(vertex),
            publisher=publisher,
            topic_path=publisher.topic_path(PROJECT, settings.vectors_topic),
        )
        writer = Writer(pool=pool)
        with (
            _json_logs() as logs,
            _worker(settings.embedder_subscription, embedder.handle),
            _worker(settings.writer_subscription, writer.handle),
        ):
            push = _pull_one(settings.chunker_subscription)
            assert push["message"]["attributes"]["eventType"] == "OBJECT_FINALIZE"
            # What on_object_event does with the pushed notification.
            event = decode_event(PUBSUB_PUBLISHED, push)
            chunker.handle(event, parent=telemetry.pushed_message_context(push))
            _wait(lambda: _document_state(database_url) == "indexed", 60, "the document indexed")
    finally:
        pool.close()
        publisher.stop()

    spans = otel.spans.get_finished_spans()
    (root,) = [
        s
        for s in spans
        if s.name == "chunker object"
        and s.attributes
        and s.attributes["ragrun.object"] == SAMPLE.name
    ]
    assert root.parent is None, "the GCS event starts the trace"
    root_attrs = dict(root.attributes or {})
    chunks = int(root_attrs["ragrun.chunks"])
    assert chunks >= 3 and int(root_attrs["ragrun.tokens"]) > chunks
    assert root_attrs["ragrun.batches"] == (chunks + 1) // 2
    assert root_attrs["ragrun.generation"] == blob.generation

    trace_id = root.context.trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in in_trace}

    def ancestors(span: ReadableSpan) -> list[ReadableSpan]:
        chain = []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            chain.append(span)
        return chain

    def named(name: str) -> list[ReadableSpan]:
        return [s for s in in_trace if s.name == name]

    def total(found: list[ReadableSpan], key: str) -> int:
        return sum(int((s.attributes or {}).get(key, 0)) for s in found)

    embedder_batches = named(f"{settings.embedder_subscription} process")
    requests = named("embedding request")
    writer_batches = named(f"{settings.writer_subscription} process")
    copies = named("writer copy")
    assert embedder_batches and requests and writer_batches and copies, sorted(
        {s.name for s in in_trace}
    )
    # chunker -> (publish) -> embedder batch -> embedding requests
    for batch in embedder_batches:
        assert root in ancestors(batch), "the embedder's batch is not under the chunker's span"
    assert total(embedder_batches, "ragrun.chunks") == chunks
    assert total(embedder_batches, "ragrun.tokens") == root_attrs["ragrun.tokens"]
    for request in requests:
        assert request.parent is not None and by_id[request.parent.span_id] in embedder_batches
        assert request.status.status_code is not StatusCode.ERROR
        assert (request.attributes or {})["ragrun.model"] == f"vertex:{MODEL}"
    assert total(requests, "ragrun.texts") == chunks
    assert len(requests) == len(vertex.requests) >= 2, "one span per HTTP request"
    assert total(requests, "ragrun.tokens") > 0
    # embedder batch -> (publish) -> writer batch -> COPY
    for batch in writer_batches:
        assert set(ancestors(batch)) & set(embedder_batches), "writer batch not under the embedder"
    for copy in copies:
        assert copy.parent is not None and by_id[copy.parent.span_id] in writer_batches
    assert total(copies, "ragrun.rows") == chunks
    assert not [s.name for s in in_trace if s.status.status_code is StatusCode.ERROR]
    assert {(s.attributes or {})["ragrun.nacked"] for s in embedder_batches + writer_batches} == {0}

    # Log lines join the trace in Cloud Logging.
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    joined = {
        line["message"]
        for line in lines
        if line.get("logging.googleapis.com/trace") == f"projects/{PROJECT}/traces/{trace_id:032x}"
        and int(line["logging.googleapis.com/spanId"], 16) in by_id
    }
    assert {"chunker.chunked", "embedder.published", "writer.flushed"} <= joined, lines

    # Metrics: chunks per stage, rows, requests, messages.
    for stage in stages:
        assert otel.metric("ragrun.chunks", stage=stage) - chunks_before[stage] == chunks, stage
    assert otel.metric("ragrun.rows.written") - rows_before == chunks
    assert otel.metric("ragrun.embedding.requests", outcome="ok") - requests_before == len(requests)
    acked = otel.metric(
        "ragrun.messages", subscription=settings.embedder_subscription, outcome="ack"
    )
    assert acked - acked_before == root_attrs["ragrun.batches"] + 1  # and the manifest


# --- pieces ----------------------------------------------------------------------


def test_throttled_embedding_request_is_an_error_span_and_a_metric(
    otel: Telemetry, vertex: VertexStub
) -> None:
    provider = _embedder_provider(vertex)
    model = f"vertex:{MODEL}"
    throttled = otel.metric("ragrun.embedding.requests", model=model, outcome="throttled")
    ok = otel.metric("ragrun.embedding.requests", model=model, outcome="ok")
    timed = otel.metric("ragrun.embedding.duration", model=model)

    vertex.fail_next(1, status=429)
    with pytest.raises(RetryableError):
        provider.embed(["a throttled text"], Task.DOCUMENT)
    vectors = provider.embed(["a text", "another text"], Task.DOCUMENT)
    assert vectors.shape == (2, DIM)

    first, second = [s for s in otel.spans.get_finished_spans() if s.name == "embedding request"]
    assert first.status.status_code is StatusCode.ERROR
    assert (first.attributes or {})["http.response.status_code"] == 429
    assert second.status.status_code is not StatusCode.ERROR
    assert (second.attributes or {})["ragrun.texts"] == 2
    assert (
        otel.metric("ragrun.embedding.requests", model=model, outcome="throttled") == throttled + 1
    )
    assert otel.metric("ragrun.embedding.requests", model=model, outcome="ok") == ok + 1
    assert otel.metric("ragrun.embedding.duration", model=model) == timed + 2


def _seed_one_chunk(database_url: str, text: str) -> None:
    """One indexed document of one chunk, embedded as the query service embeds (hash)."""

    doc = document_id(BUCKET, "guide.txt")
    with psycopg.connect(database_url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(
            "INSERT INTO ragrun.documents (document_id, bucket, name, generation,"
            " active_generation, content_type, state, chunks_expected, chunks_written,"
            " metadata) VALUES (%s, %s, 'guide.txt', 1, 1, 'text/plain', 'indexed', 1, 1, %s)",
            (doc, BUCKET, Jsonb({})),
        )
        conn.execute(
            "INSERT INTO ragrun.chunks (chunk_id, document_id, generation, chunk_index,"
            " content, tokens, metadata, model, embedding)"
            " VALUES (%s, %s, 1, 0, %s, 4, %s, 'hash', %s)",
            (
                chunk_id(BUCKET, "guide.txt", 1, 0),
                doc,
                text,
                Jsonb({}),
                HashEmbedder(384).embed([text], Task.DOCUMENT)[0],
            ),
        )


def test_a_query_and_a_streamed_answer_are_traces_under_the_callers_context(
    otel: Telemetry, database_url: str
) -> None:
    """Each request is a server span continuing the caller's traceparent, with the
    query embedding, the search and the answer's generation (which outlives the
    request's span when streamed) as its children; health probes make no spans."""
    migrate_url(database_url, 384)
    _seed_one_chunk(database_url, "Autovacuum tuning keeps table bloat down")
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traceparent = {"traceparent": f"00-{caller_trace}-{caller_span}-01"}
    pool = make_pool(database_url, max_size=2, name="test-query")
    try:
        with GeminiStub(reply=lambda _request: "Tune autovacuum [1].", stream_pieces=3) as stub:
            settings = QuerySettings(
                database_url=database_url,
                embeddings="hash",
                answer_model="gemini-2.5-flash",
                vertex_base_url=stub.base_url,
                vertex_access_token="test-token",
            )
            client = create_app(settings, pool=pool, traced=True).test_client()
            query = client.post(
                "/v1/query",
                json={"query": "vacuum tuning", "mode": "hybrid", "k": 3},
                headers=traceparent,
            )
            assert query.status_code == 200, query.get_json()
            assert len(query.get_json()["results"]) == 1
            queried = list(otel.spans.get_finished_spans())
            otel.spans.clear()
            answer = client.post(
                "/v1/answer",
                json={"query": "vacuum tuning", "stream": True},
                headers=traceparent,
            )
            assert answer.status_code == 200
            assert "Tune autovacuum [1]." in answer.get_data(as_text=True)
            answered = list(otel.spans.get_finished_spans())
            otel.spans.clear()
            assert client.get("/healthz").status_code == 200
            assert list(otel.spans.get_finished_spans()) == []
    finally:
        pool.close()

    def tree(spans: list[ReadableSpan], route: str) -> dict[str, ReadableSpan]:
        by_name = {span.name: span for span in spans}
        server = by_name[f"POST {route}"]
        assert server.kind is trace.SpanKind.SERVER
        assert server.context is not None and server.parent is not None
        assert f"{server.context.trace_id:032x}" == caller_trace
        assert f"{server.parent.span_id:016x}" == caller_span
        attributes = server.attributes or {}
        assert (attributes.get("http.route"), attributes.get("http.status_code")) == (route, 200)
        for name, span in by_name.items():
            if span is not server:
                assert span.parent is not None, name
                assert span.parent.span_id == server.context.span_id, name
        return by_name

    spans = tree(queried, "/v1/query")
    assert set(spans) == {"POST /v1/query", "embedding request", "search"}
    search = spans["search"].attributes or {}
    assert (search["ragrun.mode"], search["ragrun.k"], search["ragrun.results"]) == ("hybrid", 3, 1)
    assert search["ragrun.index_version"] == 1

    spans = tree(answered, "/v1/answer")
    assert set(spans) == {"POST /v1/answer", "embedding request", "search", "answer generation"}
    generation = spans["answer generation"]
    assert (generation.attributes or {}).get("ragrun.sources") == 1
    assert generation.status.status_code is not StatusCode.ERROR


@pytest.mark.parametrize(
    ("exporter", "modules", "package"),
    [
        (
            "gcp",
            ["opentelemetry.exporter.cloud_monitoring", "opentelemetry.exporter.cloud_trace"],
            "opentelemetry-exporter-gcp-trace",
        ),
        (
            "otlp",
            [
                "opentelemetry.exporter.otlp.proto.http.metric_exporter",
                "opentelemetry.exporter.otlp.proto.http.trace_exporter",
            ],
            "opentelemetry-exporter-otlp-proto-http",
        ),
    ],
)
def test_exporter_without_its_package_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, exporter: str, modules: list[str], package: str
) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # "not installed"
    monkeypatch.setenv("RAGRUN_TRACES_EXPORTER", exporter)
    provider = trace.get_tracer_provider()
    with pytest.raises(telemetry.TelemetryError, match=package):
        telemetry.configure_telemetry("writer", PROJECT, telemetry.TelemetrySettings())
    assert trace.get_tracer_provider() is provider


def test_exporter_none_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGRUN_TRACES_EXPORTER", raising=False)
    settings = telemetry.TelemetrySettings()
    assert settings.traces_exporter == "none"
    provider = trace.get_tracer_provider()
    telemetry.configure_telemetry("writer", PROJECT, settings)
    assert trace.get_tracer_provider() is provider
    monkeypatch.setenv("RAGRUN_TRACES_EXPORTER", "jaeger")
    with pytest.raises(ValueError, match="RAGRUN_TRACES_EXPORTER"):
        telemetry.TelemetrySettings()


def test_log_lines_outside_a_span_carry_no_trace() -> None:
    record = logging.LogRecord("ragrun.test", logging.INFO, __file__, 1, "event", None, None)
    assert TraceContextFilter(PROJECT).filter(record)
    line = json.loads(CloudLoggingFormatter("test").format(record))
    assert "logging.googleapis.com/trace" not in line


@pytest.mark.parametrize(
    "module",
    [
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry.exporter.otlp.proto.http.metric_exporter",
        "opentelemetry.exporter.cloud_trace",
        "opentelemetry.exporter.cloud_monitoring",
    ],
)
def test_every_exporter_ships_with_the_services(module: str) -> None:
    """RAGRUN_TRACES_EXPORTER=otlp|gcp works in every image: the packages are dependencies."""
    assert importlib.import_module(module) is not None
