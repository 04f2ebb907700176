"""The one place that builds an Agent: model, system prompt, tools, conversation window, session."""

import importlib
import os
from collections.abc import Sequence

import httpx
from strands import Agent, ModelRetryStrategy
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.hooks import HookProvider
from strands.models import Model
from strands.session import RepositorySessionManager, SessionRepository
from strands.types.exceptions import ModelThrottledException

from .config import Settings
from .echo import EchoModel
{%- if cookiecutter.include_example_tools %}
from .tools import EXAMPLE_TOOLS

TOOLS = EXAMPLE_TOOLS
{%- else %}

# Add @tool functions here for the agent to call.
TOOLS: list = []
{%- endif %}

# The service runs one agent per session; its messages are stored under this id.
AGENT_ID = "default"

DEFAULT_MODEL_IDS = {
    "bedrock": "global.anthropic.claude-sonnet-4-6",
    "anthropic": "claude-sonnet-4-6",
    "openai": "gpt-4.1",
    "ollama": "llama3.2",
    "litellm": "anthropic/claude-sonnet-4-6",
}


# A provider refusing a call for its load, where the SDK passes its client's error on as it is
# instead of as ModelThrottledException: LiteLLM's 429 and Anthropic's 529 by their HTTP status;
# Anthropic's overload in the middle of an answer, whose status was 200, by its error type.
OVERLOADED_STATUSES = frozenset({429, 529})
OVERLOADED_ERROR_TYPE = "overloaded_error"
# A 429 that waiting does not lift: OpenAI's for an account out of credit, which the SDK raises
# as ModelThrottledException (OpenAI's error its cause). A model error, not retried.
OUT_OF_CREDIT = "insufficient_quota"


def is_throttled(error: BaseException) -> bool:
    """Whether the provider refused the call for its load: retried, then 503 model_throttled."""
    if OUT_OF_CREDIT in (getattr(error, "code", None), getattr(error.__cause__, "code", None)):
        return False
    return (
        isinstance(error, ModelThrottledException)
        or getattr(error, "status_code", None) in OVERLOADED_STATUSES
        or getattr(error, "type", None) == OVERLOADED_ERROR_TYPE
    )


class RetryThrottledCalls(ModelRetryStrategy):
    """The SDK's retries, with their backoff, of every call that a provider refused for its load
    (the SDK's own retry only those it turned into ModelThrottledException)."""

    def is_retryable(self, exception: Exception) -> bool:
        return is_throttled(exception)


def check_model_provider(settings: Settings) -> None:
    """Exit in one line if MODEL_PROVIDER's client library is not installed (the service would
    start, and every turn fail), or if its client, built at start-up, would refuse to be built
    for want of a key."""
    provider = settings.model_provider
    if provider == "echo":
        return
    try:
        importlib.import_module(f"strands.models.{provider}")
    except ImportError as error:
        raise SystemExit(
            f"MODEL_PROVIDER={provider} needs the {error.name} package: "
            f"uv add 'strands-agents[{provider}]'"
        ) from None
    if provider == "openai" and not os.environ.get("OPENAI_API_KEY"):
        raise SystemExit(
            "MODEL_PROVIDER=openai needs OPENAI_API_KEY in the environment "
            "(make dev and docker compose load .env into it)"
        )


def build_model(settings: Settings) -> Model:
    """The model of the process's turns. Providers are imported here because only one extra is
    installed."""
    provider = settings.model_provider
    if provider == "echo":
        return EchoModel(word_delay=settings.echo_word_delay)
    model_id = settings.model_id or DEFAULT_MODEL_IDS[provider]
    if provider == "bedrock":
        from botocore.config import Config
        from strands.models.bedrock import DEFAULT_READ_TIMEOUT, BedrockModel

        # The client serves every turn: as many pooled connections as turns may stream at once
        # (botocore keeps 10, and opens and drops the others). A config given replaces the
        # SDK's, whose read timeout is kept.
        client = Config(
            max_pool_connections=settings.max_concurrent_turns, read_timeout=DEFAULT_READ_TIMEOUT
        )
        return BedrockModel(
            model_id=model_id, max_tokens=settings.model_max_tokens, boto_client_config=client
        )
    if provider == "anthropic":
        import anthropic
        from strands.models.anthropic import AnthropicModel

        # Its one client, with as many connections as turns may run at once (the client's default
        # pool is of a fixed size, whatever the setting), as OpenAI's and Bedrock's.
        connections = httpx.Limits(max_connections=settings.max_concurrent_turns)
        client = {"http_client": anthropic.DefaultAsyncHttpxClient(limits=connections)}
        return AnthropicModel(
            client_args=client, model_id=model_id, max_tokens=settings.model_max_tokens
        )
    if provider == "openai":
        import openai
        from strands.models.openai import OpenAIModel

        # max_completion_tokens: OpenAI's reasoning models (o3, gpt-5) refuse max_tokens.
        limit = {"max_completion_tokens": settings.model_max_tokens}
        # One client for every call, with as many connections as turns may run at once: the
        # SDK would otherwise build a client for each call, its TLS settings loaded again on the
        # event loop. The SDK's clients must not serve two event loops: this one is built on
        # the loop that runs every turn of the process (and no tool may call the model through
        # a synchronous Agent, which runs a loop of its own).
        connections = httpx.Limits(max_connections=settings.max_concurrent_turns)
        client = openai.AsyncOpenAI(http_client=openai.DefaultAsyncHttpxClient(limits=connections))
        return OpenAIModel(client=client, model_id=model_id, params=limit)
    if provider == "ollama":
        from strands.models.ollama import OllamaModel

        # The SDK builds a client for each call, which would load its TLS settings again on the
        # event loop: they are loaded once, here.
        return OllamaModel(
            settings.ollama_host,
            ollama_client_args={"verify": httpx.create_ssl_context()},
            model_id=model_id,
            max_tokens=settings.model_max_tokens,
        )
    from strands.models.litellm import LiteLLMModel

    return LiteLLMModel(model_id=model_id, params={"max_tokens": settings.model_max_tokens})


def build_agent(
    settings: Settings,
    repository: SessionRepository,
    session_id: str,
    model: Model,
    hooks: Sequence[HookProvider] = (),
) -> Agent:
    """An agent for one turn of one session, restored from `repository`.

    Agents are never shared between requests: a shared agent would mix users' conversations.
    """
    return Agent(
        agent_id=AGENT_ID,
        model=model,
        system_prompt=settings.system_prompt,
        tools=list(TOOLS),
        conversation_manager=SlidingWindowConversationManager(
            window_size=settings.conversation_window
        ),
        session_manager=RepositorySessionManager(
            session_id=session_id, session_repository=repository
        ),
        # Throttled calls wait 2, 4, 8 ... s between attempts, not the SDK's 4, 8, 16 ...: a
        # client is waiting.
        retry_strategy=RetryThrottledCalls(
            max_attempts=settings.model_max_attempts, initial_delay=2
        ),
        hooks=list(hooks),
        callback_handler=None,
    )
