"""Service settings, read from environment variables and from `.env`."""

from collections.abc import Callable
from functools import lru_cache
from ipaddress import IPv6Address
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# echo is an offline model for local development, demos and load tests: it needs no credentials.
ModelProvider = Literal["bedrock", "anthropic", "openai", "ollama", "litellm", "echo"]
AuthMode = Literal["api_keys", "jwt", "none"]

# The embedded default: a SQLite file, so the service runs on a laptop with nothing else installed.
DEFAULT_DATABASE_URL = "sqlite:///.data/{{ cookiecutter.__package_name }}.db"

# .env.example marks each secret it cannot know with this prefix: a service started with one would
# use a password or key that anyone who has seen the template knows.
PLACEHOLDER_PREFIX = "change-me"
# The identity provider that .env.example and the Kubernetes settings name until one is set.
PLACEHOLDER_IDENTITY_PROVIDER = "your-identity-provider.example"
# What a refused SQLite URL is told to be instead.
NAME_A_FILE = "name a file: sqlite:///agent.db"
# How to make a secret, as the refusals of a placeholder or a short one say.
MAKE_A_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
# What `secrets.token_urlsafe(32)` makes is 43 characters.
MIN_CURSOR_SECRET_LENGTH = 32
# The drivers installed: psycopg 3 for PostgreSQL, Python's own sqlite3.
DATABASE_DRIVERS = ("postgresql+psycopg", "sqlite", "sqlite+pysqlite")
DATABASE_URL_FORMS = "postgresql://user:password@host:5432/db or sqlite:///path/to/file.db"
# The largest value of a PostgreSQL or SQLite setting in milliseconds (a 32-bit integer).
MAX_MILLISECONDS = 2**31 - 1


def is_bracketed_ipv6(host: str) -> bool:
    """Whether `host` is an IPv6 address as a Host header names one: "[::1]"."""
    if not (host.startswith("[") and host.endswith("]")):
        return False
    try:
        IPv6Address(host[1:-1])
    except ValueError:
        return False
    return True


class EngineSettings(BaseSettings):
    """What the database engines are made of: all that migrations and the command line's API key
    commands read. Every setting can be given as an environment variable of the same name in
    upper case."""

    # No setting is infinite: a time of `inf` would overflow wherever it is added to a clock.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", allow_inf_nan=False
    )

    # postgresql+psycopg://user:password@host:5432/db, or sqlite:///path/to/file.db
    database_url: str = DEFAULT_DATABASE_URL
    # The connections a process keeps: DB_POOL_SIZE for its turns, which hold one only while
    # they begin and while they save (never while a model runs), for reading API keys and for
    # /ready; and DB_SESSIONS_POOL_SIZE for the /sessions routes.
    db_pool_size: int = Field(default=20, ge=2)
    db_sessions_pool_size: int = Field(default=5, ge=1)
    # Seconds a request waits for a pooled connection before it fails.
    db_pool_timeout: float = Field(default=10, gt=0)
    # PostgreSQL: seconds to establish a connection, and the longest a statement may run.
    db_connect_timeout: int = Field(default=5, ge=1)
    db_statement_timeout_ms: int = Field(default=10_000, ge=0, le=MAX_MILLISECONDS)
    # SQLite: how long a writer waits for another writer's lock.
    sqlite_busy_timeout_ms: int = Field(default=5_000, ge=0, le=MAX_MILLISECONDS)

    # Log each turn's prompt (at INFO), and let libraries log at DEBUG, and show a failed
    # statement's parameters: for debugging only, prompts are the users' words.
    log_prompts: bool = False

    @field_validator("database_url")
    @classmethod
    def use_psycopg_driver(cls, url: str) -> str:
        """Accept the postgres:// and postgresql:// URLs that hosting providers hand out; refuse
        what no installed driver reads, and an in-memory SQLite database, which each connection
        would see empty."""
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                url = "postgresql+psycopg://" + url.removeprefix(prefix)
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):
            message = f"is not a database URL: use {DATABASE_URL_FORMS}"
            raise PydanticCustomError("database_url", message) from None
        if parsed.get_backend_name() == "sqlite":
            if parsed.database in (None, "", ":memory:"):
                message = "an in-memory SQLite database is not kept"
                raise PydanticCustomError("sqlite_in_memory", f"{message}; {NAME_A_FILE}")
            if "uri" in parsed.query:  # which may name an in-memory database too
                message = "SQLite URI filenames are not supported"
                raise PydanticCustomError("sqlite_uri", f"{message}; {NAME_A_FILE}")
        if parsed.drivername not in DATABASE_DRIVERS:
            message = f"{parsed.drivername} is not supported: use {DATABASE_URL_FORMS}"
            raise PydanticCustomError("database_url", message)
        return url

    @field_validator("*")
    @classmethod
    def refuse_placeholders(cls, value: object, info: ValidationInfo) -> object:
        """Refuse a secret still set to its .env.example placeholder (change-me-...)."""
        if info.field_name == "database_url":
            if (urlsplit(value).password or "").startswith(PLACEHOLDER_PREFIX):
                message = "its password is still the .env.example placeholder; set the real one"
                raise PydanticCustomError("placeholder", message)
            return value
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and text.startswith(PLACEHOLDER_PREFIX):
            message = f"is still the .env.example placeholder; set a real secret: {MAKE_A_SECRET}"
            raise PydanticCustomError("placeholder", message)
        return value


class Settings(EngineSettings):
    """The service's settings: the engines', and all the rest."""

    # The model. Provider credentials are read by each provider's own client from its usual
    # environment variables (AWS_*, ANTHROPIC_API_KEY, OPENAI_API_KEY, ...).
    model_provider: ModelProvider = "{{ cookiecutter.model_provider }}"
    # None means the provider's default model (see agent.py).
    model_id: str | None = None
    model_max_tokens: int = Field(default=4096, ge=1)
    ollama_host: str = "http://127.0.0.1:11434"
    # A model call that the provider refuses for its load is tried this many times, waiting 2,
    # 4, 8 ... seconds (each try after the provider's client's own retries, if it makes any);
    # then the client gets 503 model_throttled.
    model_max_attempts: int = Field(default=4, ge=1)

    # The agent.
    system_prompt: str = "You are a helpful assistant. Answer concisely."
    # How many messages the agent sends to the model; older ones stay stored but unsent.
    conversation_window: int = Field(default=40, ge=2)
    max_prompt_chars: int = Field(default=32_000, ge=1)
    # The echo model waits this many seconds before each word it streams, so that a load test
    # of the real service behaves like a remote model (see `make loadtest`).
    echo_word_delay: float = Field(default=0, ge=0)

    # Turns one process holds at once: running, or waiting for their session's running turn.
    # More get 429 at once. A turn waiting for its model holds memory, but no thread and no
    # connection: the limit is a memory budget (see "Operating" in the README).
    max_concurrent_turns: int = Field(default=1000, ge=1)
    # What one principal may take of a process (429 too_many_turns past it): turns at once, and
    # turns started in any minute. Per process: N replicas allow N times as much.
    max_turns_per_principal: int = Field(default=20, ge=1)
    turns_per_minute: int = Field(default=120, ge=1)
    # Sessions one principal may keep, across replicas (429 too_many_sessions past it).
    max_sessions_per_principal: int = Field(default=10_000, ge=1)
    # Seconds a turn waits for another turn of its session to finish before 409 session_busy.
    session_wait_timeout: float = Field(default=10, ge=0)
    # Seconds a turn's claim on its session lasts unless its replica renews it (every third of
    # that): after a replica crashes, its sessions are free again within this time.
    session_lease_seconds: float = Field(default=3, ge=1)
    # Seconds a whole turn may take, model calls and tools included, before 504 model_timeout.
    turn_timeout: float = Field(default=300, gt=0)
    # Larger request bodies get 413.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Seconds a client may take to send a request's whole body, then 408 request_timeout: a slow
    # client holds no route and no turn.
    request_body_timeout: float = Field(default=30, gt=0)
    # Seconds a client may take to send a request's headers, from its first byte (or from
    # connecting), before `serve` closes the connection (server.py).
    request_header_timeout: float = Field(default=10, gt=0)
    # Larger request headers get 431 from `serve` (server.py).
    max_header_bytes: int = Field(default=65_536, ge=1024)

    # The names the service answers to in the Host header; any other gets 400 invalid_host. A JSON
    # list: ["api.example.com", "*.example.com"]; ["*"] turns the check off.
    allowed_hosts: list[str] = Field(default=["127.0.0.1", "localhost"], min_length=1)
    # The web origins whose pages may call the service from a browser (CORS), as a front end on
    # another origin calls /chat: ["https://app.example.com"]. Empty: none may.
    cors_allow_origins: list[str] = []
    # /docs, /redoc and /openapi.json: off unless turned on (README, "Security"). .env turns them on
    # for development.
    api_docs: bool = False
    # The chat playground at /playground (and / redirecting to it): static pages that call the
    # API with the caller's own credential. Off unless turned on; .env turns it on for development.
    playground: bool = False

    # Who the callers are (see "Security" in the README). api_keys: keys made with the command
    # line's create-api-key. jwt: bearer tokens of an identity provider. none: every caller is
    # "local", for development on this machine only.
    auth_mode: AuthMode = "{{ cookiecutter.auth_mode }}"
    # AUTH_MODE=jwt: tokens signed by a key of JWT_JWKS_URL, issued by JWT_ISSUER for
    # JWT_AUDIENCE (their `aud`), or to one of JWT_CLIENT_IDS (their `client_id`: Amazon
    # Cognito's access tokens carry no `aud`), or both; the principal is their
    # JWT_PRINCIPAL_CLAIM.
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_client_ids: list[str] = []
    jwt_algorithms: list[str] = Field(default=["RS256"], min_length=1)
    jwt_principal_claim: str = Field(default="sub", min_length=1)
    # AUTH_MODE=none has no credential to check: unless this is true, it answers only clients on
    # this machine (others get 403), and `serve` refuses to listen on an address beyond it.
    allow_open_access: bool = False

    # Signs the `GET /sessions` cursors, so that a client can pass back only those it was given.
    # Every replica needs the same one (.env gets a random one when the project is generated).
    # Unset, each process draws its own at start-up and logs a warning: fine for tests and
    # `make dev`, but its cursors are refused after a restart and by other replicas.
    cursor_secret: SecretStr | None = None

    # Observability (see "Observability" in the README). Traces are configured by the standard
    # OTEL_* variables, read from the environment by OpenTelemetry itself, not by these settings.
    # Logs: one JSON object a line, or text for a developer's terminal (.env sets text).
    log_format: Literal["json", "text"] = "json"
    # DEBUG lowers only the service's own loggers: libraries log prompts at DEBUG (logs.py).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Unset: Prometheus metrics at /metrics, behind the same authentication as the API. A port:
    # served there alone, without authentication (for a scraper on a private network), and not
    # on the API's port.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    @model_validator(mode="after")
    def require_jwt_settings(self) -> "Settings":
        if self.auth_mode != "jwt":
            return self
        names = ("jwt_jwks_url", "jwt_issuer")
        missing = [name.upper() for name in names if not getattr(self, name)]
        if not (self.jwt_audience or self.jwt_client_ids):
            missing.append("JWT_AUDIENCE or JWT_CLIENT_IDS")
        if missing:
            message = f"AUTH_MODE=jwt needs {', '.join(missing)}"
            raise PydanticCustomError("jwt_settings_missing", message)
        # Refused here: else every request would get 503 auth_unavailable, as in an outage (the
        # keys cannot be fetched), or 401 (no token names that issuer).
        placeholders = [
            name.upper()
            for name in ("jwt_jwks_url", "jwt_issuer")
            if urlsplit(getattr(self, name)).hostname == PLACEHOLDER_IDENTITY_PROVIDER
        ]
        if placeholders:
            verb = "names" if len(placeholders) == 1 else "name"
            message = (
                f"{' and '.join(placeholders)} {verb} the placeholder identity provider "
                f"{PLACEHOLDER_IDENTITY_PROVIDER}: set your own"
            )
            raise PydanticCustomError("placeholder", message)
        return self

    @field_validator("allowed_hosts")
    @classmethod
    def refuse_what_no_host_matches(cls, hosts: list[str]) -> list[str]:
        """A host as the Host header names it, without the port (an IPv6 address in brackets):
        Starlette's check would match no request to "https://api.example.com" or
        "api.example.com:443", and refuses to start on a wildcard but in front ("*example.com")."""
        for host in hosts:
            if host == "*" or is_bracketed_ipv6(host):
                continue
            name = host.removeprefix("*.")
            if not name or any(c in name for c in "*:/ "):
                message = (
                    f"{host!r} is not a host name: name hosts without scheme or port, with "
                    '"*." only in front: ["api.example.com", "*.example.com", "[::1]"]'
                )
                raise PydanticCustomError("invalid_host", message)
        return hosts

    @field_validator("jwt_jwks_url")
    @classmethod
    def require_http_url(cls, url: str | None) -> str | None:
        """Else every request would get 503 auth_unavailable, as in an outage: the keys of
        "id.example.com/jwks.json" cannot be fetched."""
        if not url:  # unset, as AUTH_MODE=jwt's check then says
            return None
        address = urlsplit(url)
        if address.scheme not in ("https", "http") or not address.hostname:
            message = (
                "must be the key set's address, as https://id.example.com/.well-known/jwks.json"
            )
            raise PydanticCustomError("invalid_url", message)
        return url

    @field_validator("cursor_secret")
    @classmethod
    def refuse_short_cursor_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        """An empty or short secret would let anyone sign a cursor (an empty line in .env,
        a Kubernetes secret whose command failed)."""
        if secret is not None and len(secret.get_secret_value()) < MIN_CURSOR_SECRET_LENGTH:
            raise PydanticCustomError(
                "too_short",
                f"must be at least {MIN_CURSOR_SECRET_LENGTH} characters: make one with "
                f"{MAKE_A_SECRET}",
            )
        return secret


SettingsT = TypeVar("SettingsT", bound=EngineSettings)


def describe(error: ValidationError) -> str:
    """What is wrong with the settings, on one line, by the name of each variable (none for a
    problem of several)."""
    return "; ".join(
        ": ".join(filter(None, [".".join(map(str, problem["loc"])).upper(), problem["msg"]]))
        for problem in error.errors()
    )


def settings_or_exit(read: Callable[[], SettingsT]) -> SettingsT:
    """What `read()` reads, or exit with one line that says which settings are invalid."""
    try:
        return read()
    except ValidationError as error:
        raise SystemExit(f"Invalid settings: {describe(error)}") from None
    except SettingsError as error:  # a list setting that is not JSON
        hint = 'a list setting is JSON, as in ALLOWED_HOSTS=["api.example.com"]'
        raise SystemExit(f"Invalid settings: {error} ({hint})") from None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once; tests clear the cache to change them."""
    return Settings()
