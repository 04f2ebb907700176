"""The agent factory: the configured model, the tools, the window, the session store."""

import pytest
from strands.agent.conversation_manager import SlidingWindowConversationManager

from {{ cookiecutter.__package_name }}.agent import (
    DEFAULT_MODEL_IDS,
    TOOLS,
    build_agent,
    build_model,
)
from {{ cookiecutter.__package_name }}.echo import EchoModel
from {{ cookiecutter.__package_name }}.session_store import SqlSessionRepository

from .support.databases import settings_for


def test_the_template_provider_builds_without_calling_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Clients want credentials when built, not before the first call: fake ones suffice here.
    for provider in ("ANTHROPIC", "OPENAI"):
        monkeypatch.setenv(f"{provider}_API_KEY", "not-a-real-key")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-a-real-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-key")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    provider = "{{ cookiecutter.model_provider }}"
    settings = settings_for("sqlite:///agent.db", model_provider=provider, model_max_tokens=500)

    model = build_model(settings)

    config = model.get_config()
    assert config["model_id"] == DEFAULT_MODEL_IDS[provider]
    # OpenAI's reasoning models take max_completion_tokens only; LiteLLM translates max_tokens.
    params = config.get("params", {})
    limit = params.get("max_completion_tokens", params.get("max_tokens", config.get("max_tokens")))
    assert limit == 500
    custom = build_model(settings.model_copy(update={"model_id": "my-model"}))
    assert custom.get_config()["model_id"] == "my-model"
{%- if cookiecutter.model_provider == "bedrock" %}
    from strands.models.bedrock import DEFAULT_READ_TIMEOUT

    # One client serves every turn of the process, with a pooled connection for each.
    assert model.client.meta.config.max_pool_connections == settings.max_concurrent_turns
    assert model.client.meta.config.read_timeout == DEFAULT_READ_TIMEOUT  # the SDK's, kept
{%- endif %}


def test_the_echo_model_answers_offline(repository: SqlSessionRepository) -> None:
    settings = settings_for("sqlite:///agent.db", model_provider="echo", conversation_window=6)
    model = build_model(settings)
    agent = build_agent(settings, repository, "chat", model)

    result = agent("Is anybody there?")

    assert isinstance(model, EchoModel)
    assert str(result).strip() == "You said: Is anybody there?"
    assert isinstance(agent.conversation_manager, SlidingWindowConversationManager)
    assert agent.conversation_manager.window_size == 6
    assert agent.system_prompt == settings.system_prompt
    assert repository.message_counts("chat") == {"default": 2}
    assert sorted(agent.tool_names) == sorted(tool.tool_name for tool in TOOLS)
