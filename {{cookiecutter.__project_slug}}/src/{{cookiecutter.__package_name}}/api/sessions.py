"""The /sessions routes: create, list, inspect, read the history of, and delete sessions.

The handlers are plain `def`: FastAPI runs them on its thread pool, so their (synchronous)
database calls never block the event loop.
"""

from datetime import datetime
from typing import Annotated
from uuid import uuid4

from fastapi import APIRouter, Depends, Path, Query, Response
from strands.types.session import Session, SessionAgent, SessionType, encode_bytes_values

from ..session_store import MessageActivity, NotFoundError
from ..turns import message_text
from .dependencies import Repository
from .errors import ERROR_RESPONSES, ApiError
from .schemas import (
    AgentSummary,
    History,
    HistoryMessage,
    SessionCreate,
    SessionDetail,
    SessionId,
    SessionList,
    SessionSummary,
)
from .security import require_api_key

router = APIRouter(
    prefix="/sessions",
    tags=["sessions"],
    dependencies=[Depends(require_api_key)],
    responses=ERROR_RESPONSES,
)

SessionIdPath = Annotated[SessionId, Path()]


def session_not_found(session_id: str) -> ApiError:
    return ApiError(404, "session_not_found", f"There is no session {session_id!r}.")


def session_detail(repository: Repository, session: Session) -> SessionDetail:
    activity = repository.message_activity(session.session_id)
    agents = [
        agent_summary(agent, activity.get(agent.agent_id))
        for agent in repository.list_agents(session.session_id)
    ]
    return SessionDetail(
        session_id=session.session_id,
        created_at=datetime.fromisoformat(session.created_at),
        updated_at=max(
            [datetime.fromisoformat(session.updated_at), *(agent.updated_at for agent in agents)]
        ),
        message_count=sum(agent.message_count for agent in agents),
        agents=agents,
    )


def agent_summary(agent: SessionAgent, messages: MessageActivity | None) -> AgentSummary:
    updated_at = datetime.fromisoformat(agent.updated_at)
    if messages:
        # A turn that leaves the agent's state as it was writes only its messages.
        updated_at = max(updated_at, messages.last_written)
    return AgentSummary(
        agent_id=agent.agent_id,
        message_count=messages.count if messages else 0,
        created_at=datetime.fromisoformat(agent.created_at),
        updated_at=updated_at,
    )


@router.post("", status_code=201, responses={409: {"description": "The session exists"}})
def create_session(repository: Repository, body: SessionCreate | None = None) -> SessionDetail:
    """Create an empty session; a turn on an unknown session id creates it too."""
    session_id = body.session_id if body and body.session_id else str(uuid4())
    session = repository.create_session(Session(session_id, SessionType.AGENT))
    return session_detail(repository, session)


@router.get("")
def list_sessions(
    repository: Repository,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> SessionList:
    """Sessions, newest first, a page at a time."""
    page = repository.list_sessions(limit=limit, cursor=cursor)
    return SessionList(
        sessions=[
            SessionSummary(
                session_id=session.session_id,
                created_at=datetime.fromisoformat(session.created_at),
                updated_at=datetime.fromisoformat(session.updated_at),
            )
            for session in page.sessions
        ],
        next_cursor=page.next_cursor,
    )


@router.get("/{session_id}")
def get_session(session_id: SessionIdPath, repository: Repository) -> SessionDetail:
    """A session with its timestamps, its message count and its agents."""
    session = repository.read_session(session_id)
    if session is None:
        raise session_not_found(session_id)
    return session_detail(repository, session)


@router.get("/{session_id}/history")
def get_history(
    session_id: SessionIdPath,
    repository: Repository,
    agent_id: Annotated[SessionId, Query(description="Whose messages to read")] = "default",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
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
        next_offset=offset + limit if len(stored) > limit else None,
    )


@router.delete("/{session_id}", status_code=204)
def delete_session(session_id: SessionIdPath, repository: Repository) -> Response:
    """Delete the session with all its agents, messages and multi-agent state."""
    try:
        repository.delete_session(session_id)
    except NotFoundError:
        raise session_not_found(session_id) from None
    return Response(status_code=204)
