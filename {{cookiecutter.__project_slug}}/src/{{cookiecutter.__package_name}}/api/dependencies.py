"""What routes take from the application: its store (for the caller), its turn runner, its
settings.

These, like every dependency that neither blocks nor waits (checked_request), are `async def`:
FastAPI runs a plain `def` dependency in its thread pool, a thread hop for each of them on every
request.
"""

from typing import Annotated

from fastapi import Depends, Request

from ..config import Settings
from ..session_store import SqlSessionRepository
from ..turns import TurnRunner
from .security import Principal


async def get_repository(request: Request, principal: Principal) -> SqlSessionRepository:
    """The session store, seeing only the caller's sessions."""
    return request.app.state.repository.for_principal(principal)


async def get_runner(request: Request) -> TurnRunner:
    return request.app.state.runner


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_cursor_secret(request: Request) -> bytes:
    return request.app.state.cursor_secret


Repository = Annotated[SqlSessionRepository, Depends(get_repository)]
Runner = Annotated[TurnRunner, Depends(get_runner)]
AppSettings = Annotated[Settings, Depends(get_app_settings)]
CursorSecret = Annotated[bytes, Depends(get_cursor_secret)]
