"""cruft: a project made from one template commit takes a later one cleanly, its .env untouched."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .baking import TEMPLATE_DIR, tool_env

# What is not part of the template: the dev virtualenv, caches, build output, git's own files.
NOT_TEMPLATE = shutil.ignore_patterns(
    ".git", ".venv", "build", "__pycache__", ".pytest_cache", ".ruff_cache"
)
CHANGE = "\nA line the newer template commit adds.\n"


def run(*command: str | Path, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"{command} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def commit_all(directory: Path, message: str, env: dict[str, str]) -> None:
    run("git", "add", "--all", cwd=directory, env=env)
    run("git", "commit", "--quiet", "--message", message, cwd=directory, env=env)


@pytest.mark.parametrize("project_in_git", [True, False], ids=["git-project", "plain-directory"])
def test_cruft_update_applies_cleanly_and_keeps_env(tmp_path: Path, project_in_git: bool) -> None:
    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    identity |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    # A private cookiecutter config: no replay file of the user's is read or written.
    config = tmp_path / "cookiecutter-config.yaml"
    config.write_text(f"replay_dir: {tmp_path / 'replay'}\n", encoding="utf-8")
    env = tool_env(COOKIECUTTER_CONFIG=str(config), **identity)
    cruft = (sys.executable, "-m", "cruft")

    # The template as a git repository of two commits: this working tree, then a change to it.
    template = tmp_path / "template"
    shutil.copytree(TEMPLATE_DIR, template, ignore=NOT_TEMPLATE)
    run("git", "init", "--quiet", "--initial-branch=main", cwd=template, env=env)
    commit_all(template, "the template as it is", env)
    run(
        *cruft,
        "create",
        template,
        "--no-input",
        "--output-dir",
        tmp_path / "out",
        cwd=tmp_path,
        env=env,
    )
    project = tmp_path / "out" / "my-agent"
    if project_in_git:
        run("git", "init", "--quiet", "--initial-branch=main", cwd=project, env=env)
        commit_all(project, "generated", env)
    readme = template / "{{cookiecutter.__project_slug}}" / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + CHANGE, encoding="utf-8")
    commit_all(template, "a newer template", env)
    env_file = (project / ".env").read_bytes()

    output = run(*cruft, "update", "--skip-apply-ask", cwd=project, env=env)

    assert (project / "README.md").read_text(encoding="utf-8").endswith(CHANGE), output
    assert not list(project.rglob("*.rej")), output
    assert (project / ".env").read_bytes() == env_file, "the project's secrets are kept"
    run(*cruft, "check", cwd=project, env=env)  # exits 1 unless the project is up to date
