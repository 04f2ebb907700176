"""Uvicorn servers of the baked project for the benchmarks, and the CPU they spend."""

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

TEMPLATE_DIR = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    headers: dict[str, str] = field(default_factory=dict)  # what every request to it sends

    def cpu_seconds(self) -> float:
        """User and system CPU the server process has spent so far (Linux)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_memory_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0


def python(project: Path) -> str:
    """The interpreter of the project's environment, which `uv sync` made."""
    return str(project / ".venv" / "bin" / "python")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(app: str, project: Path, api_key: str | None = None, **env: str) -> Iterator[Server]:
    """Run `uvicorn <app>` (a factory when it names one in benchmarks.apps) in the project, with
    the project's own environment; with `api_key`, in AUTH_MODE=api_keys, its requests sending
    that key."""
    port = free_port()
    factory = ["--factory"] if app.startswith("benchmarks.") else []
    command = [python(project), "-m", "uvicorn", app, *factory, "--port", str(port)]
    environment = {
        **os.environ,
        "PYTHONPATH": str(TEMPLATE_DIR),
        "MODEL_PROVIDER": "echo",
        # The benchmarks measure a replica, not a caller's share of it: their servers listen on
        # loopback, and their one principal may use the whole replica. Authentication is off
        # but where a benchmark measures what it costs.
        "AUTH_MODE": "api_keys" if api_key else "none",
        "MAX_TURNS_PER_PRINCIPAL": "1000000",
        "TURNS_PER_MINUTE": "1000000",
        **env,
    }
    process = subprocess.Popen([*command, "--log-level", "warning"], cwd=project, env=environment)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    server = Server(f"http://127.0.0.1:{port}", process, headers)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=60)


def wait_until_healthy(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with status {server.process.returncode}")
        try:
            if httpx.get(f"{server.url}/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"uvicorn did not answer /health within {timeout} s")
