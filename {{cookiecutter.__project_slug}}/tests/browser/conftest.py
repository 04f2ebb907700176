"""The playground in headless Chromium, against a real uvicorn server with the echo model."""

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
import uvicorn
from selenium.webdriver import Chrome, Keys
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..support.browsers import headless_chrome
from ..support.databases import new_api_key
from ..support.server import PROJECT_DIR, Server, free_port, server_process

# The echo model streams a word every WORD_DELAY seconds, so that a turn's text arrives over time.
WORD_DELAY = "0.05"


@dataclass
class Playground:
    """The playground page in the browser, seen and used as a person would."""

    driver: Chrome
    url: str

    def open(self) -> None:
        """Load the page in a tab with nothing remembered (no credential)."""
        self.driver.get(self.url)
        self.driver.execute_script("sessionStorage.clear()")
        self.driver.refresh()

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, condition: Callable[[], object], timeout: float = 15) -> object:
        """What `condition` returns once it is truthy (it is asked every 20 ms)."""
        wait = WebDriverWait(self.driver, timeout, poll_frequency=0.02)
        return wait.until(lambda _: condition())

    def asks_for_credential(self) -> bool:
        return self.find("#credential-dialog").get_attribute("open") is not None

    def sign_in(self, key: str) -> None:
        self.wait_for(self.asks_for_credential)
        self.find("#credential").send_keys(key, Keys.ENTER)
        self.wait_for(lambda: not self.asks_for_credential())

    def type(self, *keys: str) -> None:
        self.find("#prompt").send_keys(*keys)

    def send(self, prompt: str) -> None:
        self.type(prompt, Keys.ENTER)

    def send_and_wait(self, prompt: str) -> str:
        """Send a message, wait for the whole answer, and return its text."""
        answers = len(self.texts("assistant"))
        self.send(prompt)
        self.wait_for(lambda: len(self.texts("assistant")) > answers and not self.streaming())
        return self.texts("assistant")[-1]

    def start_conversations(self, *first_messages: str) -> None:
        """A conversation for each message, from "New conversation" after the first; listed."""
        for number, message in enumerate(first_messages):
            if number:
                self.find("#new-conversation").click()
            self.send_and_wait(message)
        self.wait_for(lambda: len(self.sessions()) == len(first_messages))

    def streaming(self) -> bool:
        return bool(self.find_all('.message[aria-busy="true"]'))

    def texts(self, role: str) -> list[str]:
        return [message.text for message in self.find_all(f".message.{role} .text")]

    def sessions(self) -> list[WebElement]:
        return self.find_all("#session-list button")

    def error(self) -> str:
        return self.find("#error").text

    def hold_history(self) -> None:
        """Hold back the page's requests for a conversation's history until release_history(),
        as a slow network would."""
        self.driver.execute_script("""
            const fetch = (window.unheldFetch ??= window.fetch);
            window.heldHistory = [];
            window.fetch = (url, options) => String(url).includes("/history")
              ? new Promise((go) => window.heldHistory.push(go)).then(() => fetch(url, options))
              : fetch(url, options);
        """)

    def release_history(self) -> None:
        self.driver.execute_script("window.heldHistory.splice(0).forEach((go) => go())")

    def script_problems(self) -> list[str]:
        """Uncaught errors and Content-Security-Policy violations logged since the last call.
        (A refused request is logged too, as the browser's own error: that is not a problem.)"""
        messages = [entry["message"] for entry in self.driver.get_log("browser")]
        return [m for m in messages if "Uncaught" in m or "Content Security Policy" in m]


@pytest.fixture(scope="module")
def browser() -> Iterator[Chrome]:
    """One browser for the module's tests (skipped when there is none, see support/browsers)."""
    with headless_chrome() as driver:
        yield driver


@pytest.fixture(scope="module")
def database_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('browser') / 'playground.db'}"


@pytest.fixture(scope="module")
def server(browser: Chrome, database_file: str) -> Iterator[Server]:
    """The service with API keys and the playground on; a turn waits 0.2 s for a busy session."""
    with server_process(
        database_file,
        PLAYGROUND="true",
        ECHO_WORD_DELAY=WORD_DELAY,
        SESSION_WAIT_TIMEOUT="0.2",
        MAX_PROMPT_CHARS="500",
    ) as running:
        yield running


@pytest.fixture
def new_key(database_file: str) -> Callable[[], str]:
    """An API key of a principal of its own, whose list of conversations starts empty."""
    return lambda: new_api_key(database_file, principal=f"browser-{uuid4().hex[:12]}")


@pytest.fixture
def page(browser: Chrome, server: Server) -> Iterator[Playground]:
    """The playground in the browser's only tab, nothing remembered, at a desktop size."""
    browser.set_window_size(1280, 860)
    playground = Playground(browser, str(server.client.base_url.join("/playground/")))
    playground.open()
    yield playground
    for handle in browser.window_handles[1:]:  # tabs a test opened
        browser.switch_to.window(handle)
        browser.close()
    browser.switch_to.window(browser.window_handles[0])


@pytest.fixture
def screenshot_path(tmp_path: Path) -> Path:
    """Where the screenshot goes: PLAYGROUND_SCREENSHOT (docs/playground.png: relative to the
    project, as the tests run in a directory of their own), or the test's tmp_path."""
    wanted = os.environ.get("PLAYGROUND_SCREENSHOT")
    return PROJECT_DIR / wanted if wanted else tmp_path / "playground.png"


@contextmanager
def behind_a_path_prefix(upstream: str, prefix: str = "/agent") -> Iterator[str]:
    """A reverse proxy that serves `upstream` at `prefix`/ with the prefix taken off the path (as
    nginx's `location /agent/ { proxy_pass http://upstream/; }` does); yields its URL there."""
    client = httpx.AsyncClient(base_url=upstream, timeout=None)

    async def forward(request: Request) -> Response:
        if not request.url.path.startswith(f"{prefix}/"):
            return PlainTextResponse("Not behind the prefix", status_code=404)
        path = request.url.path.removeprefix(prefix)
        url = f"{path}?{request.url.query}" if request.url.query else path
        headers = [(k, v) for k, v in request.headers.raw if k not in (b"host", b"content-length")]
        sent = client.build_request(
            request.method, url, headers=headers, content=await request.body()
        )
        answer = await client.send(sent, stream=True)
        skipped = ("content-length", "transfer-encoding")  # the proxy streams the body anew
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers={k: v for k, v in answer.headers.items() if k not in skipped},
            background=BackgroundTask(answer.aclose),
        )

    methods = ["GET", "POST", "DELETE"]
    proxy = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/{path:path}", forward, methods=methods)]),
            host="127.0.0.1",
            port=free_port(),
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=proxy.run)
    thread.start()
    try:
        while not proxy.started:
            assert thread.is_alive(), "the proxy did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{proxy.config.port}{prefix}/"
    finally:
        proxy.should_exit = True
        thread.join()
