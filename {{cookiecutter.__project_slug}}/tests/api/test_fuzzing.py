"""Property-based: requests generated from the OpenAPI document, one at a time and in sequences,
on each test database, never get a 500 or a status the document does not list.

Schemathesis runs its examples, coverage (boundary values: the largest integers, the empty and
the longest strings, each invalid value of each parameter) and fuzzing phases on every route,
and then sequences of calls that pass one response's values (session ids, cursors, offsets) to
the next request. Requests built from the document's examples name a session that exists, so
that the boundary values sent with them reach the database rather than stop at a 404; and every
integer input must declare both bounds, as the columns behind them have theirs: the coverage
phase can only send the largest value a bound allows where there is a bound.
"""

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from pydantic import TypeAdapter
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine, delete
from strands.types.session import Session, SessionType

from {{ cookiecutter.__package_name }}.api.app import create_app
from {{ cookiecutter.__package_name }}.api.schemas import SessionId
from {{ cookiecutter.__package_name }}.session_store import SqlSessionRepository
from {{ cookiecutter.__package_name }}.session_store.tables import sessions

from ..support.databases import TEST_PRINCIPAL, new_api_key, settings_for

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZING = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))


# The document the requests are generated from, read from an app of its own on a throwaway
# SQLite file; the requests go to `fuzzed_app`, on each test database in turn.
_workdir = tempfile.TemporaryDirectory(prefix="fuzz-")
_document_url = f"sqlite:///{Path(_workdir.name) / 'fuzz.db'}"
_document_app = create_app(settings_for(_document_url, model_provider="echo", api_docs=True))
schema = schemathesis.openapi.from_asgi("/openapi.json", _document_app)
# The session id the document gives as the example of every session id.
EXAMPLE_SESSION_ID = TypeAdapter(SessionId).json_schema()["examples"][0]


@pytest.fixture(scope="session")
def fuzzed_app(database_url: str, engine: Engine) -> Iterator[FastAPI]:
    """The service on the test database, with the offline echo model; its sessions are removed
    at the end. Schemathesis keeps the app's lifespan running until the process exits."""
    yield create_app(settings_for(database_url, model_provider="echo", api_docs=True))
    with engine.begin() as connection:
        connection.execute(delete(sessions))


@pytest.fixture(scope="session")
def headers(database_url: str) -> dict[str, str]:
    """An API key of the test database's, as every request sends it."""
    return {"Authorization": f"Bearer {new_api_key(database_url)}"}


def checks(headers: dict[str, str]) -> list[Callable[..., None]]:
    """CHECKS, and that the run's API key, where a request sent it (Schemathesis also leaves it
    out on purpose), is accepted: a 401 would mean that it stopped working, and that the
    requests after it reached nothing behind authentication."""

    def key_accepted(ctx: Any, response: Any, case: schemathesis.Case) -> None:
        sent = response.request.headers.get("Authorization") == headers["Authorization"]
        assert not (sent and response.status_code == 401), "the run's API key was refused"

    return [*CHECKS, key_accepted]


@pytest.fixture
def example_session(engine: Engine) -> None:
    """The example session, the test key's: made again for each route, as a sequence of calls or
    a DELETE may have removed it."""
    repository = SqlSessionRepository(engine, TEST_PRINCIPAL)
    if repository.read_session(EXAMPLE_SESSION_ID) is None:
        repository.create_session(
            Session(session_id=EXAMPLE_SESSION_ID, session_type=SessionType.AGENT)
        )


def integers(node: Any, where: str, components: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Each integer schema in `node`, and where it is; references followed."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/components/schemas/")
            yield from integers(components[name], f"{where} {name}", components)
        if node.get("type") == "integer":
            yield where, node
        for key, value in node.items():
            yield from integers(value, f"{where}.{key}", components)
    elif isinstance(node, list):
        for value in node:
            yield from integers(value, where, components)


def request_integers(document: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Each integer schema of the document's parameters and request bodies, and where it is."""
    components = document.get("components", {}).get("schemas", {})
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            route = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                yield from integers(parameter["schema"], f"{route} {parameter['name']}", components)
            yield from integers(operation.get("requestBody", {}), f"{route} body", components)


def test_every_integer_input_is_bounded() -> None:
    unbounded = [
        where
        for where, integer in request_integers(_document_app.openapi())
        if not {"minimum", "exclusiveMinimum"} & integer.keys()
        or not {"maximum", "exclusiveMaximum"} & integer.keys()
    ]

    assert unbounded == []


@schema.parametrize()
@FUZZING
@pytest.mark.usefixtures("example_session")
def test_no_input_makes_the_service_fail(
    case: schemathesis.Case, fuzzed_app: FastAPI, headers: dict[str, str]
) -> None:
    response = case.call(app=fuzzed_app, headers=headers)

    case.validate_response(response, checks=checks(headers))


def test_no_sequence_of_calls_makes_the_service_fail(
    fuzzed_app: FastAPI, engine: Engine, headers: dict[str, str]
) -> None:
    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Each sequence starts from no sessions: Hypothesis replays a sequence to shrink it,
            # and a replay must see the same answers (a 201, not a 409) to draw the same steps.
            with engine.begin() as connection:
                connection.execute(delete(sessions))

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"app": fuzzed_app, "headers": headers}

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=checks(headers))

    Sequences.run(
        settings=settings(
            max_examples=30,
            stateful_step_count=8,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
