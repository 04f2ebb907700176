"""The ASGI application: `uvicorn {{ cookiecutter.__package_name }}.main:app`."""

from fastapi import FastAPI

from .api import health


def create_app() -> FastAPI:
    """Build the application; tests build their own instances."""
    app = FastAPI(title={{ cookiecutter.project_name | quoted }}, version="0.1.0")
    app.include_router(health.router)
    return app


app = create_app()
