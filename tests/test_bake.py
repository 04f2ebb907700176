"""Every option combination renders a clean project: no leftovers, valid files, lint-clean."""

import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from .baking import DEFAULTS, TEMPLATE_DIR, Bake, BakedProject

# Named combinations; together they cover every value of every option (checked below).
COMBINATIONS: dict[str, dict[str, object]] = {
    "defaults": {},
    "anthropic-bare": {
        "model_provider": "anthropic",
        "include_example_tools": False,
        "github_actions": False,
        "kubernetes": False,
    },
    "openai-jwt-agentcore": {"model_provider": "openai", "auth_mode": "jwt", "agentcore": True},
    # AUTH_MODE=none for development, and Kubernetes manifests that must not use it.
    "ollama-open-no-tools": {
        "model_provider": "ollama",
        "auth_mode": "none",
        "include_example_tools": False,
    },
    # A long name and a long description: the lines that hold them must still pass ruff.
    "litellm-long-name-no-ci": {
        "model_provider": "litellm",
        "github_actions": False,
        "project_name": "Customer Support Knowledge Base Agent",
        "description": "Answers customers' questions about their orders, returns and refunds "
        "from the knowledge base, and hands over to a person when it cannot.",
    },
}
OPTIONS = {
    name: value
    for name, value in DEFAULTS.items()
    if isinstance(value, (bool, list)) and not name.startswith("_")
}
# A GitHub Actions expression `${{ ... }}` is meant to stay; any other `{{` is a template leftover.
LEFTOVER = re.compile(r"(?<!\$)\{\{|\{%|cookiecutter\.")


def option_values(answers: dict[str, object], name: str) -> object:
    default = DEFAULTS[name][0] if isinstance(DEFAULTS[name], list) else DEFAULTS[name]
    return answers.get(name, default)


def test_combinations_cover_every_value_of_every_option() -> None:
    for name, default in OPTIONS.items():
        possible = set(default) if isinstance(default, list) else {True, False}
        used = {option_values(answers, name) for answers in COMBINATIONS.values()}
        assert used == possible, f"no combination sets {name} to {possible - used}"


@pytest.fixture(params=COMBINATIONS.values(), ids=COMBINATIONS.keys())
def project(request: pytest.FixtureRequest, bake: Bake) -> BakedProject:
    return bake(**request.param)


# Files cookiecutter copies as they are (it tells binary files by their content).
BINARY_SUFFIXES = {".png"}


def text_files(project: BakedProject) -> list[Path]:
    return [path for path in project.files() if path.suffix not in BINARY_SUFFIXES]


def test_no_template_text_is_left(project: BakedProject) -> None:
    for path in text_files(project):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not LEFTOVER.search(line), f"{path.relative_to(project.path)}:{number}: {line}"


def test_python_files_compile(project: BakedProject) -> None:
    for path in project.files(".py"):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")


def test_ruff_finds_nothing(project: BakedProject) -> None:
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "check", "--no-cache", "."], cwd=project.path, check=True)
    subprocess.run([*ruff, "format", "--check", "--no-cache", "."], cwd=project.path, check=True)


def test_toml_and_yaml_files_parse(project: BakedProject) -> None:
    for path in project.files(".toml"):
        tomllib.loads(path.read_text(encoding="utf-8"))
    for path in [*project.files(".yml"), *project.files(".yaml")]:
        yaml.safe_load(path.read_text(encoding="utf-8"))


def test_compose_and_workflow_files_follow_their_schemas(project: BakedProject) -> None:
    """As Docker Compose and GitHub read them: with the schemas that check-jsonschema bundles."""
    checks = {"vendor.compose-spec": [project.path / "compose.yaml"]}
    workflows = sorted((project.path / ".github" / "workflows").glob("*.yml"))
    if workflows:
        checks["vendor.github-workflows"] = workflows
        checks["vendor.dependabot"] = [project.path / ".github" / "dependabot.yml"]
    for schema, paths in checks.items():
        command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema]
        result = subprocess.run([*command, *map(str, paths)], capture_output=True, text=True)

        assert result.returncode == 0, result.stdout + result.stderr


def test_strands_extra_matches_the_provider(project: BakedProject) -> None:
    provider = option_values(project.answers, "model_provider")
    dependencies = tomllib.loads(project.read("pyproject.toml"))["project"]["dependencies"]
    strands = next(dep for dep in dependencies if dep.startswith("strands-agents"))

    expected = "strands-agents" if provider == "bedrock" else f"strands-agents[{provider}]"
    assert strands.startswith(f"{expected}>=")
    assert f"MODEL_PROVIDER={provider}\n" in project.read(".env.example")


def test_optional_files_follow_the_answers(project: BakedProject) -> None:
    tools = option_values(project.answers, "include_example_tools")
    assert (project.package_dir / "tools.py").exists() is tools
    assert project.has_file("tests/test_tools.py") is tools
    assert project.has_file(".github/workflows/ci.yml") is option_values(
        project.answers, "github_actions"
    )
    kubernetes = option_values(project.answers, "kubernetes")
    assert project.has_file("deploy/kubernetes/base/deployment.yaml") is kubernetes
    assert project.has_file("tests/test_kubernetes.py") is kubernetes
    assert ("kubernetes-validate" in project.read("pyproject.toml")) is kubernetes
    agentcore = option_values(project.answers, "agentcore")
    assert (project.package_dir / "api" / "agentcore.py").exists() is agentcore
    assert project.has_file("tests/api/test_agentcore.py") is agentcore
    provider = option_values(project.answers, "model_provider")
    for client in ("openai", "ollama"):
        assert project.has_file(f"tests/test_{client}_client.py") is (provider == client)


def env_values(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def test_env_file_holds_fresh_secrets(project: BakedProject, bake: Bake) -> None:
    env = env_values(project.read(".env"))

    assert "change-me" not in project.read(".env")
    assert len(env["POSTGRES_PASSWORD"]) >= 32
    assert env["AUTH_MODE"] == option_values(project.answers, "auth_mode")
    assert len(env["CURSOR_SECRET"]) >= 43
    assert ".env" in project.read(".gitignore").splitlines()
    assert stat.S_IMODE((project.path / ".env").stat().st_mode) == 0o600, "its owner's only"
    again = bake(**project.answers)
    again_env = env_values(again.read(".env"))
    assert again_env["POSTGRES_PASSWORD"] != env["POSTGRES_PASSWORD"]
    assert again_env["CURSOR_SECRET"] != env["CURSOR_SECRET"]


def test_secrets_stay_out_of_the_replay_file(project: BakedProject) -> None:
    secrets = [
        value
        for key, value in env_values(project.read(".env")).items()
        if key in {"POSTGRES_PASSWORD", "CURSOR_SECRET"}
    ]
    replay = project.replay_file.read_text(encoding="utf-8")

    assert secrets
    assert all(secret not in replay for secret in secrets)


def test_files_use_lf_line_endings(project: BakedProject) -> None:
    for path in text_files(project):
        assert b"\r\n" not in path.read_bytes(), path
    assert "eol=lf" in project.read(".gitattributes")


def test_binary_files_are_copied_unchanged(project: BakedProject) -> None:
    """The README's screenshot, byte for byte: never rendered, never given other line endings."""
    template = TEMPLATE_DIR / "{{cookiecutter.__project_slug}}"
    binaries = [path for path in template.rglob("*") if path.suffix in BINARY_SUFFIXES]

    assert binaries
    for path in binaries:
        copied = project.path / path.relative_to(template)
        assert copied.read_bytes() == path.read_bytes(), copied
