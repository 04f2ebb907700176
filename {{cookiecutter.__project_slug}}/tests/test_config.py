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


def test_api_key_requirement_follows_the_template_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_KEY")

    required = Settings.model_fields["api_key"].is_required()

    assert required is {{ cookiecutter.api_key_auth }}
    if required:
        with pytest.raises(ValueError, match="api_key"):
            Settings(_env_file=None)
    else:
        assert Settings(_env_file=None).api_key is None
