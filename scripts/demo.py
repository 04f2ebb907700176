"""Render the default project into build/demo, install it, start it and talk to it, then keep it
serving for the playground until Ctrl+C (`--no-wait`: stop at once).

The service runs on its embedded SQLite database with MODEL_PROVIDER=echo, the offline model, so
the demo needs no credentials but an API key it makes with the project's command line: two
/process turns and one /process-streaming turn on one session, then that session's history, then
the address of the playground (PLAYGROUND=true in the generated .env) where it can go on.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
# Where the project is rendered; the template's tests point it elsewhere.
DEMO_DIR = Path(os.environ.get("DEMO_DIR", TEMPLATE_DIR / "build" / "demo"))


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, key: str = "") -> object:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def post(url: str, body: dict, key: str) -> urllib.request.Request:
    return urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        method="POST",
    )


def show(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def converse(base_url: str, key: str) -> None:
    step(f"GET {base_url}/health")
    show(get(f"{base_url}/health"))

    step("POST /process: a new session")
    with urllib.request.urlopen(post(f"{base_url}/process", {"prompt": "Hello!"}, key)) as response:
        first = json.load(response)
    show(first)
    session_id = first["session_id"]

    step("POST /process: the same session")
    body = {"prompt": "Do you remember me?", "session_id": session_id}
    with urllib.request.urlopen(post(f"{base_url}/process", body, key)) as response:
        show(json.load(response))

    step("POST /process-streaming: the same session, as server-sent events")
    body = {"prompt": "Stream this answer, please.", "session_id": session_id}
    with urllib.request.urlopen(post(f"{base_url}/process-streaming", body, key)) as response:
        for line in response:
            print(f"  {line.decode().rstrip()}")

    step(f"GET /sessions/{session_id}/history")
    history = get(f"{base_url}/sessions/{session_id}/history", key)
    for message in history["messages"]:
        print(f"  {message['message_id']}  {message['role']:<9}  {message['text']}")
    print(f"\n{len(history['messages'])} messages in session {session_id}")


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


def show_playground(base_url: str, key: str) -> None:
    url = f"{base_url}/playground/"
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.HTTPError as error:
        sys.exit(f"{url} answered {error.code}: the project's .env should set PLAYGROUND=true")
    step("The playground: a chat page served by the service")
    print(f"Playground: {url}")
    print(f"Open it in a browser and paste this API key when it asks for one:\n  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Render the default project, talk to it, then serve its playground."
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="stop the service at the end instead of serving"
    )
    wait = not parser.parse_args().no_wait

    step(f"Rendering the default project into {DEMO_DIR}")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    # The template's own defaults, whatever the user's cookiecutter config says.
    rendered = cookiecutter(
        str(TEMPLATE_DIR), no_input=True, output_dir=str(DEMO_DIR), default_config=True
    )
    project = Path(rendered)
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env["UV_PYTHON_DOWNLOADS"] = "never"

    step("Installing it with uv")
    subprocess.run(["uv", "sync", "--quiet"], cwd=project, env=env, check=True)

    step(f"Making an API key: uv run {project.name} create-api-key demo")
    made = subprocess.run(
        ["uv", "run", "--no-sync", project.name, "create-api-key", "demo"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    key = made.stdout.splitlines()[-1]

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    step(f"Starting it on {base_url}")
    server = subprocess.Popen(
        ["uv", "run", "--no-sync", project.name, "serve", "--port", str(port)],
        cwd=project,
        env={**env, "MODEL_PROVIDER": "echo"},
    )
    try:
        wait_until_up(f"{base_url}/health", server)
        converse(base_url, key)
        show_playground(base_url, key)
        if wait:
            print("\nServing until Ctrl+C.", flush=True)
            server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        step("Stopping it")
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
