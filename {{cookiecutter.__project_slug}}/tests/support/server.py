"""The service as it runs in production: a real uvicorn process, spoken to over real HTTP."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from .databases import new_api_key

PROJECT_DIR = Path(__file__).resolve().parents[2]
# An app factory with a slow scripted model and a slow tool (slow_app.py).
SLOW_APP = "tests.support.slow_app:create_slow_app"


@dataclass
class Server:
    """A running uvicorn process, and a client that sends the API key."""

    client: httpx.Client
    process: subprocess.Popen


def free_port() -> int:
    """A port of 127.0.0.1 for a server this test starts next, which no one else will be given.

    A port merely found free could be given again before the server bound it, to another test's
    server or to an outgoing connection: a test then spoke to another test's server, which went
    away mid-test. So the port is left in TIME_WAIT by a connection to itself: the kernel hands it
    to no one asking for any free port, while a server binding it by number with SO_REUSEADDR (as
    uvicorn, PostgreSQL and the metrics server do) still can. For as long as TIME_WAIT lasts (60 s
    on Linux): longer than a server takes to start, but for one that fails to."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = listener.getsockname()
        with socket.create_connection(address):
            accepted, _ = listener.accept()
            accepted.close()  # this end closes first: it is the one that waits in TIME_WAIT
        return address[1]


@contextmanager
def server_process(
    database_url: str,
    app: str = "{{ cookiecutter.__package_name }}.main:app",
    log: IO[str] | None = None,
    serve: bool = False,
    serve_options: Sequence[str] = (),
    **env: str,
) -> Iterator[Server]:
    """Start `uvicorn` on this database (with the echo model, unless `app` is another factory),
    or with `serve`, the project's own command, as the image runs it (with `serve_options`). The
    server's output goes to `log` if given. Stopped with SIGTERM at the end, unless the test
    killed it already."""
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MODEL_PROVIDER": "echo",
        "AUTH_MODE": "api_keys",
        **env,
    }
    if serve:
        environment.setdefault("LOG_LEVEL", "WARNING")
        main = "from {{ cookiecutter.__package_name }}.cli import main; main()"
        command = [sys.executable, "-c", main, "serve", "--port", str(port), *serve_options]
    else:
        command = [
            sys.executable, "-m", "uvicorn", app, *(["--factory"] if ":create" in app else []),
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        ]  # fmt: skip
    # The project's directory on the path, so that `tests.support.slow_app` is importable; an
    # empty one to start in, so that the developer's .env stays out, as it does of the tests'.
    paths = [str(PROJECT_DIR), os.environ.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    with tempfile.TemporaryDirectory() as empty:
        process = subprocess.Popen(command, env=environment, cwd=empty, stdout=log, stderr=log)
        headers = {"Authorization": f"Bearer {new_api_key(database_url)}"}
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
            ) as client:
                wait_until_healthy(client, process)
                yield Server(client, process)
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=30)


@contextmanager
def running_server(database_url: str, **options: str | IO[str] | None) -> Iterator[httpx.Client]:
    """`server_process`, for tests that only talk to it."""
    with server_process(database_url, **options) as server:  # type: ignore[arg-type]
        yield server.client


def wait_until_healthy(
    client: httpx.Client, process: subprocess.Popen, timeout: float = 60
) -> None:
    """Wait for the server to answer. Generous: on a machine as loaded as CI's, starting Python
    and importing the SDK took more than 30 s once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with status {process.returncode}")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"uvicorn did not answer /health within {timeout} s")
