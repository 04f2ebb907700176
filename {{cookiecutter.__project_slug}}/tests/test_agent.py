"""The agent factory: the configured model, the tools, the window, the session store."""
{% if cookiecutter.model_provider == "openai" %}
import asyncio
import json
from typing import Any

import openai
{%- elif cookiecutter.model_provider == "ollama" %}
import asyncio
import json
import ssl
from ssl import create_default_context
from typing import Any
{% endif %}
import pytest
from strands.agent.conversation_manager import SlidingWindowConversationManager
{%- if cookiecutter.model_provider in ("openai", "ollama") %}
from strands.models import Model
from strands.types.content import Messages
{%- endif %}

from {{ cookiecutter.__package_name }}.agent import (
    DEFAULT_MODEL_IDS,
    TOOLS,
    build_agent,
    build_model,
)
from {{ cookiecutter.__package_name }}.echo import EchoModel
from {{ cookiecutter.__package_name }}.session_store import SqlSessionRepository

from .support.databases import settings_for
{%- if cookiecutter.model_provider in ("openai", "ollama") %}
from .support.http import QuietHandler, local_http_server
{%- endif %}


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

{%- if cookiecutter.model_provider == "openai" %}


def test_openai_calls_share_one_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unless given a client, the SDK builds one for each call, its TLS settings loaded again on
    the event loop."""
    clients_built = []

    class CountedClient(openai.AsyncOpenAI):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            clients_built.append(self)

    chunk = {"id": "1", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()

    class ChatCompletions(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(body)

    async def two_calls(model: Model) -> list[str]:
        prompt: Messages = [{"role": "user", "content": [{"text": "Hello"}]}]
        return [str([event async for event in model.stream(prompt)]) for _ in "ab"]

    monkeypatch.setattr(openai, "AsyncOpenAI", CountedClient)
    with local_http_server(ChatCompletions) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "not-a-real-key")
        model = build_model(settings_for("sqlite:///agent.db", model_provider="openai"))
        answers = asyncio.run(two_calls(model))

    assert all("Hi" in answer for answer in answers)
    assert len(clients_built) == 1
{%- elif cookiecutter.model_provider == "ollama" %}


def test_ollama_calls_load_the_tls_settings_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK builds an Ollama client for each call, which would load its TLS settings again on
    the event loop."""
    contexts_built = []

    def counted_context(**options: Any) -> ssl.SSLContext:
        contexts_built.append(options)
        return create_default_context(**options)

    counts = {"prompt_eval_count": 1, "eval_count": 1, "total_duration": 1}
    chunks = [
        {"model": "m", "message": {"role": "assistant", "content": "Hi"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, **counts},
    ]
    body = "".join(json.dumps(chunk) + "\n" for chunk in chunks).encode()

    class Chat(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            self.wfile.write(body)

    async def two_calls(model: Model) -> list[str]:
        prompt: Messages = [{"role": "user", "content": [{"text": "Hello"}]}]
        return [str([event async for event in model.stream(prompt)]) for _ in "ab"]

    with local_http_server(Chat) as url:
        settings = settings_for("sqlite:///agent.db", model_provider="ollama", ollama_host=url)
        monkeypatch.setattr(ssl, "create_default_context", counted_context)
        model = build_model(settings)
        answers = asyncio.run(two_calls(model))

    assert all("Hi" in answer for answer in answers)
    assert len(contexts_built) == 1
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
