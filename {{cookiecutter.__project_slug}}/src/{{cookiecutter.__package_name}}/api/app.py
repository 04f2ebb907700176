"""The application factory: settings, engine, session store, turn runner and routes."""

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry.sdk.trace.export import SpanExporter
from starlette.concurrency import run_in_threadpool
from strands.models import Model

from .. import PROJECT_NAME
from .. import __doc__ as project_description
from ..agent import build_model
from ..config import Settings, get_settings
from ..database import (
    create_async_engine,
    create_engine,
    earlier_revisions,
    migrate_if_embedded,
)
from ..metrics import Metrics
from ..session_store import SqlSessionRepository, turn_store_for
from ..tracing import start_tracing
from ..turns import TurnRunner
from . import chat, health, metrics, sessions, turns
{%- if cookiecutter.agentcore %}
from .agentcore import create_router as agentcore_router
{%- endif %}
from .cursors import cursor_secret
from .disconnects import DroppedStreamMiddleware
from .errors import (
    TURN_ERROR_CODES,
    UnexpectedErrorMiddleware,
    install_error_handlers,
    turn_error_code,
)
from .hosts import PROBES, AllowedHostsMiddleware
from .limits import BodyLimitsMiddleware
from .metrics import ResponseCountMiddleware
from .playground import install_playground
from .request_ids import RequestIdMiddleware
from .security import AuthenticateBeforeBodyMiddleware, Authenticator

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    model: Model | None = None,
    span_exporter: SpanExporter | None = None,
) -> FastAPI:
    """Build the application. Tests pass their own settings, a scripted model, and a span
    exporter to trace to (else traces go where OTEL_EXPORTER_OTLP_ENDPOINT says, if set)."""
    config = settings or get_settings()
    app_metrics = Metrics(TURN_ERROR_CODES)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each cleanup is registered as soon as its resource exists, and they run in reverse:
        # a start-up that fails half-way, or a step of shutdown that fails, still releases all.
        async with AsyncExitStack() as cleanup:
            # One engine on the event loop for turns and API keys, one in threads for the
            # /sessions routes, each with its pool, per process.
            engine, turn_engine = create_engine(config), create_async_engine(config)
            cleanup.callback(engine.dispose)
            cleanup.push_async_callback(turn_engine.dispose)
            await run_in_threadpool(migrate_if_embedded, engine)
            store = turn_store_for(turn_engine, config.session_lease_seconds)
            # One model for every turn of the process: the SDK's models keep nothing of a
            # conversation, and a provider's client is costly to build (boto3's, for Bedrock,
            # above all: CPU, memory and a credentials lookup, on the event loop).
            turn_model = model or build_model(config)
            runner = TurnRunner(config, store, turn_model, app_metrics, turn_error_code)
            app.state.settings, app.state.engine = config, engine
            app.state.database_ping = health.DatabasePing(turn_engine, earlier_revisions())
            app.state.repository, app.state.runner = SqlSessionRepository(engine), runner
            app.state.authenticator = Authenticator(config, turn_engine, runner.connections)
            if config.auth_mode == "none":
                logger.warning(
                    "AUTH_MODE=none: anyone who can reach this service can read, continue and "
                    "delete every conversation, and make it call the model. For development only."
                )
            app.state.cursor_secret = cursor_secret(config)
            # The SDK runs blocking work of a turn on the event loop's default executor:
            # Bedrock's streamed response and every plain `def` tool. Sized to twice the turns
            # admitted, so that none of them queues behind the others, nor behind the reads of
            # stopped turns that wait for a stalled model's next chunk to see they were stopped
            # (threads start only when needed).
            asyncio.get_running_loop().set_default_executor(
                ThreadPoolExecutor(2 * config.max_concurrent_turns, thread_name_prefix="turn")
            )
            app_metrics.watch_pool("sessions", engine)
            app_metrics.watch_pool("turns", turn_engine.sync_engine)
            if config.metrics_port:
                metrics_server = app_metrics.serve(config.metrics_port)
                cleanup.callback(metrics_server.server_close)
                cleanup.callback(metrics_server.shutdown)
            if tracing:
                tracing.trace_statements(engine, turn_engine.sync_engine)
                cleanup.callback(tracing.shutdown)  # sends the spans still batched
            runner.start_keeping_leases()
            # First at shutdown: running turns finish and are stored while all else still works.
            cleanup.push_async_callback(runner.shutdown)
            # What start-up created lives as long as the process: frozen, it is not rescanned by
            # every full collection. A turn allocates tens of thousands of short-lived objects:
            # collecting every 10,000 allocations, not every 700 (Python's default), keeps a
            # thousand turns at once from spending their CPU rescanning one another
            # (the template's BENCHMARKS.md).
            gc.freeze()
            gc.set_threshold(10_000, 10, 10)
            yield

    app = FastAPI(
        title=PROJECT_NAME,
        description=project_description,
        version="0.1.0",
        lifespan=lifespan,
        # /sessions/ is not found, rather than redirected to an absolute URL that would leave
        # a proxy's path prefix out.
        redirect_slashes=False,
        # No openapi_url turns off /docs and /redoc too.
        openapi_url="/openapi.json" if config.api_docs else None,
    )
    app.add_middleware(
        BodyLimitsMiddleware,
        max_bytes=config.max_body_bytes,
        timeout=config.request_body_timeout,
    )
    app.add_middleware(AuthenticateBeforeBodyMiddleware)
    app.add_middleware(DroppedStreamMiddleware)
    # Middleware added later runs earlier: the error middleware sees every inner one's failure,
    # a page of an allowed origin can read that 500 too, and a request for another host is
    # refused before anything else.
    app.add_middleware(UnexpectedErrorMiddleware)
    if config.cors_allow_origins:
        # Credentials are bearer tokens in a header, not cookies: allow_credentials stays off.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_allow_origins,
            allow_methods=["GET", "POST", "DELETE"],
            # traceparent and tracestate: what OpenTelemetry's instrumentation of fetch adds.
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "X-Request-ID",
                "traceparent",
                "tracestate",
            ],
            expose_headers=["Location", "Retry-After", "X-Request-ID"],
        )
    # /metrics asks for a credential, but under AUTH_MODE=none.
    any_host = PROBES | {"/metrics"} if config.auth_mode != "none" else PROBES
    app.add_middleware(
        AllowedHostsMiddleware, allowed_hosts=config.allowed_hosts, any_host=any_host
    )
    app.add_middleware(ResponseCountMiddleware, counter=app_metrics.responses)
    app.add_middleware(RequestIdMiddleware)  # outermost: every log line of a request has its id
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(turns.router)
    app.include_router(sessions.router)
    app.include_router(chat.router)
{%- if cookiecutter.agentcore %}
    app.include_router(agentcore_router())
{%- endif %}
    app.state.metrics = app_metrics
    if not config.metrics_port:  # else served on that port alone
        app.include_router(metrics.router)
    tracing = start_tracing(app, span_exporter)
    if config.playground:
        install_playground(app)
    return app
