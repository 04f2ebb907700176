"""The ASGI application: `uvicorn {{ cookiecutter.__package_name }}.main:app`.

Settings are read here, at import: a missing or invalid setting stops the server before it starts,
with one line that says what to set.
"""

from pydantic import ValidationError

from .api.app import create_app
from .config import describe, get_settings
from .logs import configure_logging

try:
    settings = get_settings()
except ValidationError as error:
    raise SystemExit(f"Invalid settings: {describe(error)}") from None

# Here too, not only in `serve`: `uvicorn {{ cookiecutter.__package_name }}.main:app` then logs
# in the service's format, its own loggers included.
configure_logging(settings)
app = create_app(settings)
