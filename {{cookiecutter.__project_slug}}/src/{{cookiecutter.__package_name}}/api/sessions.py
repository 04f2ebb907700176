"""The /sessions routes: create, list, inspect, read the history of, and delete sessions, and
cancel their running turns.

The handlers are plain `def`: FastAPI runs them on its thread pool, so their (synchronous)
database calls never block the event loop. Cancelling runs on the event loop, where the turns are.
"""

from datetime import datetime
from typing import Annotated
from urllib.parse import quote
from uuid import uuid4

from fastapi import APIRouter, Depends, Path, Query, Response
from starlette.concurrency import run_in_threadpool
from strands.types.session import Session, SessionType, encode_bytes_values

from ..principal_limits import too_many_sessions
from ..session_store import NotFoundError
from ..turns import message_text
from .cursors import sign_cursor, verify_cursor
from .dependencies import AppSettings, CursorSecret, Repository, Runner
from .errors import (
    ANY_ROUTE_ERRORS,
    BODY_ERRORS,
    SESSION_ERRORS,
    ApiError,
    documented,
    limit_error,
)
from .schemas import (
    MAX_OFFSET,
    AgentSummary,
    Cancellation,
    History,
    HistoryMessage,
    SessionCreate,
    SessionDetail,
    SessionId,
    SessionList,
    SessionSummary,
)
from .security import Principal, authenticate

router = APIRouter(
    prefix="/sessions",
    tags=["sessions"],
    dependencies=[Depends(authenticate)],
    responses=documented(ANY_ROUTE_ERRORS),
)

SessionIdPath = Annotated[SessionId, Path()]


def session_not_found(session_id: str) -> ApiError:
    return ApiError(404, "session_not_found", f"There is no session {session_id!r}.")


def session_detail(repository: Repository, session: Session) -> SessionDetail:
    counts = repository.message_counts(session.session_id)
    agents = [
        AgentSummary(
            agent_id=agent.agent_id,
            message_count=counts.get(agent.agent_id, 0),
            created_at=datetime.fromisoformat(agent.created_at),
            updated_at=datetime.fromisoformat(agent.updated_at),
        )
        for agent in repository.list_agents(session.session_id)
    ]
    return SessionDetail(
        session_id=session.session_id,
        created_at=datetime.fromisoformat(session.created_at),
        updated_at=datetime.fromisoformat(session.updated_at),
        message_count=sum(counts.values()),
        agents=agents,
    )


@router.post(
    "",
    status_code=201,
    responses={
        201: {
            "description": "The session, created",
            "headers": {
                "Location": {
                    "description": "The session's URL, relative to /sessions",
                    "schema": {"type": "string"},
                }
            },
        },
        **documented(
            ANY_ROUTE_ERRORS,
            BODY_ERRORS,
            {
                409: "The session exists (already_exists)",
                429: "The caller keeps MAX_SESSIONS_PER_PRINCIPAL sessions (too_many_sessions)",
            },
        ),
    },
)
def create_session(
    repository: Repository,
    settings: AppSettings,
    response: Response,
    body: SessionCreate | None = None,
) -> SessionDetail:
    """Create an empty session; a turn on an unknown session id creates it too."""
    session_id = body.session_id if body and body.session_id else str(uuid4())
    # Counted, then created: creations at the same moment may pass the limit by as many as run
    # at once, as turns that create sessions may (README, "Operating"). A session that exists
    # is 409 already_exists, at the limit too.
    limit = settings.max_sessions_per_principal
    if repository.count_sessions() >= limit and repository.read_session(session_id) is None:
        raise limit_error(too_many_sessions(limit))
    session = repository.create_session(Session(session_id, SessionType.AGENT))
    # Relative to /sessions, so that a proxy's path prefix stays in it.
    response.headers["Location"] = f"sessions/{quote(session_id, safe='')}"
    return session_detail(repository, session)


@router.get(
    "",
    responses=documented(
        ANY_ROUTE_ERRORS, {422: "a cursor not from this service (invalid_cursor)"}
    ),
)
def list_sessions(
    repository: Repository,
    cursor_secret: CursorSecret,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> SessionList:
    """Sessions, newest first, a page at a time."""
    if cursor is not None:
        cursor = verify_cursor(cursor_secret, repository.principal, cursor)
    page = repository.list_sessions(limit=limit, cursor=cursor)
    next_cursor = None
    if page.next_cursor:
        next_cursor = sign_cursor(cursor_secret, repository.principal, page.next_cursor)
    return SessionList(
        sessions=[
            SessionSummary(
                session_id=session.session_id,
                created_at=datetime.fromisoformat(session.created_at),
                updated_at=datetime.fromisoformat(session.updated_at),
            )
            for session in page.sessions
        ],
        next_cursor=next_cursor,
    )


@router.get("/{session_id}", responses=documented(SESSION_ERRORS))
def get_session(session_id: SessionIdPath, repository: Repository) -> SessionDetail:
    """A session with its timestamps, its message count and its agents."""
    session = repository.read_session(session_id)
    if session is None:
        raise session_not_found(session_id)
    return session_detail(repository, session)


@router.get("/{session_id}/history", responses=documented(SESSION_ERRORS))
def get_history(
    session_id: SessionIdPath,
    repository: Repository,
    agent_id: Annotated[SessionId, Query(description="Whose messages to read")] = "default",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> History:
    """The messages of one agent of the session, oldest first, a page at a time."""
    if repository.read_session(session_id) is None:
        raise session_not_found(session_id)
    stored = repository.list_messages(session_id, agent_id, limit=limit + 1, offset=offset)
    messages = [
        HistoryMessage(
            message_id=record.message_id,
            role=message["role"],
            content=encode_bytes_values(message["content"]),
            text=message_text(message),
            created_at=datetime.fromisoformat(record.created_at),
        )
        for record in stored[:limit]
        for message in [record.to_message()]
    ]
    return History(
        session_id=session_id,
        agent_id=agent_id,
        messages=messages,
        # The id of the first message not sent: ids written through the SDK may skip one.
        next_offset=stored[limit].message_id if len(stored) > limit else None,
    )


@router.delete(
    "/{session_id}",
    status_code=204,
    responses=documented(SESSION_ERRORS, {409: "A turn of the session is running (session_busy)"}),
)
def delete_session(session_id: SessionIdPath, repository: Repository) -> Response:
    """Delete the session with all its agents, messages and multi-agent state, unless a turn of
    it is running."""
    try:
        repository.delete_session(session_id)
    except NotFoundError:
        raise session_not_found(session_id) from None
    return Response(status_code=204)


@router.post("/{session_id}/cancel", responses=documented(SESSION_ERRORS))
async def cancel_turn(
    session_id: SessionIdPath, runner: Runner, principal: Principal, repository: Repository
) -> Cancellation:
    """Stop the session's running turn, on whichever replica runs it: nothing of it is stored, its
    client gets `turn_cancelled`, and the session is free for the next turn at once. As a front
    end's Stop button needs: the model is not left answering, and the next prompt does not wait
    for it."""
    if await runner.cancel(principal, session_id):
        return Cancellation(session_id=session_id, cancelled=True)
    if await run_in_threadpool(repository.read_session, session_id) is None:
        raise session_not_found(session_id)
    return Cancellation(session_id=session_id, cancelled=False)
