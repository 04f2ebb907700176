"""Only requests whose Host header names one of ALLOWED_HOSTS reach the service.

A forged Host header is how DNS rebinding reaches a service on 127.0.0.1 from a browser, and how
absolute URLs built from the request end up pointing elsewhere. The probes and /metrics answer
whatever the host: Kubernetes, Docker, load balancers and Prometheus send them to an IP address
(each replica's own), what the probes answer tells nothing, and /metrics asks for a credential
as the API does (but under AUTH_MODE=none, where it too is checked).
"""

from collections.abc import Collection, Sequence

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import CLOSE_CONNECTION, error_response

# /ping: AgentCore's probe, where the project serves it (api/agentcore.py).
PROBES = frozenset({"/health", "/ready", "/ping"})
# What the inner app of the check sends: the host was allowed.
_ALLOWED: Message = {"type": "allowed_host"}


async def _report_allowed(scope: Scope, receive: Receive, send: Send) -> None:
    await send(_ALLOWED)


class AllowedHostsMiddleware:
    """Starlette's TrustedHostMiddleware judges the Host header; a refused request gets 400
    invalid_host with the service's JSON error body instead of Starlette's plain text."""

    def __init__(
        self, app: ASGIApp, allowed_hosts: Sequence[str], any_host: Collection[str] = PROBES
    ) -> None:
        """`any_host`: the paths answered whatever the host."""
        self.app = app
        self.any_host = any_host
        # Starlette's check, over an app that only reports that it was reached.
        self.check = TrustedHostMiddleware(_report_allowed, allowed_hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.any_host:
            await self.app(scope, receive, send)
            return
        sent: list[Message] = []

        async def collect(message: Message) -> None:
            sent.append(message)

        await self.check(scope, receive, collect)
        if sent == [_ALLOWED]:
            await self.app(scope, receive, send)
            return
        message = "The Host header names none of the hosts this service answers to (ALLOWED_HOSTS)."
        response = error_response(400, "invalid_host", message, CLOSE_CONNECTION)
        await response(scope, receive, send)
