"""Traces, with OpenTelemetry, once OTEL_EXPORTER_OTLP_ENDPOINT says where to send them.

A request's trace holds its HTTP span, the span of its turn, the turn's database statements and
the Strands SDK's own agent, model and tool spans. Without the endpoint nothing is installed: no
middleware, no SQLAlchemy listeners; the SDK's spans go to OpenTelemetry's no-op provider.

The standard variables are read by OpenTelemetry itself: OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, ...

The SDK's spans would carry the whole conversation: its prompts, answers, system prompt, tool
inputs and results. They carry "[REDACTED]" in its place unless OTEL_SEMCONV_STABILITY_OPT_IN lists
what to keep, as the SDK reads it: `gen_ai_unredacted_attributes=gen_ai.input.messages;...`. The
messages of their errors, which may quote a tool's input, go too unless it keeps the tools'.
"""

import os
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import Attributes
from sqlalchemy import Engine

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# Probes and scrapes, every few seconds, would bury the traces worth reading.
UNTRACED_URLS = "/health$,/ready$,/metrics$,/ping$"
# The Strands SDK's variable, and its token listing the conversation's attributes to keep.
SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
UNREDACTED = "gen_ai_unredacted_attributes="
# The SDK's attributes of a tool's input and output, as the variable lists them to keep.
TOOL_ATTRIBUTES = ("gen_ai.tool.call.arguments", "gen_ai.tool.call.result")
# The name of the SDK's tracer.
SDK_TRACER = "strands.telemetry.tracer"


class Tracing:
    """An app's tracing: its span processor, and its engines' statements while it runs."""

    def __init__(self, app: FastAPI, exporter: SpanExporter) -> None:
        self._processor = BatchSpanProcessor(exporter)
        process_tracer_provider().add_span_processor(self._processor)
        excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", UNTRACED_URLS)
        # No span for each message sent or received: a streamed answer sends one per event.
        FastAPIInstrumentor.instrument_app(
            app, excluded_urls=excluded, exclude_spans=["send", "receive"]
        )

    def trace_statements(self, *engines: Engine) -> None:
        """Trace the engines' statements within a trace only: a statement of no request (a
        lease renewal, several a second; /ready's ping; a pool's connection) would each be a
        trace of its own."""
        within_traces = TracerProvider(
            sampler=ParentBased(root=ALWAYS_OFF), resource=process_tracer_provider().resource
        )
        within_traces.add_span_processor(self._processor)
        # Its declared range stops short of SQLAlchemy 2.1, which it traces all the same (the
        # tests check): the check would otherwise refuse to instrument.
        SQLAlchemyInstrumentor().instrument(
            engines=list(engines), tracer_provider=within_traces, skip_dep_check=True
        )

    def shutdown(self) -> None:
        """Stop tracing statements; send the spans still waiting in the batch."""
        SQLAlchemyInstrumentor().uninstrument()
        self._processor.shutdown()


def start_tracing(app: FastAPI, exporter: SpanExporter | None = None) -> Tracing | None:
    """Trace `app` to `exporter` (tests pass an in-memory one), or to the OTLP endpoint (over
    HTTP with protobuf) if one is set; else do nothing and return None."""
    if exporter is None:
        if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
            return None
        exporter = OTLPSpanExporter()
    redact_conversations()
    if not keeps_tool_data():
        exporter = ErrorMessagesWithheld(exporter)
    return Tracing(app, exporter)


def opt_in_tokens() -> list[str]:
    return [token.strip() for token in os.environ.get(SEMCONV_OPT_IN, "").split(",")]


def redact_conversations() -> None:
    """Have the SDK redact the conversation from its spans, unless the environment already says
    which of its attributes to keep. (The SDK reads the variable as it makes its tracer, with the
    process's first agent: before any turn.)"""
    tokens = opt_in_tokens()
    if not any(token.startswith(UNREDACTED) for token in tokens):
        os.environ[SEMCONV_OPT_IN] = ",".join([*filter(None, tokens), UNREDACTED])


def keeps_tool_data() -> bool:
    """Whether the SDK's spans keep a tool's input or output: the variable lists either, or a
    prefix of them that ends with `*` (`gen_ai.*`), as the SDK matches them."""
    kept = [
        name
        for token in opt_in_tokens()
        if token.startswith(UNREDACTED)
        for name in token.removeprefix(UNREDACTED).split(";")
    ]
    return any(
        attribute == name or (name.endswith("*") and attribute.startswith(name[:-1]))
        for attribute in TOOL_ATTRIBUTES
        for name in kept
    )


class ErrorMessagesWithheld(SpanExporter):
    """Sends spans on to `exporter`, the Strands SDK's without the messages of their errors: a
    tool's error, or the failed validation of its arguments, quotes what the model gave it,
    which the SDK's redaction of the conversation leaves in a span's status and exception event.
    That it failed, and the exception's type, stay."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([without_error_messages(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def without_error_messages(span: ReadableSpan) -> ReadableSpan:
    scope = span.instrumentation_scope
    if scope is None or scope.name != SDK_TRACER or span.status.status_code is not StatusCode.ERROR:
        return span
    return SpanWithoutErrorMessages(span)


class SpanWithoutErrorMessages(ReadableSpan):
    """A failed span as it ended, but for the error's message: its status keeps the code alone,
    and its exception events the exception's type (the message goes, and with it the stack
    trace, which ends with it)."""

    def __init__(self, span: ReadableSpan) -> None:
        events = [
            Event(event.name, exception_type_only(event.attributes), event.timestamp)
            if event.name == "exception"
            else event
            for event in span.events
        ]
        super().__init__(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=span.attributes,
            events=events,
            links=span.links,
            kind=span.kind,
            status=Status(StatusCode.ERROR),
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
        self._span = span

    # What the span's limits dropped, as the span counted it.
    @property
    def dropped_attributes(self) -> int:
        return self._span.dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._span.dropped_events

    @property
    def dropped_links(self) -> int:
        return self._span.dropped_links


def exception_type_only(attributes: Attributes) -> dict[str, Any]:
    kept = ("exception.type", "exception.escaped")
    return {name: value for name, value in (attributes or {}).items() if name in kept}


def process_tracer_provider() -> TracerProvider:
    """The process's tracer provider, made by the first app that traces.

    OpenTelemetry has one global provider per process, set once, and the Strands SDK sends its
    spans to it: each app (a test process makes many) adds its span processor to that one.
    """
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(sampler=default_sampler(), resource=service_resource())
        trace.set_tracer_provider(provider)
    return provider


def default_sampler() -> Sampler | None:
    """Every request traced, unless OTEL_TRACES_SAMPLER says otherwise (None: OpenTelemetry
    reads it). Its own default follows a caller's traceparent, so that a client that sends one
    with the sampled flag off would have its requests go untraced: here the caller's trace is
    continued, sampled or not."""
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None
    return ParentBased(root=ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)


def service_resource() -> Resource:
    """What the spans say of the service: the project's name unless OTEL_SERVICE_NAME or
    OTEL_RESOURCE_ATTRIBUTES names it, and whatever else those set."""
    resource = Resource.create()  # reads them; "unknown_service" when neither names it
    if resource.attributes[SERVICE_NAME].startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "{{ cookiecutter.__project_slug }}"}))
    return resource
