"""OpenTelemetry tracing (SPEC §12): on when the standard variables name an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), off otherwise.

Off, nothing of OpenTelemetry is imported and nothing is wrapped: every function here returns
after one check. On (``configure``, once per process, before the runtime is built), spans go by
OTLP/HTTP (protobuf) through a batch processor to the endpoint, with the SDK's own variables
honoured (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_BSP_*``, …):

- a server span per request, named by route template, with spans for its dependencies,
  endpoint and serialization: FastAPI's own telemetry, which traces once a tracer provider is
  set; the span carries the request's trace id (``req_…``) as ``personal_connectors.trace_id``;
- a span per SQL statement (the SQLAlchemy instrumentation, engines made after ``configure``),
  and one per token lookup on the token path's own reader (``storage.driver``);
- a client span per outbound call (the httpx instrumentation on the shared client).

Query strings never reach the exporter: the callback's carries the authorization code and
state, and some providers take a key in the query. ``_WithoutQueries``, the first span
processor, writes every URL attribute again without its query as each span starts. Request and
response bodies and headers are never recorded (the instrumentations' defaults).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import httpx
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "personal-connectors"
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Attributes the instrumentations fill from a request's URL, whichever semantic conventions
# they follow (OTEL_SEMCONV_STABILITY_OPT_IN): each is written again without the query.
_URL_ATTRIBUTES = ("http.url", "url.full")
_TARGET_ATTRIBUTES = ("http.target",)
_QUERY_ATTRIBUTES = ("url.query",)

_provider: TracerProvider | None = None


def wanted() -> bool:
    """What the OTel variables ask for: an endpoint, and neither the SDK nor its trace exporter
    switched off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(os.environ.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def active() -> bool:
    return _provider is not None


def configure() -> bool:
    """Start tracing in this process if the environment asks for it; True when it is on."""
    global _provider
    if _provider is not None:
        return True
    if not wanted():
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol.strip().lower() != "http/protobuf":
        logger.warning("OTLP protocol %s is not supported; sending http/protobuf", protocol)
    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(_without_queries())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    # Engines created from now on are traced (storage.database calls the factory through its
    # module, where the instrumentation wraps it). The instrumentation declares SQLAlchemy
    # below 2.1; the engine events it listens to are the same in 2.1.
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    _provider = provider
    logger.info("tracing on: spans go to the OTLP endpoint")
    return True


def shutdown() -> None:
    """Send the spans still queued (the app's shutdown)."""
    if _provider is not None:
        _provider.shutdown()


def instrument_client(client: httpx.AsyncClient) -> None:
    if _provider is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_provider)


def tracer(name: str) -> Any:
    """A tracer for manual spans (None when tracing is off)."""
    if _provider is None:
        return None
    return _provider.get_tracer(name)


def client_kind() -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind.CLIENT


def request_tagger() -> Any:
    """With tracing on, a function that writes a request's trace id (``req_…``, the one in its
    log lines and error envelope) on the current server span; None when off."""
    if _provider is None:
        return None
    from opentelemetry import trace

    def tag(trace_id: str) -> None:
        trace.get_current_span().set_attribute("personal_connectors.trace_id", trace_id)

    return tag


def strip_query(url: str) -> str:
    """``url`` without its query, fragment and user-info."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _without_queries() -> Any:
    from opentelemetry.sdk.trace import SpanProcessor

    class WithoutQueries(SpanProcessor):
        """Rewrites a starting span's URL attributes without their query (and user-info)."""

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            attributes = span.attributes or {}
            for name in _URL_ATTRIBUTES:
                if isinstance(attributes.get(name), str):
                    span.set_attribute(name, strip_query(attributes[name]))
            for name in _TARGET_ATTRIBUTES:
                if isinstance(attributes.get(name), str):
                    span.set_attribute(name, attributes[name].partition("?")[0])
            for name in _QUERY_ATTRIBUTES:
                if name in attributes:
                    span.set_attribute(name, "")

    return WithoutQueries()
