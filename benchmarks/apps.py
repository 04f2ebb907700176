"""The service as uvicorn factories for the benchmarks: as shipped, and on an in-memory store.

uvicorn --factory benchmarks.apps:database_app
uvicorn --factory benchmarks.apps:memory_app
"""

from fastapi import FastAPI
from my_agent.api import app as app_module


def database_app() -> FastAPI:
    return app_module.create_app()


def memory_app() -> FastAPI:
    """The same service with its turns on MemoryTurnStore: what it costs without a database."""
    # Imported here: the database app of another commit's project (benchmarks.compare) runs this
    # module too, and need not have every name the in-memory store imports.
    from .memory_store import MemoryTurnStore

    app_module.turn_store_for = lambda engine, lease_seconds: MemoryTurnStore()
    return app_module.create_app()
