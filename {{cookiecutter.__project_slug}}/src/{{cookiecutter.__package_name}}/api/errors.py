"""Every error leaves the service as `{"error": {"code": "...", "message": "..."}}`."""

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..agent import is_throttled
from ..database import DATABASE_OUTAGES
from ..principal_limits import PrincipalLimitError
from ..session_store import (
    AlreadyExistsError,
    InvalidCursorError,
    InvalidIdError,
    LeaseLostError,
    NotFoundError,
    SaveOutcomeUnknownError,
    SessionBusyError,
    TurnAlreadyStoredError,
    TurnKeyReusedError,
)
from ..turns import (
    ClientGoneError,
    InterruptNotSupportedError,
    ModelError,
    OverloadedError,
    TurnCancelledError,
    TurnTimeoutError,
)
from .schemas import ErrorResponse

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with the HTTP status and the machine-readable code the client receives."""

    def __init__(
        self, status_code: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers


INTERNAL_ERROR_MESSAGE = "The service failed; it has been logged."
INVALID_JSON = "The request body is not valid JSON."


def database_unavailable() -> ApiError:
    # Retry-After spaces out the retries of every client at once, for the seconds of a restart.
    message = "The database is unreachable; retry shortly."
    return ApiError(503, "database_unavailable", message, headers={"Retry-After": "5"})


def database_outage(error: Exception) -> ApiError:
    """What a request that met one of DATABASE_OUTAGES answers: logged as an outage, not a bug."""
    logger.warning("database unavailable: %s", error)
    return database_unavailable()


def limit_error(error: PrincipalLimitError) -> ApiError:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    return ApiError(429, error.code, str(error), headers=headers)


def turn_error(error: BaseException) -> ApiError:
    """The status and code a client gets for what stopped its turn."""
    if isinstance(error, OverloadedError):
        message = "The service is running as many turns as it may; retry shortly."
        return ApiError(429, "overloaded", message, headers={"Retry-After": "1"})
    if isinstance(error, PrincipalLimitError):
        return limit_error(error)
    if isinstance(error, SessionBusyError):
        # The other turn may end any moment: a client that retries needs no other signal.
        return ApiError(409, "session_busy", str(error), headers={"Retry-After": "1"})
    if isinstance(error, TurnAlreadyStoredError):
        return ApiError(409, "turn_already_stored", str(error))
    if isinstance(error, TurnKeyReusedError):
        return ApiError(422, "idempotency_key_reused", str(error))
    if isinstance(error, TurnCancelledError):
        return ApiError(409, "turn_cancelled", str(error))
    if isinstance(error, TurnTimeoutError):
        return ApiError(504, "model_timeout", str(error))
    if isinstance(error, ModelError):
        if is_throttled(error.error):
            message = "The model provider is throttling requests; retry shortly."
            return ApiError(503, "model_throttled", message, headers={"Retry-After": "5"})
        # The provider's own message can hold request details: it is logged, not returned.
        name = type(error.error).__name__
        return ApiError(502, "model_error", f"The model failed ({name}); see the logs.")
    if isinstance(error, InterruptNotSupportedError):
        return ApiError(501, "interrupt_not_supported", str(error))
    if isinstance(error, LeaseLostError):
        return ApiError(503, "turn_not_stored", str(error), headers={"Retry-After": "1"})
    # No Retry-After: a retry without the turn's Idempotency-Key may store it twice.
    if isinstance(error, SaveOutcomeUnknownError):
        return ApiError(503, "turn_outcome_unknown", str(error))
    if isinstance(error, DATABASE_OUTAGES):
        return database_unavailable()
    if isinstance(error, ClientGoneError):
        return ApiError(499, "client_gone", "The client left before its turn started.")
    return ApiError(500, "internal_error", INTERNAL_ERROR_MESSAGE)


def turn_error_code(error: BaseException) -> str:
    """The code a client gets for what stopped its turn, as metrics and traces name it."""
    return turn_error(error).code


# Every code that turn_error gives. The metrics count refused and failed turns by code from zero
# (metrics.py): a series that first appeared with its first failure would hide that failure from
# rate() and increase(), and from the alerts written with them.
TURN_ERROR_CODES = (
    "overloaded",
    "too_many_turns",
    "too_many_sessions",
    "session_busy",
    "turn_already_stored",
    "idempotency_key_reused",
    "turn_cancelled",
    "model_timeout",
    "model_throttled",
    "model_error",
    "interrupt_not_supported",
    "turn_not_stored",
    "turn_outcome_unknown",
    "database_unavailable",
    "client_gone",
    "internal_error",
)


# The headers of an answer sent before the request's body was read whole: what is left of it may
# still be on its way, so the connection can carry no next request (and uvicorn would otherwise
# read and drop the rest for as long as it keeps coming).
CLOSE_CONNECTION = {"Connection": "close"}


def error_response(
    status_code: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status_code, headers=headers)


# The problems of an invalid request that its 422 names: a body can hold many thousands.
MAX_PROBLEMS_SHOWN = 10
# Codes for the statuses Starlette raises itself (unknown route, wrong method, ...).
# FastAPI raises the 400 for a body it cannot decode as text (not UTF-8).
_HTTP_CODES = {
    400: "invalid_json",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}
# What the session store raises outside turns, as the client gets it.
_STORE_ERRORS = {
    NotFoundError: (404, "not_found"),
    AlreadyExistsError: (409, "already_exists"),
    InvalidIdError: (422, "invalid_request"),
    InvalidCursorError: (422, "invalid_cursor"),
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status_code, error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        # A body that is not JSON at all is the client's encoding bug, not a value to fix.
        if any(problem["type"] == "json_invalid" for problem in problems):
            return error_response(400, "invalid_json", INVALID_JSON)
        # A body of another Content-Type (fetch's text/plain, curl's form) is not read as JSON
        # but left as bytes: its problem is the header, not the fields found missing (unless
        # something else of the request is wrong too: then all of it is said).
        if isinstance(error.body, bytes) and all(p["loc"][:1] == ("body",) for p in problems):
            message = "Send the body as JSON, with the header Content-Type: application/json."
            return error_response(415, "unsupported_media_type", message)
        message = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in problems[:MAX_PROBLEMS_SHOWN]
        )
        if len(problems) > MAX_PROBLEMS_SHOWN:
            message += f"; and {len(problems) - MAX_PROBLEMS_SHOWN} more"
        return error_response(422, "invalid_request", message)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "http_error")
        message = INVALID_JSON if code == "invalid_json" else str(error.detail)
        return error_response(error.status_code, code, message, error.headers)

    def store_error(status_code: int, code: str) -> Callable[..., Awaitable[JSONResponse]]:
        async def handler(_: Request, error: Exception) -> JSONResponse:
            return error_response(status_code, code, str(error))

        return handler

    for error_type, (status_code, code) in _STORE_ERRORS.items():
        app.add_exception_handler(error_type, store_error(status_code, code))

    @app.exception_handler(SessionBusyError)  # deleting a session while a turn of it runs
    async def session_busy(request: Request, error: SessionBusyError) -> JSONResponse:
        return await api_error(request, turn_error(error))

    async def outage(request: Request, error: Exception) -> JSONResponse:
        return await api_error(request, database_outage(error))

    for error_type in DATABASE_OUTAGES:
        app.add_exception_handler(error_type, outage)


class UnexpectedErrorMiddleware:
    """A failure of the service itself: logged once with its traceback, answered 500
    internal_error.

    (An exception handler for Exception answers the same, but Starlette raises the exception
    again after it, for the server to log a second traceback.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception:
            logger.exception("unhandled error: %s %s", scope["method"], scope["path"])
            if not started:  # else the response is under way: the client sees it cut short
                response = error_response(500, "internal_error", INTERNAL_ERROR_MESSAGE)
                await response(scope, receive, send)


# The headers that some errors carry, as the OpenAPI document describes them.
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again, with the codes that say to retry: "
        "session_busy, overloaded, too_many_turns, model_throttled, turn_not_stored, "
        "database_unavailable, auth_unavailable.",
        "schema": {"type": "integer"},
    }
}
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    409: _RETRY_AFTER,
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}


def documented(*groups: dict[int, str], streamed: bool = False) -> dict[int | str, dict]:
    """Error statuses for a route's OpenAPI `responses`, each with the error body's schema; a
    status that several groups name is described by each of them.

    A `streamed` route's errors are JSON all the same: it names no model for them, from which
    FastAPI would document its event stream's media type too (the routes that do name it keep
    the schema among the document's components)."""
    descriptions: dict[int, list[str]] = {}
    for group in groups:
        for status, description in group.items():
            descriptions.setdefault(status, []).append(description)
    json_body = {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
    responses: dict[int | str, dict] = {}
    for status, described in descriptions.items():
        responses[status] = {
            "description": "; ".join(described),
            "content": {"application/json": json_body},
        }
        if status in ERROR_HEADERS:
            responses[status]["headers"] = ERROR_HEADERS[status]
        if not streamed:
            responses[status]["model"] = ErrorResponse
    return responses


# What every route but the probes can answer.
ANY_ROUTE_ERRORS = {
    400: "The Host header names none of ALLOWED_HOSTS (invalid_host)",
    401: "Missing or invalid credential: an API key or a JWT, by AUTH_MODE (unauthorized)",
    403: "AUTH_MODE=none: a client on another machine (open_access_refused), or a browser's "
    "request for another site's page (cross_site_request)",
    408: "The request body took longer than REQUEST_BODY_TIMEOUT to arrive (request_timeout)",
    413: "Request body larger than MAX_BODY_BYTES (request_too_large)",
    422: "Invalid parameters or body (invalid_request)",
    500: "The service failed (internal_error); it has been logged",
    503: "The database is unreachable (database_unavailable), or the identity provider's "
    "signing keys (auth_unavailable)",
}
# What a route that takes a JSON body can answer too.
BODY_ERRORS = {
    400: "the body is not JSON (invalid_json)",
    415: "the body is sent with a Content-Type other than application/json "
    "(unsupported_media_type)",
}
SESSION_ERRORS = {404: "Unknown session (session_not_found)"}
# What a turn can answer before it runs, on every route that starts one.
TURN_START_ERRORS = {
    409: "Another turn of the session is still running after SESSION_WAIT_TIMEOUT (session_busy)",
    413: "the prompt is longer than MAX_PROMPT_CHARS (prompt_too_long)",
    429: "The service holds MAX_CONCURRENT_TURNS turns (overloaded), or the caller is past "
    "MAX_TURNS_PER_PRINCIPAL or TURNS_PER_MINUTE (too_many_turns; retry after Retry-After), "
    "or keeps MAX_SESSIONS_PER_PRINCIPAL sessions (too_many_sessions)",
}
# What it can answer once it runs, where the answer waits for its end; a streamed turn ends its
# stream with an error event instead.
TURN_RUN_ERRORS = {
    409: "the turn was cancelled (turn_cancelled)",
    500: "nothing of the turn was stored",
    501: "A tool or hook interrupted the turn to ask for an answer (interrupt_not_supported); "
    "nothing of the turn was stored",
    502: "The model failed (model_error); nothing of the turn was stored",
    503: "the model is throttled (model_throttled; retry after Retry-After), the turn lost "
    "its claim on the session (turn_not_stored), or the database went away as the turn was "
    "saved (turn_outcome_unknown: send it again with its Idempotency-Key, or read the history "
    "first)",
    504: "The turn took longer than TURN_TIMEOUT (model_timeout)",
}
