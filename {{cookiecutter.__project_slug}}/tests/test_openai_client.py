"""OpenAI's client, as the service builds it (removed from projects of another provider)."""

import asyncio
import json
from typing import Any

import openai
import pytest
from strands.models import Model
from strands.types.content import Messages

from {{ cookiecutter.__package_name }}.agent import build_model

from .support.databases import settings_for
from .support.http import QuietHandler, local_http_server


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
