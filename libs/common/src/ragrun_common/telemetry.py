"""OpenTelemetry traces and metrics: one trace per document, from GCS event to rows.

How a trace crosses the pipeline:

- The chunker's span for an object event starts the trace (a GCS notification
  carries no trace context).
- Publishing: google-cloud-pubsub's own OpenTelemetry support
  (``PublisherOptions(enable_open_telemetry_tracing=True)``, see
  :func:`ragrun_common.pubsub.make_publisher`) opens a ``<topic> create`` span
  under the current span and writes its W3C context into the message attribute
  ``googclient_traceparent``.
- Receiving: :func:`consume_span` reads that attribute back and opens the
  worker's span for a gathered batch under the first message's context, with a
  link to every message's context. The library's subscriber-side tracing is not
  used: it assumes a message is acked inside the callback, while ragrun acks
  after the batch is handled, which makes it end spans twice (and log a warning
  per message).
- Inside: the embedder's requests (:class:`TracedProvider`) and the writer's
  COPY are child spans; spans carry counts (``ragrun.chunks``,
  ``ragrun.tokens``, ``ragrun.rows``) as attributes.

``RAGRUN_TRACES_EXPORTER`` picks where spans and metrics go: ``none`` (the
default: no SDK, nothing recorded), ``console`` (one JSON line per span or
metric batch on stderr), ``otlp`` (OTLP/HTTP, configured by the standard
``OTEL_EXPORTER_OTLP_*`` variables; needs ``opentelemetry-exporter-otlp-proto-http``)
or ``gcp`` (Cloud Trace and Cloud Monitoring; needs
``opentelemetry-exporter-gcp-trace`` and ``opentelemetry-exporter-gcp-monitoring``).
Sampling follows the SDK's ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragrun_common.contracts import Vectors
from ragrun_common.embeddings.base import EmbeddingProvider, Task
from ragrun_common.tokens import count_tokens

log = logging.getLogger(__name__)

tracer = trace.get_tracer("ragrun")
_meter = metrics.get_meter("ragrun")

# --- metrics -------------------------------------------------------------------
# Created against the global meter provider's proxy, so they record into whatever
# configure_telemetry installs later (and into nothing while it is "none").

CHUNKS = _meter.create_counter(
    "ragrun.chunks",
    unit="{chunk}",
    description="Chunks per stage: produced (chunker), embedded (embedder), written (writer).",
)
MESSAGES = _meter.create_counter(
    "ragrun.messages",
    unit="{message}",
    description="Pub/Sub messages handled by a worker, by subscription and outcome (ack, nack).",
)
EMBEDDING_REQUESTS = _meter.create_counter(
    "ragrun.embedding.requests",
    unit="{request}",
    description="Embedding requests by model and outcome (ok, throttled = HTTP 429, error).",
)
EMBEDDING_DURATION = _meter.create_histogram(
    "ragrun.embedding.duration",
    unit="s",
    description="Latency of one embedding request, by model and outcome.",
    explicit_bucket_boundaries_advisory=[0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
)
EMBEDDING_TOKENS = _meter.create_counter(
    "ragrun.embedding.tokens",
    unit="{token}",
    description="Estimated tokens sent in successful embedding requests.",
)
ROWS_WRITTEN = _meter.create_counter(
    "ragrun.rows.written",
    unit="{row}",
    description="Chunk rows committed to PostgreSQL by the writer.",
)


# --- configuration -------------------------------------------------------------

Exporter = Literal["none", "console", "otlp", "gcp"]


class TelemetryError(RuntimeError):
    """Telemetry cannot start as configured (an exporter's package is missing)."""


class TelemetrySettings(BaseSettings):
    """Where traces and metrics go; read by every service at start-up."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    traces_exporter: Exporter = Field(
        "none", validation_alias=AliasChoices("RAGRUN_TRACES_EXPORTER")
    )
    metrics_interval_s: float = Field(
        60.0, gt=0, validation_alias=AliasChoices("RAGRUN_METRICS_INTERVAL_S")
    )


@dataclass(frozen=True, slots=True)
class _Exporters:
    spans: SpanExporter
    metrics: MetricExporter


def _console(project: str) -> _Exporters:  # noqa: ARG001 - same signature as the others
    # stderr, one JSON object per line: stdout carries the Cloud Logging lines.
    return _Exporters(
        spans=ConsoleSpanExporter(
            out=sys.stderr, formatter=lambda span: span.to_json(indent=None) + "\n"
        ),
        metrics=ConsoleMetricExporter(
            out=sys.stderr, formatter=lambda data: data.to_json(indent=None) + "\n"
        ),
    )


def _otlp(project: str) -> _Exporters:  # noqa: ARG001 - endpoint from OTEL_EXPORTER_OTLP_*
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    spans: SpanExporter = OTLPSpanExporter()
    metric_exporter: MetricExporter = OTLPMetricExporter()
    return _Exporters(spans=spans, metrics=metric_exporter)


def _gcp(project: str) -> _Exporters:
    from opentelemetry.exporter.cloud_monitoring import CloudMonitoringMetricsExporter
    from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter

    spans: SpanExporter = CloudTraceSpanExporter(project_id=project)
    metric_exporter: MetricExporter = CloudMonitoringMetricsExporter(project_id=project)
    return _Exporters(spans=spans, metrics=metric_exporter)


# exporter name -> (factory, the packages it imports)
_EXPORTERS: dict[str, tuple[Callable[[str], _Exporters], tuple[str, ...]]] = {
    "console": (_console, ()),
    "otlp": (_otlp, ("opentelemetry-exporter-otlp-proto-http",)),
    "gcp": (_gcp, ("opentelemetry-exporter-gcp-trace", "opentelemetry-exporter-gcp-monitoring")),
}


def configure_telemetry(service: str, project: str, settings: TelemetrySettings) -> None:
    """Install the exporters ``settings`` name; :class:`TelemetryError` if they cannot load.

    Call once at start-up, after logging is configured. ``none`` installs
    nothing, so spans and metrics cost (almost) nothing.
    """
    name = settings.traces_exporter
    if name == "none":
        return
    factory, packages = _EXPORTERS[name]
    try:
        exporters = factory(project)
    except ImportError as e:
        raise TelemetryError(
            f"RAGRUN_TRACES_EXPORTER={name} needs the package(s) {', '.join(packages)}, "
            f"which are not installed ({e}); install them into the image or set "
            "RAGRUN_TRACES_EXPORTER=none"
        ) from e
    install(
        service,
        span_processor=BatchSpanProcessor(exporters.spans),
        metric_reader=PeriodicExportingMetricReader(
            exporters.metrics, export_interval_millis=settings.metrics_interval_s * 1000
        ),
    )
    log.info("telemetry.configured", extra={"fields": {"exporter": name}})


def install(
    service: str, *, span_processor: SpanProcessor, metric_reader: MetricReader
) -> TracerProvider:
    """Make an SDK tracer and meter provider for ``service`` the process's global ones.

    OpenTelemetry allows this once per process; tests call it with in-memory
    exporters. Both providers flush at interpreter exit.
    """
    resource = Resource.create(
        {
            "service.namespace": "ragrun",
            "service.name": f"ragrun-{service}",
            # Several instances of one service must not write the same time series.
            "service.instance.id": uuid.uuid4().hex,
        }
    )
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(span_processor)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[metric_reader]))
    return tracer_provider


# --- trace context in Pub/Sub attributes ---------------------------------------

_PROPAGATOR = TraceContextTextMapPropagator()
# google-cloud-pubsub writes W3C fields with this prefix (context_propagation.py);
# other publishers may use the bare names.
_PUBSUB_PREFIX = "googclient_"


class _AttributesGetter(Getter[Mapping[str, str]]):
    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(_PUBSUB_PREFIX + key) or carrier.get(key)
        return [value] if value else None

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return [k.removeprefix(_PUBSUB_PREFIX) for k in carrier]


_GETTER = _AttributesGetter()


def extract(attributes: Mapping[str, str]) -> otel_context.Context:
    """The trace context a publisher put into a message's attributes (empty if none)."""
    return _PROPAGATOR.extract(attributes, getter=_GETTER)


def pushed_message_context(data: Any) -> otel_context.Context | None:
    """The trace context in a Pub/Sub push body (``{"message": {"attributes": ...}}``).

    Only the publisher's context is used, never a Cloud Run or Eventarc request
    header: those are sampled by Google's front ends at a low rate, and a parent
    that is not sampled would switch off every span of the document.
    """
    message = data.get("message") if isinstance(data, Mapping) else None
    attributes = message.get("attributes") if isinstance(message, Mapping) else None
    if not isinstance(attributes, Mapping):
        return None
    ctx = extract(attributes)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


@contextlib.contextmanager
def consume_span(
    subscription: str, attributes: Sequence[Mapping[str, str]]
) -> Iterator[trace.Span]:
    """The current span while a worker handles one gathered batch of messages.

    Its parent is the first message's publisher, so a document's trace goes on
    through this stage; every message's context is also a link, since a batch
    may mix documents (and so traces).
    """
    contexts = [trace.get_current_span(extract(a)).get_span_context() for a in attributes]
    valid = [c for c in contexts if c.is_valid]
    parent = trace.set_span_in_context(trace.NonRecordingSpan(valid[0])) if valid else None
    short = subscription.rsplit("/", 1)[-1]
    with tracer.start_as_current_span(
        f"{short} process",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        links=[trace.Link(c) for c in valid],
        attributes={
            "messaging.system": "gcp_pubsub",
            "messaging.operation.type": "process",
            "messaging.destination.subscription.name": short,
            "messaging.batch.message_count": len(attributes),
        },
    ) as span:
        yield span


def record_counts(**counts: int) -> None:
    """Set ``ragrun.<name>`` count attributes on the current span."""
    span = trace.get_current_span()
    for key, value in counts.items():
        span.set_attribute(f"ragrun.{key}", value)


# --- embedding requests --------------------------------------------------------


def http_status(error: BaseException) -> int | None:
    """The HTTP status behind an error or its cause (google-genai's ``APIError.code``)."""
    seen: BaseException | None = error
    while seen is not None:
        code = getattr(seen, "code", None)
        if isinstance(code, int) and 100 <= code <= 599:
            return code
        seen = seen.__cause__
    return None


class TracedProvider:
    """An embedding provider whose every request is a span and a metric point.

    Wrap the provider that makes the HTTP call (inside any retrying wrapper), so
    each attempt, and each 429, is counted.
    """

    def __init__(self, inner: EmbeddingProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim

    def embed(self, texts: Sequence[str], task: Task) -> Vectors:
        tokens = sum(count_tokens(t) for t in texts)
        outcome = "error"
        started = time.monotonic()
        with tracer.start_as_current_span(
            "embedding request",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "ragrun.model": self.name,
                "ragrun.task": task.value,
                "ragrun.texts": len(texts),
                "ragrun.tokens": tokens,
            },
        ) as span:
            try:
                vectors = self.inner.embed(texts, task)
                outcome = "ok"
                return vectors
            except Exception as e:
                status = http_status(e)
                if status is not None:
                    span.set_attribute("http.response.status_code", status)
                    if status == 429:
                        outcome = "throttled"
                raise
            finally:
                labels = {"model": self.name, "outcome": outcome}
                EMBEDDING_DURATION.record(time.monotonic() - started, labels)
                EMBEDDING_REQUESTS.add(1, labels)
                if outcome == "ok":
                    EMBEDDING_TOKENS.add(tokens, {"model": self.name})
