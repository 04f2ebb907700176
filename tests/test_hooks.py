"""The hooks: refused answers leave nothing behind, answers are data and never code."""

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .baking import (
    DEFAULTS,
    TEMPLATE_DIR,
    Bake,
    load_hook,
    render_hook,
    run_cookiecutter_cli,
    tool_env,
)

REFUSED = {
    "name-starts-with-a-digit": (["project_name=1 bad"], "must start with a letter"),
    "name-without-letters": (["project_name=___"], "must start with a letter"),
    "keyword": (["project_name=class"], "is a Python keyword"),
    "soft-keyword": (["project_name=match"], "is a Python keyword"),
    "stdlib-module": (["project_name=JSON"], "would shadow the standard library module"),
    "stdlib-module-with-hyphen": (["project_name=Concurrent"], "standard library"),
    "dependency-strands": (["project_name=Strands"], "would shadow the 'strands' dependency"),
    "dependency-fastapi": (["project_name=FastAPI"], "would shadow the 'fastapi' dependency"),
    "tests-package": (["project_name=Tests"], "would shadow the 'tests' dependency"),
    "stdlib-test-package": (["project_name=Test"], "would shadow the standard library module"),
    "dependency-jwt": (["project_name=JWT"], "would shadow the 'jwt' dependency"),
    "dependency-distribution": (["project_name=PyJWT"], "is the name of a dependency"),
    "dependency-distribution-only": (["project_name=Python JSON Logger"], "name of a dependency"),
    # python-dotenv, a dependency of pydantic-settings: its module would be shadowed.
    "indirect-dependency": (["project_name=Dotenv"], "would shadow the 'dotenv' dependency"),
    "indirect-distribution": (["project_name=Python Dateutil"], "name of a dependency"),
    # Agent-Agent-...: 38 characters, one more than the generated code's lines leave room for.
    "name-too-long": (["project_name=" + "Agent " * 5 + "Abcdefgh"], "leave room for"),
    # The byte 0xE9 alone, as a Latin-1 terminal sends "é".
    "description-not-utf8": (["description=Caf\udce9 agent"], "not UTF-8"),
    # The project's command, in .venv/bin, would clash: with the environment's own, uv refusing
    # to install it; with a dependency's (schemathesis's `st`); with a tool `uv run` would hide.
    "environment-command": (["project_name=Python"], "the name of a command"),
    "dependency-command": (["project_name=ST"], "the name of a command"),
    "tool-command": (["project_name=UV"], "the name of a command"),
    # Package metadata would read the author as two: "Doe" and "Jane <you@example.com>".
    "author-with-comma": (["author_name=Doe, Jane"], "which package metadata would misread"),
    "author-with-brackets": (["author_name=Zoe [QA]"], "which package metadata would misread"),
    "email-with-comma": (["author_email=a,b@example.com"], "is not an email address"),
    "email-without-at": (["author_email=me.example.com"], "is not an email address"),
    "email-without-domain": (["author_email=me@localhost"], "is not an email address"),
    "email-not-utf8": (["author_email=caf\udce9@example.com"], "not UTF-8"),
    # Typed at a prompt, the spaces would be stripped; given on the command line, they are not.
    "description-with-trailing-space": (["description=An agent "], "begins or ends with white"),
}


@pytest.mark.parametrize(("answers", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_answer_fails_with_one_line_and_leaves_nothing(
    tmp_path: Path, answers: list[str], message: str
) -> None:
    (tmp_path / "out").mkdir()  # as `-o ~/src` is: a name that slugifies to nothing was refused
    result = run_cookiecutter_cli(tmp_path / "out", *answers)  # by cookiecutter, not the hook

    assert result.returncode == 1
    errors = [
        line
        for line in result.stderr.splitlines()
        if line.startswith("ERROR: ") and "hook" not in line
    ]
    assert len(errors) == 1, result.stderr
    assert message in errors[0]
    assert " e.g. " in errors[0] or "use the form" in errors[0], "the message says what to type"
    assert not any((tmp_path / "out").iterdir())


def test_accepted_names(bake: Bake) -> None:
    project = bake(project_name="Support Desk 2")

    assert project.path.name == "support-desk-2"
    assert project.package_dir.name == "support_desk_2"


def test_post_gen_hook_is_safe_to_run_twice(bake: Bake, tmp_path: Path) -> None:
    project = bake(include_example_tools=False, github_actions=False)
    env_before = project.read(".env")
    rendered_hook = project.path.parent / "post_gen_project.py"
    hook = (TEMPLATE_DIR / "hooks" / "post_gen_project.py").read_text(encoding="utf-8")
    rendered_hook.write_text(render_hook(hook, include_example_tools=False, github_actions=False))

    project.run("python3", str(rendered_hook))

    assert project.read(".env") == env_before, "an existing .env and its secrets are kept"
    assert not (project.package_dir / "tools.py").exists()


def test_every_dependency_of_the_generated_project_is_a_refused_name(bake: Bake) -> None:
    """Every third-party module the generated code imports would be shadowed by a package of its
    name, and every distribution its pyproject.toml names would be a dependency of itself: the
    pre-generation hook refuses them all. (test_generated_suites.py checks the rest of what each
    baked project installs, dependencies of dependencies.)"""
    hook = load_hook("pre_gen_project.py")
    project = bake(agentcore=True)  # every module there is

    imported = set()
    for path in project.path.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.partition(".")[0])
    third_party = imported - sys.stdlib_module_names - {project.package_name}
    assert third_party - hook["DEPENDENCY_MODULES"] == set()

    pyproject = tomllib.loads(project.read("pyproject.toml"))
    requirements = [
        *pyproject["project"]["dependencies"],
        *pyproject["build-system"]["requires"],
        *(r for group in pyproject["dependency-groups"].values() for r in group),
    ]
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group().lower()
        slug = re.sub(r"[._-]+", "-", name)
        refused = hook["slug_problem"](slug) or hook["package_problem"](slug.replace("-", "_"))
        assert refused, f"{requirement}: a project of that name would depend on itself"


def test_a_bake_over_a_project_with_other_answers_says_what_its_kept_env_still_sets(
    tmp_path: Path,
) -> None:
    """`cookiecutter -f` keeps .env for its secrets: its MODEL_PROVIDER and AUTH_MODE are the
    earlier answers', which the warning names."""
    output_dir = tmp_path / "out"
    assert run_cookiecutter_cli(output_dir, "model_provider=anthropic").returncode == 0
    env_before = (output_dir / "my-agent" / ".env").read_text(encoding="utf-8")

    again = run_cookiecutter_cli(output_dir, "-f", "model_provider=openai", "auth_mode=api_keys")

    assert again.returncode == 0, again.stderr
    assert (output_dir / "my-agent" / ".env").read_text(encoding="utf-8") == env_before
    warnings = [line for line in again.stderr.splitlines() if line.startswith("WARNING: ")]
    assert len(warnings) == 1, again.stderr
    assert "MODEL_PROVIDER=anthropic" in warnings[0]
    assert "AUTH_MODE" not in warnings[0]


def test_a_bake_over_a_project_with_options_turned_off_keeps_the_owners_files_there(
    tmp_path: Path,
) -> None:
    """`cookiecutter -f` with github_actions and kubernetes off removes the template's workflow
    and manifests, and nothing that the project's owner added beside them."""
    output_dir = tmp_path / "out"
    assert run_cookiecutter_cli(output_dir).returncode == 0
    project = output_dir / "my-agent"
    owners = [
        Path(".github", "CODEOWNERS"),
        Path(".github", "workflows", "release.yml"),
        Path("deploy", "kubernetes", "overlays", "production", "kustomization.yaml"),
    ]
    for path in owners:
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text("the owner's\n", encoding="utf-8")

    again = run_cookiecutter_cli(output_dir, "-f", "github_actions=no", "kubernetes=no")

    assert again.returncode == 0, again.stderr
    for path in owners:
        assert (project / path).read_text(encoding="utf-8") == "the owner's\n", path
    left = {
        str(path.relative_to(project))
        for folder in (".github", "deploy/kubernetes")
        for path in (project / folder).rglob("*")
        if path.is_file()
    }
    assert left == set(map(str, owners))
    assert not (project / "tests" / "test_kubernetes.py").exists()


def test_the_post_gen_hook_names_every_file_of_the_options_it_removes() -> None:
    hook = load_hook("post_gen_project.py")
    project = TEMPLATE_DIR / "{{cookiecutter.__project_slug}}"

    for folder, named in [
        (".github", hook["GITHUB_ACTIONS_FILES"]),
        ("deploy/kubernetes", hook["KUBERNETES_FILES"]),
    ]:
        files = {str(path.relative_to(project)) for path in (project / folder).rglob("*")}
        assert set(named) == {name for name in files if (project / name).is_file()}


def test_a_bake_with_options_turned_off_has_no_folder_of_theirs(bake: Bake) -> None:
    project = bake(github_actions=False, kubernetes=False)

    assert not project.has_file(".github")
    assert not project.has_file("deploy/kubernetes")
    assert project.has_file("deploy/compose")


# Modules of Python 3.11's standard library that other releases lack: 3.13 removed pipes, 3.12
# distutils, and 3.10 had no tomllib.
STDLIB_OF_3_11 = {"3.10": "Tomllib", "3.12": "Distutils", "3.13": "Pipes"}


@pytest.mark.parametrize(("version", "name"), STDLIB_OF_3_11.items())
def test_a_name_of_python_3_11s_standard_library_is_refused_by_any_python(
    tmp_path: Path, version: str, name: str
) -> None:
    """The hook runs under whatever Python runs cookiecutter; the project, on 3.11."""
    python = shutil.which(f"python{version}")
    env = {**os.environ, "PYENV_VERSION": version}  # which version a pyenv shim runs
    if python is None or subprocess.run([python, "-V"], env=env, capture_output=True).returncode:
        pytest.skip(f"Python {version} is not installed")
    hook = tmp_path / "pre_gen_project.py"
    source = (TEMPLATE_DIR / "hooks" / "pre_gen_project.py").read_text(encoding="utf-8")
    hook.write_text(render_hook(source, project_name=name), encoding="utf-8")

    result = subprocess.run([python, hook], env=env, capture_output=True, text=True)

    assert result.returncode == 1
    assert "would shadow the standard library module" in result.stderr


INJECTED = 'x"""; __import__("pathlib").Path("PWNED").touch(); """'


def test_injected_code_in_answers_never_runs(tmp_path: Path) -> None:
    # Typed at the prompts, as a user would: project name, description, author name, author email,
    # then the default of every other question.
    questions = [name for name in DEFAULTS if not name.startswith("_")]
    answers = ["My Agent", INJECTED, "Jane Doe", "me@example.com"] + [""] * (len(questions) - 4)
    output_dir = tmp_path / "out"

    result = run_cookiecutter_cli(output_dir, stdin="\n".join(answers) + "\n")
    # In the author's name the hook refuses it (package metadata would misread its quotes).
    answers[1:3] = ["An agent", INJECTED]
    refused = run_cookiecutter_cli(tmp_path / "again", stdin="\n".join(answers) + "\n")

    assert result.returncode == 0, result.stderr
    assert refused.returncode == 1, refused.stderr
    assert not list(tmp_path.rglob("PWNED")), "an answer was executed"
    project = output_dir / "my-agent"
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == INJECTED


@pytest.mark.parametrize("marker", ["{{ 7 * 7 }}", "{% if 1 %}J{% endif %}", "{# note #}"])
def test_an_answer_that_jinja_would_run_at_the_next_update_is_refused(
    tmp_path: Path, marker: str
) -> None:
    """Typed at a prompt, an answer is kept as typed, but in .cruft.json: `cruft update` renders it
    again, which ran the code of a `{{ ... }}` and turned "{{ 7 * 7 }}" into "49"."""
    questions = [name for name in DEFAULTS if not name.startswith("_")]
    answers = ["My Agent", f"Talks about {marker}"] + [""] * (len(questions) - 2)

    result = run_cookiecutter_cli(tmp_path / "out", stdin="\n".join(answers) + "\n")

    assert result.returncode == 1
    assert f"description holds {marker[:2]!r}" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


QUOTING = 'Say "hi" to C:\\agents\\new — über naïve ✓ 😀\nsecond line\twith a tab'


# Typographic quotes and dashes, as word processors and phones type them.
NAME_IN_QUOTES = 'Bob\u2019s "Best" Agent \u2013 v2'


def test_awkward_answers_give_valid_toml_and_python_that_passes_ruff(bake: Bake) -> None:
    project = bake(
        project_name=NAME_IN_QUOTES,
        description=QUOTING,
        author_name="Zoë 'Q' O'Brien \\",
    )

    pyproject = tomllib.loads(project.read("pyproject.toml"))
    assert pyproject["project"]["description"] == " ".join(QUOTING.split())
    assert pyproject["project"]["authors"][0]["name"] == "Zoë 'Q' O'Brien \\"
    module = ast.parse(project.read(f"src/{project.package_name}/__init__.py"))
    assert ast.get_docstring(module, clean=False) == QUOTING
    assert ast.literal_eval(module.body[1].value) == NAME_IN_QUOTES
    assert QUOTING in project.read("README.md")
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "check", "--no-cache", "."], cwd=project.path, check=True)
    subprocess.run([*ruff, "format", "--check", "--no-cache", "."], cwd=project.path, check=True)


def test_a_name_in_double_quotes_is_single_quoted_in_python(bake: Bake) -> None:
    """As `ruff format` would quote it: the fewer escapes."""
    project = bake(project_name='The "Best" Agent', description='Talks to "Claude"')

    assert project.read(f"src/{project.package_name}/__init__.py") == (
        "'Talks to \"Claude\"'\n\nPROJECT_NAME = 'The \"Best\" Agent'\n"
    )


@pytest.mark.parametrize("hook", ["pre_gen_project.py", "post_gen_project.py"])
def test_rendered_hooks_pass_ruff(tmp_path: Path, hook: str) -> None:
    source = (TEMPLATE_DIR / "hooks" / hook).read_text(encoding="utf-8")
    rendered = tmp_path / hook
    rendered.write_text(render_hook(source), encoding="utf-8")

    config = TEMPLATE_DIR / "pyproject.toml"
    for command in (["check"], ["format", "--check"]):
        subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--no-cache", "--config", config, rendered],
            check=True,
        )


def test_git_init_only_when_asked(bake: Bake, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not bake().has_file(".git")

    monkeypatch.setenv("COOKIECUTTER_GIT_INIT", "1")
    project = bake()

    assert project.has_file(".git")
    ignored = project.run("git", "check-ignore", ".env").stdout
    assert ignored.strip() == ".env"


def test_a_git_that_cannot_start_a_repository_leaves_the_project_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git before 2.28 refuses `--initial-branch`: the project is whole without a repository,
    and is kept, with a word of what to do."""
    old_git = tmp_path / "bin" / "git"
    old_git.parent.mkdir()
    old_git.write_text("#!/bin/sh\necho 'error: unknown option initial-branch' >&2\nexit 129\n")
    old_git.chmod(0o755)
    monkeypatch.setenv("PATH", f"{old_git.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("COOKIECUTTER_GIT_INIT", "1")

    result = run_cookiecutter_cli(tmp_path / "out")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "my-agent" / ".env").is_file()
    assert "unknown option" in result.stderr
    assert "run `git init` in the project yourself" in result.stderr


def test_an_output_that_cannot_be_written_leaves_the_project_whole(tmp_path: Path) -> None:
    """The next steps printed to a full disk (or a closed pipe): the project is kept."""
    with open("/dev/full", "w") as full:
        result = run_cookiecutter_cli(tmp_path / "out", stdout=full)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "my-agent" / ".env").is_file()


def test_a_cookiecutter_without_yes_no_questions_is_refused_in_one_line(tmp_path: Path) -> None:
    """Before 2.2, cookiecutter passed "True" and "False" as text: the project was rendered
    whole, then the post-generation hook died with a traceback."""
    old = ["uv", "tool", "run", "--from", "cookiecutter==2.1.1", "cookiecutter"]
    command = [*old, str(TEMPLATE_DIR), "--no-input", "-o", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, env=tool_env())

    assert result.returncode == 1
    assert "ERROR: this cookiecutter is older than 2.2" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "my-agent").exists()
