"""Every error leaves the service as `{"error": {"code": "...", "message": "..."}}`."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from strands.types.exceptions import ModelThrottledException

from ..session_store import AlreadyExistsError, InvalidCursorError, InvalidIdError, NotFoundError
from ..session_store.locks import SessionBusyError
from ..turns import TurnTimeoutError
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


# The database is down, unreachable or out of connections: worth retrying, not a bug.
DATABASE_OUTAGES = (OperationalError, InterfaceError, PoolTimeoutError)


def database_unavailable() -> ApiError:
    return ApiError(503, "database_unavailable", "The database is unreachable; retry shortly.")


def turn_error(error: BaseException) -> ApiError:
    """The status and code a client gets for what stopped its turn."""
    # The SDK wraps what went wrong during its event loop (EventLoopException): look inside.
    causes = [error]
    while causes[-1].__cause__ is not None:
        causes.append(causes[-1].__cause__)
    for cause in causes:
        if isinstance(cause, SessionBusyError):
            return ApiError(409, "session_busy", str(cause))
        if isinstance(cause, TurnTimeoutError):
            return ApiError(504, "model_timeout", str(cause))
        if isinstance(cause, ModelThrottledException):
            message = "The model provider is throttling requests; retry shortly."
            return ApiError(503, "model_throttled", message, headers={"Retry-After": "5"})
        if isinstance(cause, DATABASE_OUTAGES):
            return database_unavailable()
    # The provider's own message can hold request details: it is logged, not returned.
    name = type(causes[-1]).__name__
    return ApiError(502, "model_error", f"The model failed ({name}); see the logs.")


def error_response(
    status_code: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status_code, headers=headers)


# Codes for the statuses Starlette raises itself (unknown route, wrong method, ...).
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status_code, error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        )
        return error_response(422, "invalid_request", problems)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "http_error")
        return error_response(error.status_code, code, str(error.detail), error.headers)

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, error: NotFoundError) -> JSONResponse:
        return error_response(404, "not_found", str(error))

    @app.exception_handler(AlreadyExistsError)
    async def already_exists(_: Request, error: AlreadyExistsError) -> JSONResponse:
        return error_response(409, "already_exists", str(error))

    @app.exception_handler(InvalidIdError)
    @app.exception_handler(InvalidCursorError)
    async def invalid_value(_: Request, error: ValueError) -> JSONResponse:
        return error_response(422, "invalid_request", str(error))

    async def outage(request: Request, error: Exception) -> JSONResponse:
        logger.warning("database unavailable: %s", error)
        return await api_error(request, database_unavailable())

    for error_type in DATABASE_OUTAGES:
        app.add_exception_handler(error_type, outage)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=error)
        return error_response(500, "internal_error", "The service failed; it has been logged.")


def documented(descriptions: dict[int, str]) -> dict[int | str, dict]:
    """Error statuses for a route's OpenAPI `responses`, each with the error body's schema."""
    return {
        status: {"model": ErrorResponse, "description": description}
        for status, description in descriptions.items()
    }


ERROR_RESPONSES = documented(
    {
        401: "Missing or wrong API key",
        404: "Unknown session",
        413: "Request body too large",
        422: "Invalid request",
        503: "The database is unreachable",
    }
)
TURN_ERROR_RESPONSES = documented(
    {
        409: "Another turn of the session is running (session_busy)",
        413: "The prompt is longer than MAX_PROMPT_CHARS (prompt_too_long)",
        502: "The model failed (model_error); the turn was rolled back",
        503: "The model is throttled, or the database unreachable",
        504: "The turn took longer than TURN_TIMEOUT (model_timeout)",
    }
)
