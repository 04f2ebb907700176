"""What routes take from the application: its store, its turn runner, its settings."""

from typing import Annotated

from fastapi import Depends, Request

from ..config import Settings
from ..session_store import SqlSessionRepository
from ..turns import TurnRunner


def get_repository(request: Request) -> SqlSessionRepository:
    return request.app.state.repository


def get_runner(request: Request) -> TurnRunner:
    return request.app.state.runner


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


Repository = Annotated[SqlSessionRepository, Depends(get_repository)]
Runner = Annotated[TurnRunner, Depends(get_runner)]
AppSettings = Annotated[Settings, Depends(get_app_settings)]
