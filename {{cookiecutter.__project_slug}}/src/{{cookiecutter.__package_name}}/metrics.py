"""Prometheus metrics: what the turns do, and how many database connections are in use.

Each app has a registry of its own (not prometheus_client's global one), so that the apps a test
process makes do not collide. It is served at /metrics, or on METRICS_PORT (api/app.py).
"""

from collections.abc import Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

# No `*_created` series beside each counter and histogram: they double the output for a time
# that Prometheus infers anyway.
disable_created_metrics()

# A model's turn lasts seconds, up to TURN_TIMEOUT (300 s by default).
TURN_SECONDS = (0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
# Taking a session's lease is a database round trip, unless another turn holds it.
WAIT_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The service's instruments, in the registry that /metrics (or METRICS_PORT) serves."""

    def __init__(self, error_codes: Iterable[str] = ()) -> None:
        """`error_codes`: those that refused and failed turns are counted by, each from zero."""
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # CPU, memory, open files (on Linux)
        self.turns_started = Counter(
            "agent_turns_started", "Turns admitted that began to run.", registry=registry
        )
        self.turns_finished = Counter(
            "agent_turns_finished", "Turns that ended with an answer, stored.", registry=registry
        )
        self.turns_failed = Counter(
            "agent_turns_failed",
            "Turns that began to run and failed, by the error code their client got.",
            ["code"],
            registry=registry,
        )
        self.turns_refused = Counter(
            "agent_turns_refused",
            "Turns that did not begin to run, by the error code their client got "
            "(overloaded, too_many_turns, too_many_sessions, session_busy, ...).",
            ["code"],
            registry=registry,
        )
        for code in error_codes:
            self.turns_failed.labels(code=code)
            self.turns_refused.labels(code=code)
        self.turns_in_flight = Gauge(
            "agent_turns_in_flight",
            "Turns admitted and not yet ended: running, or waiting for their session.",
            registry=registry,
        )
        self.turn_duration = Histogram(
            "agent_turn_duration_seconds",
            "From a turn's request to its answer stored, for turns that finished.",
            buckets=TURN_SECONDS,
            registry=registry,
        )
        self.first_text = Histogram(
            "agent_turn_first_text_seconds",
            "From a turn's request to the first text the model streamed.",
            buckets=TURN_SECONDS,
            registry=registry,
        )
        self.session_wait = Histogram(
            "agent_session_wait_seconds",
            "Time a turn took to hold its session: taking its lease, waiting while another "
            "turn of the session runs, and reading it.",
            buckets=WAIT_SECONDS,
            registry=registry,
        )
        self.input_tokens = Counter(
            "agent_input_tokens", "Tokens sent to the model.", registry=registry
        )
        self.output_tokens = Counter(
            "agent_output_tokens", "Tokens the model generated.", registry=registry
        )
        self.responses = Counter(
            "agent_http_responses",
            "Responses sent, by route (its path template) and HTTP status, refusals included "
            "that no turn counter sees: a credential the database could not check, a body too "
            "large, an unknown host.",
            ["route", "status"],
            registry=registry,
        )
        self.connections_in_use = Gauge(
            "agent_db_connections_in_use",
            "Database connections checked out of each engine's pool (turns, sessions).",
            ["pool"],
            registry=registry,
        )

    def watch_pool(self, name: str, engine: Engine) -> None:
        """Report the connections `engine` has checked out, counted when scraped."""
        if isinstance(engine.pool, QueuePool):  # SQLite in memory has no pool to count
            self.connections_in_use.labels(pool=name).set_function(engine.pool.checkedout)

    def serve(self, port: int) -> WSGIServer:
        """Serve the metrics on `port` of every interface, without authentication, from a
        thread of their own (METRICS_PORT); `shutdown()` and `server_close()` stop it.

        `::` takes IPv4 as well as IPv6 (Linux binds it to both), for clusters that scrape
        pods by an IPv6 address; IPv4 alone where the kernel has no IPv6."""
        try:
            server, _ = start_http_server(port, addr="::", registry=self.registry)
        except OSError:
            server, _ = start_http_server(port, addr="0.0.0.0", registry=self.registry)
        return server
