"""Render the default project into build/demo, install it, start it and talk to it, then stop it."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
DEMO_DIR = TEMPLATE_DIR / "build" / "demo"


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with status {server.returncode}")
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"the server did not answer {url} within {timeout:.0f} s")


def main() -> None:
    step(f"Rendering the default project into {DEMO_DIR.relative_to(TEMPLATE_DIR)}")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    project = Path(cookiecutter(str(TEMPLATE_DIR), no_input=True, output_dir=str(DEMO_DIR)))
    package = project.name.replace("-", "_")
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env["UV_PYTHON_DOWNLOADS"] = "never"

    step("Installing it with uv")
    subprocess.run(["uv", "sync", "--quiet"], cwd=project, env=env, check=True)

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    step(f"Starting it on {base_url}")
    server = subprocess.Popen(
        ["uv", "run", "--no-sync", "uvicorn", f"{package}.main:app", "--port", str(port)],
        cwd=project,
        env=env,
    )
    try:
        wait_until_up(f"{base_url}/health", server)
        step(f"GET {base_url}/health")
        print(json.dumps(get(f"{base_url}/health"), indent=2))
    finally:
        step("Stopping it")
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
