"""The Amazon Bedrock AgentCore Runtime contract: POST /invocations and GET /ping, on port 8080.

AgentCore runs the image as it is and calls these two routes; its session header names the
session, so a conversation continues across invocations as it does across /process calls.
"""

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from fastapi.sse import (
    KEEPALIVE_COMMENT,
    EventSourceResponse,
    ServerSentEvent,
    format_sse_event,
)
from pydantic import BaseModel, Field
from pydantic_core import to_json

from ..turns import Turn, TurnResult
from .dependencies import AppSettings, Runner
from .errors import (
    ANY_ROUTE_ERRORS,
    BODY_ERRORS,
    TURN_RUN_ERRORS,
    TURN_START_ERRORS,
    documented,
)
from .schemas import Prompt, SessionId, TurnRequest
from .security import Principal
from .turns import checked_request, process, process_streaming, started_turn

SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"


class InvocationRequest(BaseModel):
    """AgentCore passes the caller's payload on as it is: this service reads its `prompt`."""

    prompt: Prompt


class PingStatus(BaseModel):
    status: Literal["Healthy", "HealthyBusy"] = Field(
        description="HealthyBusy while turns run: AgentCore keeps a busy session's instance."
    )
    time_of_last_update: int = Field(description="When the status last changed (Unix seconds).")


class StatusChanges:
    """/ping's status and when it last changed: AgentCore reads an advancing time as activity."""

    def __init__(self) -> None:
        self.status = "Healthy"
        self.changed_at = int(time.time())

    def report(self, busy: bool) -> PingStatus:
        status = "HealthyBusy" if busy else "Healthy"
        if status != self.status:
            self.status, self.changed_at = status, int(time.time())
        return PingStatus(status=status, time_of_last_update=self.changed_at)


async def started_invocation(
    body: InvocationRequest,
    settings: AppSettings,
    runner: Runner,
    principal: Principal,
    request: Request,
    session_id: Annotated[
        SessionId | None,
        Header(alias=SESSION_HEADER, description="The runtime's session; omit for a new one."),
    ] = None,
) -> Turn:
    """The turn, started as /process starts it."""
    turn = await checked_request(TurnRequest(prompt=body.prompt, session_id=session_id), settings)
    return await started_turn(turn, runner, principal, request)


# As FastAPI's own event streams: a comment after this long without an event, so that no proxy
# or runtime takes a stream waiting for a slow tool for a dead one.
KEEPALIVE_SECONDS = 15.0


async def encoded(events: AsyncIterable[ServerSentEvent]) -> AsyncIterator[bytes]:
    """The events encoded as FastAPI encodes a streaming route's, keep-alive comments included:
    this route streams only when asked to, so it cannot be one."""
    iterator = aiter(events)
    next_event: asyncio.Future[ServerSentEvent] | None = None
    try:
        while True:
            next_event = next_event or asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({next_event}, timeout=KEEPALIVE_SECONDS)
            if not done:
                yield KEEPALIVE_COMMENT
                continue
            try:
                event = next_event.result()
            except StopAsyncIteration:
                return
            next_event = None
            # As FastAPI encodes its own events: NaN and the infinities, which JSON lacks, as null.
            data = to_json(jsonable_encoder(event.data), inf_nan_mode="null").decode()
            yield format_sse_event(event=event.event, data_str=data)
    finally:
        if next_event is not None:  # the client left while the event was awaited
            next_event.cancel()


def create_router() -> APIRouter:
    """The two routes, with the /ping status of one application."""
    # A body without a Content-Type is read as JSON: boto3's invoke_agent_runtime sends none
    # unless its caller names one.
    router = APIRouter(tags=["agentcore"], strict_content_type=False)
    changes = StatusChanges()

    @router.get("/ping")
    async def ping(runner: Runner) -> PingStatus:
        """AgentCore's health check. Needs no credential, like /health."""
        return changes.report(busy=runner.turns_in_flight > 0)

    @router.post(
        "/invocations",
        response_model=TurnResult,
        responses={
            200: {"content": {"text/event-stream": {}}},  # with Accept: text/event-stream
            **documented(ANY_ROUTE_ERRORS, BODY_ERRORS, TURN_START_ERRORS, TURN_RUN_ERRORS),
        },
    )
    async def invocations(
        turn: Annotated[Turn, Depends(started_invocation)],
        accept: Annotated[str, Header()] = "application/json",
    ) -> Response:
        """Run one turn of the session: its answer, or with `Accept: text/event-stream` its
        events exactly as /process-streaming sends them."""
        if "text/event-stream" in accept:
            # As FastAPI sends its own event streams: never cached, never held by a proxy.
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return EventSourceResponse(encoded(process_streaming(turn)), headers=headers)
        return JSONResponse(jsonable_encoder(await process(turn)))

    return router
