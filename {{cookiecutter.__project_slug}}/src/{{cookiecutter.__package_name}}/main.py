"""The ASGI application: `uvicorn {{ cookiecutter.__package_name }}.main:app`.

Settings are read here, at import: a missing or invalid setting stops the server before it starts.
"""

from .api.app import create_app

app = create_app()
