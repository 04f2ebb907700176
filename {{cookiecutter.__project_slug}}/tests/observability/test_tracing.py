"""Traces: a turn is one trace, from its request down to its database statements and the Strands
SDK's spans; without an OTLP endpoint nothing is traced at all."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from {{ cookiecutter.__package_name }} import agent as agent_module
from {{ cookiecutter.__package_name }}.api.app import create_app
from {{ cookiecutter.__package_name }}.tracing import (
    SDK_TRACER,
    SEMCONV_OPT_IN,
    ErrorMessagesWithheld,
    keeps_tool_data,
    redact_conversations,
    service_resource,
)

from ..support.databases import TEST_PRINCIPAL, new_api_key, settings_for
from ..support.http import QuietHandler, local_http_server
from ..support.scripted_model import GatedModel, ScriptedModel, ToolCall
from ..support.server import running_server
from ..support.tools import failing_lookup_order


def ancestors(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[str]:
    """The names of the span's parents, nearest first."""
    by_id = {each.context.span_id: each for each in spans}
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


def named(spans: Sequence[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name.startswith(prefix)]


@contextmanager
def traced_client(
    database_url: str, model: ScriptedModel, **settings: object
) -> Iterator[tuple[TestClient, InMemorySpanExporter]]:
    """A client of the app, tracing to memory: once the block has ended, the app has stopped and
    sent its last batch of spans to the exporter."""
    exporter = InMemorySpanExporter()
    config = settings_for(database_url, **settings)
    app = create_app(config, model=model, span_exporter=exporter)
    key = new_api_key(database_url)
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        yield client, exporter


@pytest.mark.parametrize("route", ["/process", "/process-streaming"])
def test_a_turn_is_one_trace_from_its_request_to_its_statements_and_model(
    database_url: str, route: str
) -> None:
    with traced_client(database_url, ScriptedModel(["Hello there."])) as (client, exporter):
        response = client.post(route, json={"prompt": "Hi", "session_id": "traced"})
        assert response.status_code == 200
    spans = exporter.get_finished_spans()

    [request] = [span for span in spans if span.kind == SpanKind.SERVER]
    [turn] = named(spans, "turn")
    assert request.name == f"POST {route}"
    assert turn.parent is not None and turn.parent.span_id == request.context.span_id
    assert dict(turn.attributes or {}) == {
        "session.id": "traced",
        "enduser.id": TEST_PRINCIPAL,
        "turn.outcome": "ok",
    }
    statements = [span for span in spans if "db.system" in (span.attributes or {})]
    under_turn = [span for span in statements if "turn" in ancestors(span, spans)]
    assert len(under_turn) >= 2, "the turn's lease and read, and its save"
    [agent] = named(spans, "invoke_agent")
    assert ancestors(agent, spans)[0] == "turn"
    assert named(spans, "chat"), "the SDK's model call"
    assert all("turn" in ancestors(span, spans) for span in named(spans, "chat"))
    trace_ids = {span.context.trace_id for span in [turn, agent, *under_turn]}
    assert trace_ids == {request.context.trace_id}


def test_a_failed_tools_error_message_stays_out_of_the_traces(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tool's error quotes what the model gave it: the SDK redacts the tool's arguments and
    result from its spans, but not the error's message from their status and exception event."""
    monkeypatch.setattr(agent_module, "TOOLS", [failing_lookup_order])
    model = ScriptedModel([ToolCall("lookup_order", {"order_id": "A-4111"}), "Not found."])
    with traced_client(database_url, model) as (client, exporter):
        assert client.post("/process", json={"prompt": "Where is it?"}).status_code == 200
    spans = exporter.get_finished_spans()

    [tool] = named(spans, "execute_tool")
    assert tool.status.status_code is StatusCode.ERROR and tool.status.description is None
    exceptions = [event.attributes for event in tool.events if event.name == "exception"]
    assert exceptions == [{"exception.type": "LookupError", "exception.escaped": "False"}]


def test_a_span_without_its_error_message_keeps_the_rest_as_it_ended() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=1, max_events=1))
    provider.add_span_processor(SimpleSpanProcessor(ErrorMessagesWithheld(exporter)))
    with provider.get_tracer(SDK_TRACER).start_as_current_span("execute_tool lookup") as span:
        span.set_attributes({"gen_ai.operation.name": "execute_tool", "one.too.many": True})
        span.add_event("one too many")
        span.record_exception(LookupError("no order A-4111"))
        span.set_status(StatusCode.ERROR, "no order A-4111")
    [sent] = exporter.get_finished_spans()

    assert (sent.dropped_attributes, sent.dropped_events) == (1, 1), "as the span counted them"
    assert (sent.name, sent.context, sent.attributes) == (span.name, span.context, span.attributes)
    assert sent.status.status_code is StatusCode.ERROR and sent.status.description is None
    assert [event.attributes for event in sent.events] == [
        {"exception.type": "LookupError", "exception.escaped": "False"}
    ]


@pytest.mark.parametrize(
    ("chosen", "kept"),
    [
        (None, False),
        ("gen_ai_unredacted_attributes=gen_ai.input.messages;gen_ai.output.messages", False),
        ("gen_ai_unredacted_attributes=gen_ai.tool.call.arguments", True),
        ("gen_ai_latest_experimental,gen_ai_unredacted_attributes=gen_ai.*", True),
    ],
)
def test_error_messages_are_kept_only_where_the_tools_data_is(
    monkeypatch: pytest.MonkeyPatch, chosen: str | None, kept: bool
) -> None:
    monkeypatch.setenv(SEMCONV_OPT_IN, chosen or "")  # restored after the test
    redact_conversations()

    assert keeps_tool_data() is kept


def test_a_callers_trace_is_continued_whether_it_sampled_it_or_not(database_url: str) -> None:
    """Each request is traced: a caller's traceparent gives its trace id, not the decision."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    not_sampled = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-00"}
    with traced_client(database_url, ScriptedModel(["Hello."])) as (client, exporter):
        response = client.post("/process", json={"prompt": "Hi"}, headers=not_sampled)
        assert response.status_code == 200
    spans = exporter.get_finished_spans()

    [request] = [span for span in spans if span.kind == SpanKind.SERVER]
    assert f"{request.context.trace_id:032x}" == trace_id
    assert named(spans, "turn")


def test_statements_of_no_request_and_a_streams_events_make_no_spans(database_url: str) -> None:
    """Lease renewals (every third of a lease), /ready's ping and a pool's connections would
    each be a trace of one span; each event of a stream, a span of the request."""
    model = GatedModel(lambda: time.sleep(1.5))  # renewed twice meanwhile
    with traced_client(database_url, model, session_lease_seconds=2) as (client, exporter):
        assert client.get("/ready").status_code == 200
        body = {"prompt": "Hi", "session_id": "traced"}
        assert client.post("/process-streaming", json=body).status_code == 200
    spans = exporter.get_finished_spans()

    [request] = [span for span in spans if span.parent is None]
    assert request.name == "POST /process-streaming"
    assert not [span.name for span in spans if span.name.endswith((" send", " receive"))]


def test_a_failed_turn_span_carries_its_error_code(database_url: str) -> None:
    model = ScriptedModel([RuntimeError("provider exploded")])
    with traced_client(database_url, model) as (client, exporter):
        assert client.post("/process", json={"prompt": "Hi"}).status_code == 502

    [turn] = named(exporter.get_finished_spans(), "turn")
    assert turn.attributes is not None and turn.attributes["turn.outcome"] == "model_error"
    assert not turn.status.is_ok


# Run in a process of its own: OpenTelemetry's global provider, once another test has set it,
# stays set for the rest of the process.
UNTRACED_PROCESS = """
import json
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from {{ cookiecutter.__package_name }}.main import app

with TestClient(app, client=("127.0.0.1", 50000)) as client:
    status = client.post("/process", json={"prompt": "Hi"}).status_code
    statements_traced = SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry
print(json.dumps({
    "status": status,
    "statements_traced": statements_traced,
    "provider": type(trace.get_tracer_provider()).__name__,
}))
"""


@pytest.mark.parametrize(
    ("variables", "name"),
    [
        ({}, "{{ cookiecutter.__project_slug }}"),
        ({"OTEL_SERVICE_NAME": "by-name"}, "by-name"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=by-attributes,env=test"}, "by-attributes"),
    ],
)
def test_the_service_is_named_as_opentelemetrys_variables_say(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], name: str
) -> None:
    for variable in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)

    assert service_resource().attributes["service.name"] == name


def test_without_an_endpoint_nothing_is_traced(tmp_path: Path) -> None:
    environment = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'untraced.db'}",
        "AUTH_MODE": "none",
        "MODEL_PROVIDER": "echo",
    }
    finished = subprocess.run(
        [sys.executable, "-c", UNTRACED_PROCESS],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    outcome = json.loads(finished.stdout.strip().splitlines()[-1])
    assert outcome == {
        "status": 200,
        "statements_traced": False,
        # No provider was ever set: every span of the SDK and of the API is a no-op one.
        "provider": "ProxyTracerProvider",
    }


@pytest.fixture
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP endpoint that keeps what it is sent: its URL, and the requests."""
    received: list[ExportTraceServiceRequest] = []

    class Collector(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with local_http_server(Collector) as url:
        yield url, received


def test_the_endpoint_variables_send_traces_to_a_collector(
    tmp_path: Path, collector: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    url, received = collector
    database_url = f"sqlite:///{tmp_path / 'traced.db'}"
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_SERVICE_NAME": "traced-agent"}
    log_path = tmp_path / "server.log"
    with (
        log_path.open("w") as log,
        running_server(database_url, log=log, LOG_FORMAT="json", **otel) as client,
    ):
        assert client.post("/process", json={"prompt": "my secret plan"}).status_code == 200
    # The server has stopped (SIGTERM): what it had batched has been sent.

    resources = [spans for request in received for spans in request.resource_spans]
    spans = [span for each in resources for scope in each.scope_spans for span in scope.spans]
    names = {span.name for span in spans}
    assert {"POST /process", "turn"} <= names
    [turn] = [span for span in spans if span.name == "turn"]
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    [finished] = [line for line in lines if line["message"].startswith("turn finished")]
    assert finished["trace_id"] == turn.trace_id.hex(), "a log line leads to its trace"
    assert any(name.startswith("invoke_agent") for name in names)
    services = {
        attribute.value.string_value
        for spans in resources
        for attribute in spans.resource.attributes
        if attribute.key == "service.name"
    }
    assert services == {"traced-agent"}
    # Every attribute and event of every span, as text: the SDK's hold no word of the
    # conversation (the echo model's answer repeats the prompt).
    recorded = "\n".join(map(str, spans))
    assert "secret" not in recorded
    assert "[REDACTED]" in recorded


@pytest.mark.parametrize(
    ("chosen", "read"),
    [
        (None, "gen_ai_unredacted_attributes="),
        ("gen_ai_latest_experimental", "gen_ai_latest_experimental,gen_ai_unredacted_attributes="),
        ("gen_ai_unredacted_attributes=gen_ai.*", "gen_ai_unredacted_attributes=gen_ai.*"),
    ],
)
def test_traces_keep_the_conversation_only_where_the_environment_says(
    monkeypatch: pytest.MonkeyPatch, chosen: str | None, read: str
) -> None:
    """What the SDK reads from OTEL_SEMCONV_STABILITY_OPT_IN once tracing starts: the deployment's
    other choices kept, and what it lists of the conversation kept, nothing else."""
    monkeypatch.setenv(SEMCONV_OPT_IN, chosen or "")  # restored after the test
    if chosen is None:
        monkeypatch.delenv(SEMCONV_OPT_IN)

    redact_conversations()

    assert os.environ[SEMCONV_OPT_IN] == read
