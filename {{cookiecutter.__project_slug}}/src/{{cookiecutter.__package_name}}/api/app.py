"""The application factory: settings, engine, session store, locks, turn runner and routes."""

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from strands.models import Model

from ..agent import build_model
from ..config import Settings, get_settings
from ..database import create_engine, is_sqlite, upgrade_schema
from ..session_store import SqlSessionRepository
from ..session_store.locks import session_locks
from ..turns import TurnRunner
from . import health, sessions, turns
from .disconnects import DroppedStreamMiddleware
from .errors import install_error_handlers
from .limits import BodySizeLimitMiddleware


def create_app(
    settings: Settings | None = None, model_factory: Callable[[], Model] | None = None
) -> FastAPI:
    """Build the application. Tests pass their own settings and a scripted model."""
    config = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One engine, so one connection pool, per process: every request borrows from it.
        engine = create_engine(config)
        if is_sqlite(engine):
            # The embedded database migrates itself; PostgreSQL is migrated once per deployment
            # (make migrate, or the compose migrate service), not by every replica at start-up.
            await run_in_threadpool(upgrade_schema, engine)
        repository = SqlSessionRepository(engine)
        locks, lock_engine = session_locks(config, engine)
        model = model_factory or partial(build_model, config)
        runner = TurnRunner(config, repository, locks, model)
        app.state.settings, app.state.engine = config, engine
        app.state.repository, app.state.runner = repository, runner
        # What start-up created (modules, the app, the SDK) lives as long as the process: moved
        # out of the garbage collector's way, it is not scanned again by every full collection,
        # which otherwise doubles the time to restore a long conversation.
        gc.freeze()
        try:
            yield
        finally:
            await run_in_threadpool(runner.shutdown)
            engine.dispose()
            if lock_engine is not None:
                lock_engine.dispose()

    app = FastAPI(
        title={{ cookiecutter.project_name | quoted }},
        description={{ cookiecutter.description | quoted }},
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(DroppedStreamMiddleware)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(turns.router)
    app.include_router(sessions.router)
    return app
