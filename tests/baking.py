"""Helpers that bake the template and let tests ask questions of the result."""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
from cookiecutter.main import cookiecutter

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
DEFAULTS = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
# How baked projects resolve their dependencies; the template's CI also runs `lowest-direct`.
RESOLUTION = os.environ.get("TEMPLATE_TEST_RESOLUTION", "highest")


def tool_env(**extra: str) -> dict[str, str]:
    """Environment for commands run inside a baked project.

    The template's own virtualenv must not leak into the baked project's uv, and uv must use the
    installed Python instead of downloading one.
    """
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.update(extra)
    return env


@dataclass(frozen=True)
class BakedProject:
    """A rendered project, with the questions a test asks of it."""

    path: Path
    answers: dict[str, object]
    replay_file: Path

    @property
    def package_name(self) -> str:
        return self.path.name.replace("-", "_")

    @property
    def package_dir(self) -> Path:
        return self.path / "src" / self.package_name

    def has_file(self, relative: str) -> bool:
        return (self.path / relative).exists()

    def read(self, relative: str) -> str:
        return (self.path / relative).read_text(encoding="utf-8")

    def files(self, suffix: str = "") -> list[Path]:
        """Every file the template wrote (none of a virtualenv or cache made since)."""
        ignored = {".venv", ".pytest_cache", ".ruff_cache", "__pycache__", ".data"}
        return sorted(
            path
            for path in self.path.rglob(f"*{suffix}")
            if path.is_file() and ignored.isdisjoint(path.relative_to(self.path).parts)
        )

    def run(self, *command: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        """Run a command in the project directory and capture its output."""
        result = subprocess.run(
            command, cwd=self.path, env=tool_env(**env), capture_output=True, text=True
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(command)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def install(self, resolution: str = RESOLUTION, python: str | None = None) -> None:
        """Create the project's own .venv with uv, as `make install` does: with the newest
        release of each dependency (uv's `highest`), or the lowest each allows (`lowest-direct`)."""
        choice = ["--python", python] if python else []
        self.run("uv", "sync", "--quiet", "--resolution", resolution, *choice)


Bake = Callable[..., BakedProject]


def private_config(directory: Path) -> Path:
    """A cookiecutter config of its own in `directory`: replay files go there, not into the
    user's home directory."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "cookiecutter-config.yaml"
    config.write_text(f"replay_dir: {directory / 'replay'}\n", encoding="utf-8")
    return config


def bake_project(work_dir: Path, **answers: object) -> BakedProject:
    """Render the template into `work_dir` with these answers (the rest default)."""
    config = private_config(work_dir)
    path = cookiecutter(
        str(TEMPLATE_DIR),
        no_input=True,
        extra_context=answers,
        output_dir=str(work_dir / "out"),
        config_file=str(config),
    )
    return BakedProject(Path(path), answers, work_dir / "replay" / f"{TEMPLATE_DIR.name}.json")


def run_cookiecutter_cli(
    output_dir: Path, *answers: str, stdin: str | None = None, stdout: int | IO = subprocess.PIPE
) -> subprocess.CompletedProcess:
    """Run the `cookiecutter` command as a user would; answers are KEY=VALUE pairs. Its replay
    file goes beside `output_dir`; its output is captured unless `stdout` says where it goes."""
    config = private_config(output_dir.parent)
    command = [sys.executable, "-m", "cookiecutter", str(TEMPLATE_DIR), "-o", str(output_dir)]
    command += ["--config-file", str(config)]
    if stdin is None:
        command.append("--no-input")
    return subprocess.run(
        [*command, *answers],
        input=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=tool_env(),
    )


def render_hook(source: str, **answers: object) -> str:
    """Render a hook as cookiecutter would, from the default answers plus these."""
    from cookiecutter.environment import StrictEnvironment
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    context = generate_context(str(TEMPLATE_DIR / "cookiecutter.json"), extra_context=answers)
    context["cookiecutter"] = prompt_for_config(context, no_input=True)
    env = StrictEnvironment(context=context, keep_trailing_newline=True)
    return env.from_string(source).render(**context)


def load_hook(name: str) -> dict[str, object]:
    """The names a hook defines, rendered from the default answers and run without its main()
    (which runs only as a script)."""
    namespace: dict[str, object] = {}
    exec(render_hook((TEMPLATE_DIR / "hooks" / name).read_text(encoding="utf-8")), namespace)
    return namespace
