"""The ASGI application: `uvicorn {{ cookiecutter.__package_name }}.main:app`.

Settings are read here, at import: a missing or invalid setting, or a model provider whose client
is not installed, stops the server before it starts, with one line that says what to do.
"""

from .agent import check_model_provider
from .api.app import create_app
from .config import get_settings, settings_or_exit
from .logs import configure_logging

settings = settings_or_exit(get_settings)
check_model_provider(settings)

# Here too, not only in `serve`: `uvicorn {{ cookiecutter.__package_name }}.main:app` then logs
# in the service's format, its own loggers included.
configure_logging(settings)
app = create_app(settings)
