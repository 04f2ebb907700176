"""The ASGI application: `uvicorn {{ cookiecutter.__package_name }}.main:app`.

Settings are read here, at import: a missing or invalid setting stops the server before it starts,
with one line that says what to set.
"""

from pydantic import ValidationError

from .api.app import create_app
from .config import describe, get_settings

try:
    settings = get_settings()
except ValidationError as error:
    raise SystemExit(f"Invalid settings: {describe(error)}") from None

app = create_app(settings)
