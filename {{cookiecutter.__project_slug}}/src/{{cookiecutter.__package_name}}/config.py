"""Service settings, read from environment variables and from `.env`."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# echo is an offline model for local development, demos and load tests: it needs no credentials.
ModelProvider = Literal["bedrock", "anthropic", "openai", "ollama", "litellm", "echo"]

# The embedded default: a SQLite file, so the service runs on a laptop with nothing else installed.
DEFAULT_DATABASE_URL = "sqlite:///.data/{{ cookiecutter.__package_name }}.db"


class Settings(BaseSettings):
    """Every setting can be given as an environment variable of the same name in upper case."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # The model. Provider credentials are read by each provider's own client from its usual
    # environment variables (AWS_*, ANTHROPIC_API_KEY, OPENAI_API_KEY, ...).
    model_provider: ModelProvider = "{{ cookiecutter.model_provider }}"
    # None means the provider's default model (see agent.py).
    model_id: str | None = None
    model_max_tokens: int = Field(default=4096, ge=1)
    ollama_host: str = "http://127.0.0.1:11434"
    # A throttled model call is retried this many times in all, waiting 2, 2, 4, 8 ... seconds;
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
    # Seconds a turn waits for another turn of its session to finish before 409 session_busy.
    session_wait_timeout: float = Field(default=10, ge=0)
    # Seconds a turn's claim on its session lasts unless its replica renews it (every third of
    # that): after a replica crashes, its sessions are free again within this time.
    session_lease_seconds: float = Field(default=3, ge=1)
    # Seconds a whole turn may take, model calls and tools included, before 504 model_timeout.
    turn_timeout: float = Field(default=300, gt=0)
    # Larger request bodies get 413.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
{%- if cookiecutter.api_key_auth %}

    # Every route but /health requires `Authorization: Bearer <API_KEY>`.
    api_key: SecretStr
{%- else %}

    # When set, every route but /health requires `Authorization: Bearer <API_KEY>`.
    api_key: SecretStr | None = None
{%- endif %}

    # Signs the `GET /sessions` cursors, so that a client can pass back only those it was given.
    # Every replica needs the same one (.env gets a random one when the project is generated).
    # Unset, each process draws its own at start-up and logs a warning: fine for tests and
    # `make dev`, but its cursors are refused after a restart and by other replicas.
    cursor_secret: SecretStr | None = None

    # postgresql+psycopg://user:password@host:5432/db, or sqlite:///path/to/file.db
    database_url: str = DEFAULT_DATABASE_URL
    # The connections a process keeps: DB_POOL_SIZE for its turns, which hold one only while
    # they begin and while they save (never while a model runs), and DB_SESSIONS_POOL_SIZE for
    # the /sessions routes and /ready.
    db_pool_size: int = Field(default=20, ge=2)
    db_sessions_pool_size: int = Field(default=5, ge=1)
    # Seconds a request waits for a pooled connection before it fails.
    db_pool_timeout: float = Field(default=10, gt=0)
    # PostgreSQL: seconds to establish a connection, and the longest a statement may run.
    db_connect_timeout: int = Field(default=5, ge=1)
    db_statement_timeout_ms: int = Field(default=10_000, ge=0)
    # SQLite: how long a writer waits for another writer's lock.
    sqlite_busy_timeout_ms: int = Field(default=5_000, ge=0)

    @field_validator("database_url")
    @classmethod
    def use_psycopg_driver(cls, url: str) -> str:
        """Accept the postgres:// and postgresql:// URLs that hosting providers hand out."""
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url.removeprefix(prefix)
        return url


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once; tests clear the cache to change them."""
    return Settings()
