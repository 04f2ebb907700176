"""POST /process and POST /process-streaming: one agent turn, answered whole or streamed as SSE."""

from collections.abc import AsyncIterable
from typing import Annotated
from uuid import uuid4

from fastapi import APIRouter, Depends, Header, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from ..turns import ModelRetry, TextDelta, ToolResult, ToolUse, Turn, TurnEvent, TurnResult
from .dependencies import AppSettings, Runner
from .errors import (
    ANY_ROUTE_ERRORS,
    BODY_ERRORS,
    TURN_RUN_ERRORS,
    TURN_START_ERRORS,
    ApiError,
    documented,
    turn_error,
)
from .schemas import IdempotencyKey, TurnRequest
from .security import Principal, authenticate

router = APIRouter(tags=["turns"], dependencies=[Depends(authenticate)])


async def checked_request(body: TurnRequest, settings: AppSettings) -> TurnRequest:
    if len(body.prompt) > settings.max_prompt_chars:
        raise ApiError(
            413,
            "prompt_too_long",
            f"The prompt has {len(body.prompt)} characters; the limit is "
            f"{settings.max_prompt_chars} (MAX_PROMPT_CHARS).",
        )
    return body


async def started_turn(
    body: Annotated[TurnRequest, Depends(checked_request)],
    runner: Runner,
    principal: Principal,
    request: Request,
    turn_key: Annotated[
        IdempotencyKey | None,
        Header(
            alias="Idempotency-Key",
            description="Your key for the turn, to send it again safely: a turn whose key is "
            "stored in the session is refused (turn_already_stored). Needs `session_id`.",
        ),
    ] = None,
) -> Turn:
    """Start the turn before the response begins, so that failing to start gets a real status."""
    if turn_key is not None and body.session_id is None:
        message = "An Idempotency-Key needs a session_id: a new session has no turn to repeat."
        raise ApiError(422, "invalid_request", message)
    session_id = body.session_id or str(uuid4())
    try:
        return await runner.start(
            session_id, principal, body.prompt, request.is_disconnected, turn_key
        )
    except Exception as error:
        failure = turn_error(error)
        if failure.code == "internal_error":
            raise  # not a turn's known failure: logged, once, by UnexpectedErrorMiddleware
        raise failure from error


# What the routes that take an Idempotency-Key answer for it.
KEYED_TURN_ERRORS = {
    409: "a turn with the same Idempotency-Key is stored (turn_already_stored)",
    422: "the Idempotency-Key is another turn's (idempotency_key_reused), or sent without a "
    "session_id",
}


@router.post(
    "/process",
    responses=documented(
        ANY_ROUTE_ERRORS, BODY_ERRORS, TURN_START_ERRORS, KEYED_TURN_ERRORS, TURN_RUN_ERRORS
    ),
)
async def process(turn: Annotated[Turn, Depends(started_turn)]) -> TurnResult:
    """Run one turn of the session and answer with the agent's reply."""
    try:
        return await turn.result()
    except Exception as error:
        raise turn_error(error) from error


def server_sent_event(event: TurnEvent) -> ServerSentEvent:
    # Only the fields chosen here go on the wire, never the SDK's event objects.
    if isinstance(event, TextDelta):
        return ServerSentEvent(event="text", data={"text": event.text})
    if isinstance(event, ToolUse):
        data = {"id": event.id, "name": event.name, "input": event.input}
        return ServerSentEvent(event="tool_use", data=data)
    if isinstance(event, ToolResult):
        return ServerSentEvent(event="tool_result", data={"id": event.id, "status": event.status})
    if isinstance(event, ModelRetry):
        return ServerSentEvent(event="retry", data={"delay": event.delay})
    return ServerSentEvent(event="done", data=event)


@router.post(
    "/process-streaming",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "Events: `session` (first), `text`, `tool_use`, `tool_result`, "
            "`retry` (the model is called again: the `text` since the last `tool_result` is "
            "withdrawn), then `done` (last) or `error`."
        },
        **documented(
            ANY_ROUTE_ERRORS, BODY_ERRORS, TURN_START_ERRORS, KEYED_TURN_ERRORS, streamed=True
        ),
    },
)
async def process_streaming(
    turn: Annotated[Turn, Depends(started_turn)],
) -> AsyncIterable[ServerSentEvent]:
    """Run one turn of the session, streaming its events as they happen."""
    yield ServerSentEvent(event="session", data={"session_id": turn.session_id})
    try:
        async for event in turn.events():
            yield server_sent_event(event)
    except Exception as error:
        failure = turn_error(error)
        yield ServerSentEvent(
            event="error", data={"code": failure.code, "message": failure.message}
        )
