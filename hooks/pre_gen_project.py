"""Refuse answers that would render a broken project, before any file is written.

Runs under the interpreter that runs cookiecutter: standard library only. Each refusal prints one
line that says what was wrong and what would be accepted, and exits 1; cookiecutter then deletes
the half-made output directory.
"""

import json
import keyword
import re
import sys

# Answers are rendered through `tojson`: a JSON string is a valid Python string literal, so no
# answer can end its literal early and inject code into this script.
PROJECT_SLUG = {{ cookiecutter.__project_slug | tojson }}
PACKAGE_NAME = {{ cookiecutter.__package_name | tojson }}
AUTHOR_NAME = {{ cookiecutter.author_name | tojson }}
AUTHOR_EMAIL = {{ cookiecutter.author_email | tojson }}
# Free text that the project holds as typed: in its README, pyproject.toml and pages.
TEXT_ANSWERS = {
    "project_name": {{ cookiecutter.project_name | tojson }},
    "description": {{ cookiecutter.description | tojson }},
    "author_name": AUTHOR_NAME,
    "author_email": AUTHOR_EMAIL,
}
# Yes/no answers: booleans from cookiecutter 2.2 on, the text "True" or "False" before. Each is
# rendered as JSON, then as a JSON string of that: a Python literal whatever the answer.
YES_NO_ANSWERS = [
    json.loads({{ cookiecutter.include_example_tools | tojson | tojson }}),
    json.loads({{ cookiecutter.github_actions | tojson | tojson }}),
    json.loads({{ cookiecutter.kubernetes | tojson | tojson }}),
    json.loads({{ cookiecutter.agentcore | tojson | tojson }}),
]
# What Jinja reads as a template: cookiecutter renders the answers kept in a project's
# .cruft.json (and in its replay file) again, at every `cruft update`.
JINJA_MARKERS = {% raw %}("{{", "{%", "{#"){% endraw %}

# Every module the generated project installs, whatever its model provider, dependencies of its
# dependencies included, and its tests: a package of the same name would shadow it
# (test_generated_suites.py checks each baked project's environment against this list).
DEPENDENCY_MODULES = frozenset(
    {
        "aiohappyeyeballs", "aiohttp", "aiosignal", "aiosqlite", "alembic", "annotated_doc",
        "annotated_types", "anthropic", "anyio", "asgiref", "attr", "attrs",
        "aws_bedrock_token_generator", "boto3", "botocore", "certifi", "cffi",
        "charset_normalizer", "click", "cryptography", "dateutil", "distro", "docstring_parser",
        "dotenv", "execnet", "fastapi", "fastuuid", "filelock", "frozenlist", "fsspec", "google",
        "graphql", "greenlet", "h11", "h2", "harfile", "hf_xet", "hpack", "httpcore", "httpcore2",
        "httptools", "httpx", "httpx2", "huggingface_hub", "hyperframe", "hypothesis",
        "hypothesis_graphql", "idna", "importlib_metadata", "importlib_resources", "iniconfig",
        "jinja2", "jiter", "jmespath", "jsonschema", "jsonschema_rs", "jsonschema_specifications",
        "jwt", "kubernetes_validate", "litellm", "mako", "markdown_it", "markupsafe", "mcp",
        "mcp_types", "mdurl", "multidict", "multipart", "ollama", "openai", "opentelemetry",
        "outcome", "packaging", "pluggy", "prometheus_client", "propcache", "psycopg",
        "psycopg_binary", "py", "pycparser", "pydantic", "pydantic_core", "pydantic_settings",
        "pygments", "pyrate_limiter", "pytest", "pytest_timeout", "python_multipart",
        "pythonjsonlogger", "referencing", "regex", "requests", "rich", "rpds", "ruff",
        "s3transfer", "schemathesis", "selenium", "six", "sniffio", "socks", "sockshandler",
        "sortedcontainers", "sqlalchemy", "sse_starlette", "starlette", "strands", "tests",
        "tiktoken", "tiktoken_ext", "tokenizers", "tqdm", "trio", "trio_websocket", "truststore",
        "typing_extensions", "typing_inspection", "urllib3", "uvicorn", "uvloop", "watchdog",
        "watchfiles", "websocket", "websockets", "werkzeug", "wrapt", "wsproto", "xdist", "yaml",
        "yarl", "zipp",
    }
)  # fmt: skip
# The distributions it installs (and its build backend) named otherwise than a module above: a
# project of the same name would depend on itself, which uv refuses at `make install`.
DEPENDENCY_DISTRIBUTIONS = frozenset(
    {
        "googleapis-common-protos", "graphql-core", "markdown-it-py", "opentelemetry-api",
        "opentelemetry-exporter-http-transport", "opentelemetry-exporter-otlp-common",
        "opentelemetry-exporter-otlp-proto-common", "opentelemetry-exporter-otlp-proto-http",
        "opentelemetry-instrumentation", "opentelemetry-instrumentation-asgi",
        "opentelemetry-instrumentation-fastapi", "opentelemetry-instrumentation-sqlalchemy",
        "opentelemetry-instrumentation-threading", "opentelemetry-proto", "opentelemetry-sdk",
        "opentelemetry-semantic-conventions", "opentelemetry-util-http", "protobuf", "pyjwt",
        "pysocks", "pytest-timeout", "pytest-xdist", "python-dateutil", "python-dotenv",
        "python-json-logger", "pyyaml", "rpds-py", "strands-agents", "uv-build", "websocket-client",
    }
)  # fmt: skip
# Commands that the project's own command (named after the slug, in .venv/bin) would clash with:
# the environment's own, its dependencies' (named otherwise than a name above), and the tools the
# project runs, which .venv/bin, first on PATH under `uv run` and once activated, would hide.
RESERVED_COMMANDS = frozenset(
    {
        "activate", "deactivate", "pip", "pip3", "pydoc", "python", "python3", "pythonw",
        "cffi-gen-src", "hf", "huggingface-cli", "lite", "litellm-proxy", "mako-render",
        "normalizer", "opentelemetry-bootstrap", "opentelemetry-instrument", "pygmentize", "st",
        "tiny-agents", "watchmedo", "wsdump",
        "chromedriver", "chromium", "docker", "git", "kubectl", "make", "node", "npm", "npx",
        "uv", "uvx",
    }
)  # fmt: skip
# The standard library of Python 3.11, which the project runs on, whatever Python runs this hook:
# what later releases removed (3.12: PEP 632 and others, 3.13: PEP 594) and what 3.11 added. Its
# own test suite is a package too, which stdlib_module_names leaves out.
REMOVED_AFTER_3_11 = frozenset(
    {
        "aifc", "asynchat", "asyncore", "audioop", "cgi", "cgitb", "chunk", "crypt",
        "distutils", "imghdr", "imp", "lib2to3", "mailcap", "msilib", "nis", "nntplib",
        "ossaudiodev", "pipes", "smtpd", "sndhdr", "spwd", "sunau", "telnetlib", "uu", "xdrlib",
    }
)  # fmt: skip
STDLIB_MODULES = sys.stdlib_module_names | REMOVED_AFTER_3_11 | {"tomllib", "test"}
SLUG_PATTERN = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
# The package is named after the slug: its longest import lines in the generated code stay
# within ruff's 100 characters (and `make lint` passes) up to this length, as the longest
# combination of tests/test_bake.py checks. (Kubernetes would allow 55: 63 less "-migrate".)
MAX_SLUG_LENGTH = 37
# Package metadata writes the author as `name <email>`, unquoted, in a list separated by commas:
# in the name, these characters make readers of it split the author or lose part of the name.
ADDRESS_SPECIALS = ',;:@<>[]"'
EMAIL_PATTERN = re.compile(r'[^@\s,;:<>\[\]"]+@[^@\s,;:<>\[\]"]+\.[^@\s.,;:<>\[\]"]+')


def slug_problem(slug: str) -> str | None:
    """Say what is wrong with the project slug (directory and distribution name), if anything."""
    if not SLUG_PATTERN.fullmatch(slug):
        return (
            f"project slug {slug!r} must start with a letter and hold only lowercase letters, "
            "digits and single hyphens: start project_name with a letter, e.g. 'My Agent'"
        )
    if len(slug) > MAX_SLUG_LENGTH:
        return (
            f"project slug {slug!r} is {len(slug)} characters, longer than the "
            f"{MAX_SLUG_LENGTH} that the generated code's lines leave room for: choose a "
            "shorter project_name, e.g. 'Support Desk'"
        )
    if slug in RESERVED_COMMANDS:
        return (
            f"project slug {slug!r} is the name of a command that the project's own command "
            f"would clash with in its environment: choose another project_name, e.g. '{slug} agent'"
        )
    if slug in DEPENDENCY_DISTRIBUTIONS:
        return (
            f"project slug {slug!r} is the name of a dependency, which the project would then "
            f"depend on itself for: choose another project_name, e.g. '{slug} agent'"
        )
    return None


def package_problem(name: str) -> str | None:
    """Say what is wrong with the Python package name, if anything."""
    if not name.isidentifier() or not name.isascii():
        return (
            f"package name {name!r} is not a valid Python identifier: "
            "start project_name with a letter, e.g. 'My Agent'"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return (
            f"package name {name!r} is a Python keyword: "
            f"choose another project_name, e.g. '{name} agent'"
        )
    if name in STDLIB_MODULES:
        return (
            f"package name {name!r} would shadow the standard library module of that name: "
            f"choose another project_name, e.g. '{name} agent'"
        )
    if name in DEPENDENCY_MODULES:
        return (
            f"package name {name!r} would shadow the {name!r} dependency: "
            f"choose another project_name, e.g. '{name} agent'"
        )
    return None


def text_problem(name: str, text: str) -> str | None:
    """Say what is wrong with a free-text answer, if anything: bytes that are not UTF-8 reach
    Python as halves of surrogate pairs, which no file can hold (the project would be left half
    written); Jinja would be run at the project's next update."""
    try:
        # A character beyond the BMP (an emoji) is a surrogate pair in the JSON literal above,
        # which Python keeps as two halves: joined back first, only lone halves are left.
        text.encode("utf-16", "surrogatepass").decode("utf-16").encode("utf-8")
    except UnicodeError:
        return (
            f"{name} holds bytes that are not UTF-8 text (typed in another encoding?): "
            "type it again as UTF-8, e.g. in a UTF-8 terminal"
        )
    for marker in JINJA_MARKERS:
        if marker in text:
            return (
                f"{name} holds {marker!r}, which `cruft update` would run as a template: "
                f"type it with a space between, e.g. {marker[0] + ' ' + marker[1]!r}"
            )
    if text != text.strip():
        return (
            f"{name} {text!r} begins or ends with white space, which the generated code's "
            f"formatter would take off: type it without, e.g. {text.strip()!r}"
        )
    return None


def author_problem(name: str) -> str | None:
    """Say what is wrong with the author name, if anything."""
    for special in ADDRESS_SPECIALS:
        if special in name:
            return (
                f"author_name {name!r} holds {special!r}, which package metadata would misread: "
                "type it without, e.g. 'Jane Doe'"
            )
    return None


def email_problem(email: str) -> str | None:
    """Say what is wrong with the author email, if anything."""
    if not EMAIL_PATTERN.fullmatch(email):
        return f"author_email {email!r} is not an email address: use the form name@example.com"
    return None


def main() -> int:
    if not all(isinstance(answer, bool) for answer in YES_NO_ANSWERS):
        print(
            "ERROR: this cookiecutter is older than 2.2, whose yes/no questions the template "
            "needs: pip install --upgrade cookiecutter",
            file=sys.stderr,
        )
        return 1
    problems = [
        problem
        for problem in (
            *(text_problem(name, text) for name, text in TEXT_ANSWERS.items()),
            slug_problem(PROJECT_SLUG),
            package_problem(PACKAGE_NAME),
            author_problem(AUTHOR_NAME),
            email_problem(AUTHOR_EMAIL),
        )
        if problem
    ]
    if problems:
        # The first problem alone: fixing project_name usually fixes the package name too.
        print(f"ERROR: {problems[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
