"""The playground's pages: served only when PLAYGROUND is on, with a strict content policy."""

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.__package_name }}.api.app import create_app
from {{ cookiecutter.__package_name }}.api.playground import PAGES_DIR

from ..support.http import assert_error


@pytest.fixture
def playground(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("PLAYGROUND", "true")
    with TestClient(create_app(), follow_redirects=False) as client:
        yield client


@pytest.mark.parametrize("path", ["/playground/", "/playground", "/playground/playground.js"])
def test_the_playground_is_off_by_default(client: TestClient, path: str) -> None:
    assert_error(client.get(path), 404, "not_found")


def test_without_the_playground_the_root_is_not_found(client: TestClient) -> None:
    assert_error(client.get("/"), 404, "not_found")


def test_the_root_and_the_bare_path_lead_to_the_playground(playground: TestClient) -> None:
    for path in ("/", "/playground"):
        response = playground.get(path)
        assert response.is_redirect, path
        assert response.next_request.url.path == "/playground/", path
    # Relative, so that it leads there under a proxy's path prefix too.
    assert playground.get("/").headers["Location"] == "playground/"
    assert playground.get("/playground").headers["Location"] == "playground/"


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/playground/", "text/html"),
        ("/playground/playground.js", "text/javascript"),
        ("/playground/api.js", "text/javascript"),
        ("/playground/playground.css", "text/css"),
    ],
)
def test_pages_are_served_with_a_strict_content_policy(
    playground: TestClient, path: str, media_type: str
) -> None:
    response = playground.get(path)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(media_type)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path", ["/playground/", "/playground/api.js", "/playground/playground.js"]
)
def test_pages_are_checked_for_a_new_version_on_every_load(
    playground: TestClient, path: str
) -> None:
    """Else the browser would keep running the scripts it cached before an upgrade."""
    response = playground.get(path)
    assert response.headers["Cache-Control"] == "no-cache"

    unchanged = playground.get(path, headers={"If-None-Match": response.headers["ETag"]})
    assert unchanged.status_code == 304
    assert unchanged.headers["Cache-Control"] == "no-cache"


def test_an_unknown_file_is_a_json_404(playground: TestClient) -> None:
    assert_error(playground.get("/playground/missing.js"), 404, "not_found")


def test_the_page_loads_nothing_from_elsewhere_and_runs_no_inline_script() -> None:
    page = (PAGES_DIR / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script[^>]*>", page)

    assert scripts and all(" src=" in script for script in scripts)
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers
    assert "style=" not in page
