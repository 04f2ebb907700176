"""Finish the generated project: drop the files of unselected options, write .env, print next steps.

Runs under the interpreter that runs cookiecutter: standard library only. Safe to run twice: files
already removed stay removed and an existing .env (with its secrets) is kept.
"""

import contextlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

PROJECT_SLUG = {{ cookiecutter.__project_slug | tojson }}
PACKAGE_NAME = {{ cookiecutter.__package_name | tojson }}
# Cookiecutter converts every answer to a boolean option into true/false before rendering.
INCLUDE_EXAMPLE_TOOLS = json.loads("{{ cookiecutter.include_example_tools | tojson }}")
GITHUB_ACTIONS = json.loads("{{ cookiecutter.github_actions | tojson }}")
KUBERNETES = json.loads("{{ cookiecutter.kubernetes | tojson }}")
AGENTCORE = json.loads("{{ cookiecutter.agentcore | tojson }}")
MODEL_PROVIDER = {{ cookiecutter.model_provider | tojson }}

# The placeholders in .env.example that .env gets fresh secrets for; every occurrence is replaced,
# so the password repeated inside DATABASE_URL stays consistent.
POSTGRES_PASSWORD_PLACEHOLDER = "change-me-postgres-password"
CURSOR_SECRET_PLACEHOLDER = "change-me-cursor-secret"
# The settings of .env.example that the answers choose.
ANSWERED_SETTINGS = ("MODEL_PROVIDER", "AUTH_MODE")

PACKAGE_DIR = Path("src") / PACKAGE_NAME
# The files of the options that can be turned off: removing these only, a bake over an existing
# project (`cookiecutter -f`) keeps what its owner added beside them (workflows, overlays).
GITHUB_ACTIONS_FILES = [".github/dependabot.yml", ".github/workflows/ci.yml"]
KUBERNETES_FILES = [
    f"deploy/kubernetes/{name}"
    for name in (
        "base/deployment.yaml",
        "base/hpa.yaml",
        "base/kustomization.yaml",
        "base/networkpolicy.yaml",
        "base/pdb.yaml",
        "base/service.yaml",
        "base/serviceaccount.yaml",
        "base/settings.env",
        "migration/job.yaml",
        "migration/kustomization.yaml",
        "overlays/example/kustomization.yaml",
        "overlays/example/migration/kustomization.yaml",
    )
]


def remove(*paths: Path | str) -> None:
    """Delete files, then the folders they leave empty; a file that is already gone is fine."""
    for path in map(Path, paths):
        path.unlink(missing_ok=True)
        for folder in path.parents:
            if folder == Path(".") or not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()


def remove_example_tools() -> None:
    """The agent then starts with no tools."""
    remove(PACKAGE_DIR / "tools.py", Path("tests") / "test_tools.py")


def remove_github_actions() -> None:
    remove(*GITHUB_ACTIONS_FILES)


def remove_kubernetes() -> None:
    remove(*KUBERNETES_FILES, "tests/test_kubernetes.py", "tests/support/kustomize.py")


def remove_agentcore() -> None:
    remove(PACKAGE_DIR / "api" / "agentcore.py", Path("tests", "api", "test_agentcore.py"))


def remove_other_providers_client_tests() -> None:
    """The tests of a provider's client import its library, installed for the chosen one only."""
    for provider in ("openai", "ollama"):
        if provider != MODEL_PROVIDER:
            remove(Path("tests") / f"test_{provider}_client.py")


def env_settings(text: str) -> dict[str, str]:
    """The NAME=value lines of an env file; comments and blank lines skipped."""
    lines = (line.strip() for line in text.splitlines())
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def warn_of_stale_settings(kept: str, example: str) -> None:
    """Say which settings that follow the answers an existing .env, kept for its secrets, still
    sets otherwise (a bake over a project with other answers, `cookiecutter -f`)."""
    kept_settings, new_settings = env_settings(kept), env_settings(example)
    stale = [
        f"{name}={kept_settings[name]}"
        for name in ANSWERED_SETTINGS
        if name in kept_settings and kept_settings[name] != new_settings.get(name)
    ]
    if stale:
        print(
            f"WARNING: kept .env and its secrets, but it still sets {', '.join(stale)}, unlike "
            "this bake's .env.example: edit .env to match",
            file=sys.stderr,
        )


def write_env_file() -> None:
    """Create .env from .env.example with fresh secrets; keep an existing .env and its secrets."""
    env_file = Path(".env")
    text = Path(".env.example").read_text(encoding="utf-8")
    if env_file.exists():
        warn_of_stale_settings(env_file.read_text(encoding="utf-8"), text)
        return
    text = text.replace(POSTGRES_PASSWORD_PLACEHOLDER, secrets.token_urlsafe(24))
    text = text.replace(CURSOR_SECRET_PLACEHOLDER, secrets.token_urlsafe(32))
    # Created readable by its owner only: written first and chmod-ed after, the secrets would be
    # readable by anyone on the machine in between. O_EXCL: never write through a file or link
    # that appeared since the check above.
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError:
        env_file.unlink(missing_ok=True)  # no half-written .env
        raise


def git_init() -> None:
    """Start a repository when COOKIECUTTER_GIT_INIT=1 asks for one and none exists yet. The
    project is whole without one: a git that is missing, or too old for `--initial-branch`
    (before 2.28), gets a warning, not the project deleted."""
    if Path(".git").exists():
        return
    command = ["git", "init", "--quiet", "--initial-branch=main"]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as error:
        reason = getattr(error, "stderr", None) or error
        print(
            f"WARNING: no repository started ({str(reason).strip()}): run `git init` in the "
            "project yourself",
            file=sys.stderr,
        )


def print_next_steps() -> None:
    text = (
        f"\nCreated {PROJECT_SLUG}. Next:\n"
        f"  cd {Path.cwd()}\n"
        "  make install   # uv sync: creates .venv with the project and its dev tools\n"
        "  make test\n"
        "  make dev       # http://127.0.0.1:8000/docs\n"
    )
    # Written at once, unbuffered: an output closed or full fails here, where it is ignored,
    # not in the flush at exit, which would fail the hook and have the project deleted.
    with contextlib.suppress(OSError):
        os.write(sys.stdout.fileno(), text.encode())


def main() -> None:
    if not INCLUDE_EXAMPLE_TOOLS:
        remove_example_tools()
    if not GITHUB_ACTIONS:
        remove_github_actions()
    if not KUBERNETES:
        remove_kubernetes()
    if not AGENTCORE:
        remove_agentcore()
    remove_other_providers_client_tests()
    write_env_file()
    # The project is whole from here: nothing that follows may undo it.
    if os.environ.get("COOKIECUTTER_GIT_INIT") == "1":
        git_init()
    print_next_steps()


if __name__ == "__main__":
    try:
        main()
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"ERROR: could not finish the project: {error}", file=sys.stderr)
        sys.exit(1)
