"""Property-based: requests generated from the OpenAPI document never get a 500."""

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from {{ cookiecutter.__package_name }}.api.app import create_app

from ..support.databases import new_api_key, settings_for

# The app is built at import, for schemathesis to read its schema; it runs on a database of its
# own in a temporary directory (removed at exit), with the offline echo model.
_workdir = tempfile.TemporaryDirectory(prefix="fuzz-")
_database = Path(_workdir.name) / "fuzz.db"
app = create_app(settings_for(f"sqlite:///{_database}", model_provider="echo", api_docs=True))
API_KEY = new_api_key(f"sqlite:///{_database}")
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_service_fail(case: schemathesis.Case) -> None:
    response = case.call(headers={"Authorization": f"Bearer {API_KEY}"})

    case.validate_response(response, checks=[not_a_server_error])
