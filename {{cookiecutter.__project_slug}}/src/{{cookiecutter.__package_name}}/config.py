"""Service settings, read from environment variables and from `.env`."""

from functools import lru_cache
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

ModelProvider = Literal["bedrock", "anthropic", "openai", "ollama", "litellm"]


class Settings(BaseSettings):
    """Every setting can be given as an environment variable of the same name in upper case."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    model_provider: ModelProvider = "{{ cookiecutter.model_provider }}"
    # None means the provider's default model.
    model_id: str | None = None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once; tests clear the cache to change them."""
    return Settings()
