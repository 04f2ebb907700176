"""Liveness: answers without the database or the model, so orchestrators can probe it cheaply."""

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


@router.get("/health")
async def health() -> Health:
    """The process is up and serving requests."""
    return Health()
