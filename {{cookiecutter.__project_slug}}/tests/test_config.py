import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import uvicorn
from dotenv import dotenv_values

from {{ cookiecutter.__package_name }}.cli import main as command_line
from {{ cookiecutter.__package_name }}.config import (
    Settings,
    describe,
    get_settings,
    settings_or_exit,
)

from .support.server import PROJECT_DIR


def test_defaults_come_from_the_template_answers() -> None:
    settings = get_settings()

    assert settings.model_provider == "{{ cookiecutter.model_provider }}"
    assert settings.model_id is None


def test_environment_overrides_dotenv(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("MODEL_PROVIDER=ollama\nMODEL_ID=from-dotenv\n", encoding="utf-8")
    monkeypatch.setenv("MODEL_ID", "from-environment")

    settings = Settings()

    assert settings.model_provider == "ollama"
    assert settings.model_id == "from-environment"


def test_unknown_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_PROVIDER", "nonsense")

    with pytest.raises(ValueError, match="model_provider"):
        Settings()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///:memory:",
        "sqlite://",
        "sqlite+aiosqlite://",
        "sqlite:///file::memory:?uri=true",
        "sqlite:///file:agent?mode=memory&cache=shared&uri=true",
    ],
)
def test_an_in_memory_sqlite_database_is_refused(url: str) -> None:
    # Each connection of the pools would see a database of its own, empty.
    with pytest.raises(ValueError, match="name a file"):
        Settings(database_url=url)


def refusal() -> str:
    """The one line the service exits with, reading the settings of this environment."""
    with pytest.raises(SystemExit) as exited:
        settings_or_exit(lambda: Settings(_env_file=None))
    return str(exited.value)


@pytest.mark.parametrize(
    "url",
    [
        "",  # a secret or a compose variable left empty
        "localhost:5432/agent",
        "postgresql://agent@db:port/agent",
        "mysql://agent@db/agent",
        "sqllite:///agent.db",
    ],
)
def test_a_database_url_that_no_installed_driver_reads_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)

    line = refusal()

    assert line.startswith("Invalid settings: DATABASE_URL: ")
    assert line.endswith("use postgresql://user:password@host:5432/db or sqlite:///path/to/file.db")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SESSION_LEASE_SECONDS", "inf"),  # would overflow the clock a lease is added to
        ("DB_POOL_TIMEOUT", "inf"),  # a full pool would fail every request at once
        ("DB_STATEMENT_TIMEOUT_MS", "3000000000"),  # PostgreSQL would refuse every connection
        ("ALLOWED_HOSTS", "[]"),  # every request would be refused
        ("JWT_ALGORITHMS", "[]"),
        ("JWT_PRINCIPAL_CLAIM", ""),
        ("ALLOWED_HOSTS", '["api.example.com:443"]'),  # matches no Host: ports are not compared
        ("ALLOWED_HOSTS", '["*example.com"]'),  # Starlette's check would not start
        ("JWT_JWKS_URL", "id.example.com/jwks.json"),  # every request would get 503
        ("ALLOWED_HOSTS", '["::1"]'),  # a Host header names it in brackets
    ],
)
def test_a_setting_that_would_break_every_request_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    assert refusal().startswith(f"Invalid settings: {name}: ")


def test_auth_mode_follows_the_template_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTH_MODE")
{%- if cookiecutter.auth_mode == "jwt" %}
    monkeypatch.setenv("JWT_JWKS_URL", "https://id.example/jwks.json")
    monkeypatch.setenv("JWT_ISSUER", "https://id.example/")
    monkeypatch.setenv("JWT_AUDIENCE", "{{ cookiecutter.__project_slug }}")
{%- endif %}

    assert Settings(_env_file=None).auth_mode == "{{ cookiecutter.auth_mode }}"


def test_jwt_mode_needs_its_identity_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_MODE", "jwt")
    monkeypatch.setenv("JWT_ISSUER", "https://id.example/")

    assert refusal() == (
        "Invalid settings: AUTH_MODE=jwt needs JWT_JWKS_URL, JWT_AUDIENCE or JWT_CLIENT_IDS"
    )


def test_an_empty_jwks_url_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blanked line of .env: nothing under API keys; under AUTH_MODE=jwt, a missing setting."""
    monkeypatch.setenv("JWT_JWKS_URL", "")
    assert Settings(_env_file=None).jwt_jwks_url is None

    monkeypatch.setenv("AUTH_MODE", "jwt")
    monkeypatch.setenv("JWT_ISSUER", "https://id.example/")
    monkeypatch.setenv("JWT_AUDIENCE", "my-service")
    assert refusal() == "Invalid settings: AUTH_MODE=jwt needs JWT_JWKS_URL"


@pytest.mark.parametrize(
    ("issuer", "named"),
    [
        ("https://your-identity-provider.example/", "JWT_JWKS_URL and JWT_ISSUER name"),
        ("https://id.example/", "JWT_JWKS_URL names"),
    ],
)
def test_jwt_mode_refuses_the_placeholder_identity_provider(
    monkeypatch: pytest.MonkeyPatch, issuer: str, named: str
) -> None:
    """As .env.example and the Kubernetes settings name it until the owner sets theirs."""
    monkeypatch.setenv("AUTH_MODE", "jwt")
    monkeypatch.setenv("JWT_JWKS_URL", "https://your-identity-provider.example/jwks.json")
    monkeypatch.setenv("JWT_ISSUER", issuer)
    monkeypatch.setenv("JWT_AUDIENCE", "my-service")

    assert refusal() == (
        f"Invalid settings: {named} the placeholder identity provider "
        "your-identity-provider.example: set your own"
    )


def test_a_list_setting_that_is_not_json_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALLOWED_HOSTS", "agent.example.com")

    line = refusal()

    assert line.startswith("Invalid settings: ") and '"allowed_hosts"' in line
    assert line.endswith('(a list setting is JSON, as in ALLOWED_HOSTS=["api.example.com"])')


PLACEHOLDERS = {
    "DATABASE_URL": "postgresql://agent:change-me-postgres-password@db:5432/agent",
    "JWT_AUDIENCE": "change-me-audience",
    "CURSOR_SECRET": "change-me-cursor-secret",
}


@pytest.mark.parametrize(("name", "value"), PLACEHOLDERS.items(), ids=PLACEHOLDERS.keys())
def test_placeholder_secrets_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValueError, match=f"{name.lower()}[^_]*placeholder"):
        Settings(_env_file=None)


@pytest.mark.parametrize("secret", ["", "short", "x" * 31])
def test_a_cursor_secret_anyone_could_guess_is_refused(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("CURSOR_SECRET", secret)

    with pytest.raises(ValueError, match="at least 32 characters: make one with") as refused:
        Settings(_env_file=None)
    assert describe(refused.value).startswith("CURSOR_SECRET: must be at least 32")


def test_a_real_password_in_database_url_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://agent:s3cret-change-me@db:5432/agent")

    assert "s3cret-change-me" in Settings(_env_file=None).database_url


APP = "{{ cookiecutter.__package_name }}.main:app"
COMMAND_LINE = str(Path(sys.executable).with_name("{{ cookiecutter.__project_slug }}"))


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "uvicorn", APP, "--port", "0"],
        [COMMAND_LINE, "serve", "--port", "0"],
        [COMMAND_LINE, "list-api-keys"],
    ],
    ids=["uvicorn", "serve", "list-api-keys"],
)
def test_the_server_refuses_to_start_on_a_placeholder_with_one_line(command: list[str]) -> None:
    environment = {**os.environ, "DATABASE_URL": PLACEHOLDERS["DATABASE_URL"]}

    # The timeout only keeps a server that did start from hanging the test.
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Invalid settings: DATABASE_URL: its password is still the .env.example placeholder; "
        "set the real one"
    ]


@pytest.mark.usefixtures("uvicorn_never_runs")
@pytest.mark.parametrize("port", ["99999", "-1", "http", "²", "٣"])
def test_serve_refuses_a_port_that_is_none_in_one_line(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """uvicorn would take 99999, say it listens there, and listen on another port."""
    with pytest.raises(SystemExit) as exited:
        command_line(["serve", "--port", port])

    assert exited.value.code == 2
    assert f"argument --port: {port!r} is not a number from 0 to 65535" in capsys.readouterr().err


@pytest.mark.usefixtures("uvicorn_never_runs")
@pytest.mark.parametrize("turns", ["3000", "1999"])
def test_serve_refuses_a_connection_limit_that_leaves_no_room_for_its_turns(
    monkeypatch: pytest.MonkeyPatch, turns: str
) -> None:
    """Past --limit-concurrency uvicorn answers a plain 503 before the app could answer 429; it
    serves one request fewer than the limit, the connection it answers on counted."""
    monkeypatch.setenv("MAX_CONCURRENT_TURNS", turns)

    with pytest.raises(SystemExit, match="--limit-concurrency 2000 leaves no room above"):
        command_line(["serve"])


def test_serve_runs_one_process_that_stops_when_the_app_cannot_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One process whatever WEB_CONCURRENCY says (the limits, pools and metrics are a process's
    own); and an app that fails to start stops it, where lifespan "auto" took the failure for an
    app without lifespan and served every request a 500."""
    served: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options))
    monkeypatch.setenv("WEB_CONCURRENCY", "4")

    command_line(["serve"])
    config = uvicorn.Config(APP, **served)

    assert config.workers == 1
    assert config.lifespan == "on"


# `serve --reload` as `make dev` runs it: a refusal in the reloaded process alone would leave
# uvicorn's watcher running.
SERVERS = {
    "uvicorn": [sys.executable, "-m", "uvicorn", APP, "--port", "0"],
    "make-dev": [COMMAND_LINE, "serve", "--port", "0", "--reload"],
}


@pytest.mark.parametrize("command", SERVERS.values(), ids=list(SERVERS))
def test_the_server_refuses_to_start_without_its_model_providers_client(
    command: list[str],
) -> None:
    provider = "{{ 'openai' if cookiecutter.model_provider == 'ollama' else 'ollama' }}"
    environment = {**os.environ, "MODEL_PROVIDER": provider}

    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"MODEL_PROVIDER={provider} needs the {provider} package: "
        f"uv add 'strands-agents[{provider}]'"
    ]

{%- if cookiecutter.model_provider == "openai" %}


@pytest.mark.parametrize("command", SERVERS.values(), ids=list(SERVERS))
def test_the_server_refuses_to_start_without_an_openai_key(command: list[str]) -> None:
    """OpenAI's client is built at start-up, and refuses to be without a key."""
    environment = {name: value for name, value in os.environ.items() if name != "OPENAI_API_KEY"}
    environment["MODEL_PROVIDER"] = "openai"

    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "MODEL_PROVIDER=openai needs OPENAI_API_KEY in the environment "
        "(make dev and docker compose load .env into it)"
    ]
{%- endif %}


def test_every_setting_of_env_example_reaches_the_service_as_it_reads_env(tmp_path: Path) -> None:
    """`make dev` has uv put .env in the environment, where it takes precedence over what the
    service reads of .env itself: uncommented, each line must come out of uv's reading (a
    shell's) as the service's (python-dotenv's). A JSON list unquoted lost its quotes there, or
    stopped uv reading the file."""
    example = (PROJECT_DIR / ".env.example").read_text(encoding="utf-8")
    settings = [
        line.removeprefix("# ")
        for line in example.splitlines()
        if re.match(r"(# )?[A-Z][A-Z0-9_]*=", line)
    ]
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(settings) + "\n", encoding="utf-8")
    expected = dotenv_values(env_file)
    show = "import json, os; print(json.dumps(dict(os.environ)))"
    command = ["uv", "run", "--no-sync", "--env-file", str(env_file), "python", "-c", show]
    # uv sets none that the environment has already: the tests' own settings left out.
    environment = {name: value for name, value in os.environ.items() if name not in expected}

    shown = subprocess.run(
        command, cwd=PROJECT_DIR, env=environment, capture_output=True, text=True, check=True
    )

    assert "warning" not in shown.stderr, shown.stderr
    passed_on = json.loads(shown.stdout)
    for name, value in expected.items():
        assert passed_on.get(name) == value, name
