"""The ASGI application: `uvicorn {{ cookiecutter.__package_name }}.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from .api import health
from .config import Settings, get_settings
from .database import create_engine, is_sqlite, upgrade_schema
from .session_store import SqlSessionRepository


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; tests build their own instances with their own settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One engine, so one connection pool, per process: every request borrows from it.
        engine = create_engine(settings or get_settings())
        if is_sqlite(engine):
            # The embedded database migrates itself; PostgreSQL is migrated once per deployment
            # (make migrate, or the compose migrate service), not by every replica at start-up.
            await run_in_threadpool(upgrade_schema, engine)
        app.state.repository = SqlSessionRepository(engine)
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(title={{ cookiecutter.project_name | quoted }}, version="0.1.0", lifespan=lifespan)
    app.include_router(health.router)
    return app


app = create_app()
