"""Who is calling: every request but /health names its principal (see "Security" in the README).

AUTH_MODE=api_keys: `Authorization: Bearer <key>`, a key made with the command line (api_keys.py).
AUTH_MODE=jwt: `Authorization: Bearer <JWT>`, verified against the identity provider's JWKS.
AUTH_MODE=none: no credential; every caller is the principal "local", but a browser may send
only what a page of this service, or of CORS_ALLOW_ORIGINS, asks for.
"""

import asyncio
import ipaddress
import logging
import threading
import time
from typing import Annotated
from urllib.parse import urlsplit

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..api_keys import principal_for_key
from ..config import Settings
from ..database import DATABASE_OUTAGES
from ..session_store import InvalidIdError, validate_principal
from ..session_store.records import LOCAL_PRINCIPAL
from .errors import CLOSE_CONNECTION, ApiError, database_outage, error_response

logger = logging.getLogger(__name__)
bearer = HTTPBearer(auto_error=False, description="An API key, or a JWT (see AUTH_MODE).")
# How far the identity provider's clock may run ahead of ours, or behind (a token's nbf, iat, exp).
JWT_CLOCK_SKEW_SECONDS = 30
# How long the provider's key set is trusted once read: a key it has withdrawn is refused from
# the next read on.
JWKS_LIFESPAN_SECONDS = 300
# How long after a fetch of the provider's key set the next may be made: after one that read it,
# and after one that failed. Tokens naming a key that the set held does not have, which anyone
# can send, would otherwise each have the provider asked again.
JWKS_REFETCH_SECONDS = 30
JWKS_RETRY_SECONDS = 5
# The methods that change nothing, which a browser may send from any page.
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class SigningKeysUnavailableError(Exception):
    """The identity provider's JWKS cannot be fetched: no token can be checked, valid or not."""


class Authenticator:
    """Tells the principal a bearer token proves, by the settings' AUTH_MODE: an API key looked up
    in the database (`engine`, the asynchronous one turns use, within its `connections` for
    requests), or a JWT checked against the identity provider's signing keys, fetched and cached
    on a worker thread (PyJWT blocks)."""

    def __init__(
        self, settings: Settings, engine: AsyncEngine, connections: asyncio.Semaphore
    ) -> None:
        self.mode = settings.auth_mode
        self._settings = settings
        self._engine = engine
        self._connections = connections
        # Fetching the key set gives up after 5 s (not PyJWT's 30), so that a hung identity
        # provider does not hold every request's thread. PyJWT's cache is not used: it forgets
        # the key set when it expires, and an outage of the provider then refused every token.
        self._jwks = (
            jwt.PyJWKClient(settings.jwt_jwks_url, timeout=5, cache_jwk_set=False)
            if settings.jwt_jwks_url
            else None
        )
        # The key set last read, kept however old while the provider cannot be read.
        self._key_set: jwt.PyJWKSet | None = None
        self._read_again_at = 0.0
        # One request at a time fetches the key set, and after a fetch none does for a while
        # (JWKS_REFETCH_SECONDS, JWKS_RETRY_SECONDS): the requests waiting for that one find the
        # key it fetched, or that no fetch may be made yet.
        self._fetching = threading.Lock()
        self._no_fetch_until = 0.0

    async def principal(self, token: str) -> str | None:
        """The token's principal; None unless the token is valid. Raises
        SigningKeysUnavailableError when a JWT cannot be checked at all."""
        if self.mode == "api_keys":
            async with self._connections:
                return await principal_for_key(self._engine, token)
        return await run_in_threadpool(self._jwt_principal, token)

    def _jwt_principal(self, token: str) -> str | None:
        settings = self._settings
        try:
            signing_key = self._signing_key(jwt.get_unverified_header(token).get("kid"))
            if signing_key is None:
                return None
            checks_audience = bool(settings.jwt_audience)  # else JWT_CLIENT_IDS (config.py)
            claims = jwt.decode(
                token,
                signing_key,
                algorithms=settings.jwt_algorithms,
                audience=settings.jwt_audience or None,
                issuer=settings.jwt_issuer,
                options={
                    "require": ["exp", "iss", *(["aud"] if checks_audience else [])],
                    "verify_aud": checks_audience,
                },
                leeway=JWT_CLOCK_SKEW_SECONDS,
            )
        except jwt.PyJWTError:  # not a JWT, or not a valid one
            return None
        if settings.jwt_client_ids and claims.get("client_id") not in settings.jwt_client_ids:
            return None
        try:
            return validate_principal(claims.get(settings.jwt_principal_claim))
        except InvalidIdError:
            return None

    def _signing_key(self, key_id: object) -> jwt.PyJWK | None:
        """The provider's key of that id (None for a token that names none: a key set's key
        without one), from the key set held, read again once it is JWKS_LIFESPAN_SECONDS old,
        or when it lacks the key unless it was read lately. None if there is no such key, as far
        as the key set held tells; SigningKeysUnavailableError if no key set was ever read."""
        assert self._jwks is not None  # AUTH_MODE=jwt
        held = self._key_set
        key = signing_key(held, key_id)
        if key is not None and time.monotonic() < self._read_again_at:
            return key
        # With a key set held, a token does not wait for a fetch under way, and the key set held
        # answers: tokens naming another key, which anyone can send, would hold the worker
        # threads while a provider hangs, and the valid tokens would wait for a thread. With
        # none held, every token waits.
        if not self._fetching.acquire(blocking=held is None):
            return key
        try:
            if self._key_set is not held:  # read while this request waited
                return signing_key(self._key_set, key_id)
            if time.monotonic() >= self._no_fetch_until:
                try:
                    fetched = self._jwks.get_jwk_set()
                except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError, OSError) as error:
                    # The provider cannot be reached, or drops the connection while it answers
                    # (an OSError), or answers with an error page (not JSON: a ValueError), or
                    # with no keys: the key set held, if any, goes on answering.
                    logger.warning("cannot fetch the JWT signing keys: %s", error)
                    self._no_fetch_until = time.monotonic() + JWKS_RETRY_SECONDS
                else:
                    self._key_set = fetched
                    self._read_again_at = time.monotonic() + JWKS_LIFESPAN_SECONDS
                    self._no_fetch_until = time.monotonic() + JWKS_REFETCH_SECONDS
                    return signing_key(fetched, key_id)
            if held is None:
                raise SigningKeysUnavailableError()
            return key
        finally:
            self._fetching.release()


def signing_key(key_set: jwt.PyJWKSet | None, key_id: object) -> jwt.PyJWK | None:
    """The key of that id in the key set that may check signatures (as PyJWT reads `use`)."""
    for key in key_set.keys if key_set else []:
        if key.key_id == key_id and key.public_key_use in ("sig", None):
            return key
    return None


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The caller's principal; 401 unless the request proves one."""
    # A request that brought a body was checked before the body was read.
    if principal := getattr(request.state, "principal", None):
        return principal
    return await principal_of(request, credentials)


class AuthenticateBeforeBodyMiddleware:
    """Checks the credential of a request that brings a body before its body is read (FastAPI
    reads a body before the route's dependencies run): a client without a valid one gets its 401
    whatever it sends, and makes the service hold nothing of its body, where up to
    MAX_BODY_BYTES of each of its requests would otherwise wait in memory. The principal found is
    the one `authenticate` gives the route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and brings_body(Headers(scope=scope)):
            request = Request(scope)
            try:
                request.state.principal = await principal_of(request, await bearer(request))
            except (ApiError, *DATABASE_OUTAGES) as error:
                await refuse_unread(error, scope, receive, send)
                return
        await self.app(scope, receive, send)


def brings_body(headers: Headers) -> bool:
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


async def refuse_unread(error: Exception, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a request refused before its body was read: the connection can carry no next
    request."""
    if not isinstance(error, ApiError):
        error = database_outage(error)
    headers = {**(error.headers or {}), **CLOSE_CONNECTION}
    response = error_response(error.status_code, error.code, error.message, headers)
    await response(scope, receive, send)


async def principal_of(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The principal that the request's credential proves, or that AUTH_MODE=none gives it;
    ApiError (401, 403, 503) if none."""
    authenticator: Authenticator = request.app.state.authenticator
    if authenticator.mode == "none":
        settings = request.app.state.settings
        if not settings.allow_open_access and not from_this_machine(request):
            message = (
                "AUTH_MODE=none answers only clients on the service's own machine: set "
                "AUTH_MODE=api_keys or jwt, or ALLOW_OPEN_ACCESS=true if that is what you want."
            )
            raise ApiError(403, "open_access_refused", message)
        if from_another_site(request, settings.cors_allow_origins):
            message = (
                "With AUTH_MODE=none, a browser may send this only from the service's own pages "
                "or from an origin of CORS_ALLOW_ORIGINS."
            )
            raise ApiError(403, "cross_site_request", message)
        return LOCAL_PRINCIPAL
    principal = None
    if credentials is not None:
        try:
            principal = await authenticator.principal(credentials.credentials)
        except SigningKeysUnavailableError:
            # The caller's token may well be valid: an outage of ours, not a 401 to give up on.
            message = "The identity provider's signing keys cannot be fetched; retry shortly."
            retry = {"Retry-After": str(JWKS_RETRY_SECONDS)}
            raise ApiError(503, "auth_unavailable", message, headers=retry) from None
    if principal == LOCAL_PRINCIPAL:
        # AUTH_MODE=none's principal owns the sessions of that mode, of SqlSessionRepository used
        # without a principal, and those stored before principals existed: no credential
        # proves it, or a token whose subject is "local" would read them all.
        logger.warning("refused a credential for the principal %r, AUTH_MODE=none's", principal)
        principal = None
    if principal is None:
        what = "an API key" if authenticator.mode == "api_keys" else "a valid JWT"
        raise ApiError(
            401,
            "unauthorized",
            f"Send {what} as `Authorization: Bearer <token>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a host name: it may resolve to anything
        return host == "localhost"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # an IPv4 client of a server listening on "::"
    return address.is_loopback


def from_this_machine(request: Request) -> bool:
    """Whether the client is on the service's machine: `serve` refuses to listen beyond it with
    AUTH_MODE=none, but `uvicorn --host 0.0.0.0` does not ask. A Unix socket's client has no
    address, and is. (Behind a proxy that FORWARDED_ALLOW_IPS trusts, the client is the one the
    proxy names.)"""
    return request.client is None or is_loopback(request.client.host)


def from_another_site(request: Request, allowed_origins: list[str]) -> bool:
    """Whether a browser sends this request, one that changes something, for a page of another
    site: with no credential to prove who asks, any page its user opens could otherwise run turns
    and delete sessions here (a form, or a `fetch` whose body has no content type, needs no CORS
    preflight). Browsers name the page's site in Sec-Fetch-Site, older ones only in Origin;
    other clients send neither."""
    if request.method in SAFE_METHODS:
        return False
    origin = request.headers.get("origin")
    if origin in allowed_origins or "*" in allowed_origins:
        return False
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")  # "none": the user's own navigation
    # By host name: a proxy in front may pass the Host header on without its port.
    return origin is not None and urlsplit(origin).hostname != request.url.hostname


Principal = Annotated[str, Depends(authenticate)]
