from pathlib import Path

import pytest

from {{ cookiecutter.__package_name }}.config import Settings, get_settings


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

    with pytest.raises(ValueError, match="AUTH_MODE=jwt needs JWT_JWKS_URL, JWT_AUDIENCE"):
        Settings(_env_file=None)
