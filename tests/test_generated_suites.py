"""Slow: install each combination with uv in its own environment; run its own lint and tests.

The baked suites run against the PostgreSQL on TEMPLATE_TEST_DATABASE_URL (default: the local
server on 127.0.0.1:5432) with REQUIRE_POSTGRES=1 whenever it is reachable, so that its PostgreSQL
tests fail rather than skip; .ci/run makes sure it is running. Likewise REQUIRE_BROWSER=1 and
REQUIRE_NODE=1, which .ci/run sets once Chromium and Node.js are there, reach the baked suites with
the rest of the environment: their browser tests and their test of /chat with the AI SDK's Node.js
client then fail rather than skip.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .baking import TEMPLATE_DIR, Bake, BakedProject, load_hook, tool_env
from .test_bake import COMBINATIONS

pytestmark = pytest.mark.slow

POSTGRES_URL = os.environ.get(
    "TEMPLATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def postgres_env() -> dict[str, str]:
    url = urlsplit(POSTGRES_URL)
    address = (url.hostname or "127.0.0.1", url.port or 5432)
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {address} is unreachable on CI")
        return {}
    return {"TEST_DATABASE_URL": POSTGRES_URL, "REQUIRE_POSTGRES": "1"}


# The suites on both databases first: they take longest, and a worker that starts one last keeps
# the whole run waiting (xdist hands tests out in this order).
def test_lowest_dependencies_pass_the_suite(bake: Bake) -> None:
    """Every lower bound of the generated pyproject.toml holds: the default project, with the
    lowest release of each direct dependency that it allows, passes its suite on PostgreSQL,
    the database of production. (Its tests on SQLite, run below with the newest releases, would
    add only the lower bound of aiosqlite.)"""
    project = bake()
    project.install(resolution="lowest-direct")
    env = postgres_env()
    if not env:
        pytest.skip("the lowest releases are tried on PostgreSQL")

    result = project.run("uv", "run", "pytest", "-n", "auto", "-m", "not sqlite", **env)

    assert " passed" in result.stdout
    assert " failed" not in result.stdout


# The Python each combination's suite runs on: the one running this suite (3.11, the oldest
# supported, on .ci/run) unless named here. Spread over the versions, the combinations test each
# of them without a suite of its own, each costing minutes of a CI that must stay under half an
# hour. Not on GitHub, where the template's workflow gives each version a job of its own.
NEWEST_PYTHON = "3.13"
PYTHONS = (
    {}
    if os.environ.get("GITHUB_ACTIONS")
    else {"anthropic-bare": NEWEST_PYTHON, "ollama-open-no-tools": "3.12"}
)


# The tests that run the same code in every combination: the options change the agent, the
# routes the app includes, the settings' defaults and the files the hook removes, never the
# store, the turns' concurrency and failures, the observability or the playground's page (but
# for the project's name in its title), and the tests pin AUTH_MODE.
# The default project's suite runs them on both databases, and the combination on the newest
# Python runs them again there; the other combinations leave them out, the one on 3.12 too (code
# that runs on 3.11 and 3.13 seldom fails between them, and not for minutes of every run).
SAME_IN_EVERY_COMBINATION = (
    "tests/store",
    "tests/concurrency",
    "tests/failures",
    "tests/observability",
    "tests/browser",
)


@pytest.mark.parametrize("name", COMBINATIONS)
def test_baked_project_passes_its_own_suite(bake: Bake, name: str) -> None:
    """The default project runs its suite on PostgreSQL and SQLite, the other combinations on
    SQLite alone: the options change no code that differs between the two databases."""
    project = bake(**COMBINATIONS[name])
    version = PYTHONS.get(name)
    python = installed_python(version) if version else None
    if version and python is None:
        warnings.warn(f"no Python {version} here: {name} runs on this one", stacklevel=1)
    project.install(python=python)
    assert names_the_hook_lets_through(project) == [], "add them to hooks/pre_gen_project.py"

    project.run("make", "lint")
    if name == "defaults":
        result = project.run("make", "test", **postgres_env())
    elif version == NEWEST_PYTHON and python is not None:
        result = project.run("make", "test")
    else:
        ignored = [f"--ignore={tests}" for tests in SAME_IN_EVERY_COMBINATION]
        result = project.run("uv", "run", "pytest", "-n", "auto", *ignored)

    if python is not None:
        assert f"Python {version}" in project.run("uv", "run", "python", "--version").stdout
    assert " passed" in result.stdout
    assert " failed" not in result.stdout


# The modules, the distributions and the commands an environment holds, as JSON.
INSTALLED = (
    "import importlib.metadata as m, json; print(json.dumps("
    "[list(m.packages_distributions()), [d.metadata['Name'] for d in m.distributions()], "
    "[e.name for e in m.entry_points(group='console_scripts')]]))"
)


def names_the_hook_lets_through(project: BakedProject) -> list[str]:
    """What the project's environment holds that a project of the same name would shadow (a
    module), depend on itself for (a distribution) or clash with (a command), and the
    pre-generation hook lets through: dependencies of dependencies too, which the generated code
    never names."""
    hook = load_hook("pre_gen_project.py")
    installed = json.loads(project.run("uv", "run", "python", "-c", INSTALLED).stdout)
    modules, distributions, commands = installed
    names = {name for name in modules if re.fullmatch(r"[a-z][a-z0-9_]*", name)}
    names -= sys.stdlib_module_names | {project.package_name}
    let_through = {name for name in names if not hook["package_problem"](name)}
    slugs = {re.sub(r"[-_.]+", "-", distribution).lower() for distribution in distributions}
    slugs |= set(commands)  # a command is named after the slug as it is
    for slug in slugs - {project.path.name}:
        if not hook["slug_problem"](slug) and not hook["package_problem"](slug.replace("-", "_")):
            let_through.add(slug)
    return sorted(let_through)


def installed_python(version: str) -> str | None:
    """An interpreter of `version`: on PATH, or one that pyenv installed (as on the machines
    that run the template's CI), never one that uv would download."""
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(map(str, pyenv_root.glob(f"versions/{version}.*/bin/python{version}")))
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    return None


def test_demo_holds_a_conversation(tmp_path: Path) -> None:
    """`make demo`: render, install, start, two turns and a streamed one, the history, then the
    playground's address (`--no-wait`: it stops instead of serving until Ctrl+C)."""
    demo = subprocess.run(
        [sys.executable, str(TEMPLATE_DIR / "scripts" / "demo.py"), "--no-wait"],
        env=tool_env(DEMO_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert demo.returncode == 0, demo.stderr
    assert "event: session" in demo.stdout
    assert "event: done" in demo.stdout
    assert re.search(r"^6 messages in session [0-9a-f-]{36}$", demo.stdout, re.MULTILINE)
    playground = r"^Playground: http://127\.0\.0\.1:\d+/playground/$"
    assert re.search(playground, demo.stdout, re.MULTILINE)
