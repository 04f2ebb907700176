"""The chat playground: static pages at /playground that talk to the API from the browser.

The pages hold no data and need no credential to load; every call they make to the API sends
the credential the user types in, as any other client does. PLAYGROUND turns them on.
"""

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

PAGES_DIR = Path(__file__).resolve().parent.parent / "playground"
# Scripts, styles and connections from this origin only, and no inline script: a message that
# gets into the page as markup cannot run. The pages cannot be framed (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class PlaygroundFiles(StaticFiles):
    """The playground's files, each sent with the security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        # Revalidated on every load (a 304 while the ETag holds): without it, a browser keeps
        # running the scripts it cached before the service was upgraded.
        response.headers["Cache-Control"] = "no-cache"
        return response


def install_playground(app: FastAPI) -> None:
    """Serve the playground at /playground/, and send / and /playground there by a relative
    path, so that it works under a proxy's path prefix too (Starlette's own redirect to the
    slash is absolute, and would leave the prefix out)."""
    app.mount("/playground", PlaygroundFiles(directory=PAGES_DIR, html=True), name="playground")

    @app.get("/", include_in_schema=False)
    @app.get("/playground", include_in_schema=False)
    async def to_the_playground() -> RedirectResponse:  # async: it needs no thread of the pool
        return RedirectResponse("playground/")
