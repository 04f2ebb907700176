"""API-key authentication: `Authorization: Bearer <API_KEY>`, compared in constant time."""

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError

bearer = HTTPBearer(auto_error=False, description="The service's API_KEY.")


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Refuse the request unless it carries the API key; open when no API_KEY is configured."""
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise ApiError(
            401,
            "unauthorized",
            "Send the API key as `Authorization: Bearer <API_KEY>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
