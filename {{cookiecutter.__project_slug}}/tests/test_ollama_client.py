"""Ollama's client, as the service builds it (removed from projects of another provider)."""

import asyncio
import json
import ssl
from typing import Any

import ollama  # noqa: F401  (on import it builds a client of its own: not one the count sees)
import pytest
from strands.models import Model
from strands.types.content import Messages

from {{ cookiecutter.__package_name }}.agent import build_model

from .support.databases import settings_for
from .support.http import QuietHandler, local_http_server


def test_ollama_calls_load_the_tls_settings_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK builds an Ollama client for each call, which would load its TLS settings again on
    the event loop."""
    contexts_built = []
    create_default_context = ssl.create_default_context  # the real one, counted below

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
