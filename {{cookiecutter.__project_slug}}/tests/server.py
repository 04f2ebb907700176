"""The service as it runs in production: a real uvicorn process, spoken to over real HTTP."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from .databases import API_KEY

PROJECT_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(
    database_url: str,
    app: str = "{{ cookiecutter.__package_name }}.main:app",
    log: IO[str] | None = None,
    **env: str,
) -> Iterator[httpx.Client]:
    """Start `uvicorn` on this database (with the echo model, unless `app` is another factory);
    yield a client that sends the API key. The server's output goes to `log` if given."""
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MODEL_PROVIDER": "echo",
        "API_KEY": API_KEY,
        **env,
    }
    command = [
        sys.executable, "-m", "uvicorn", app, *(["--factory"] if ":create" in app else []),
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    # The project directory, so that `tests.slow_server` is importable by the server.
    server = subprocess.Popen(command, env=environment, cwd=PROJECT_DIR, stdout=log, stderr=log)
    base_url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    try:
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
            wait_until_healthy(client, server)
            yield client
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_until_healthy(client: httpx.Client, server: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"uvicorn exited with status {server.returncode}")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"uvicorn did not answer /health within {timeout} s")
