"""Bake the default project and run the benchmarks of the template (benchmarks/) against it.

    make bench                       the store and the service, and the time to bake
    make bench ARGS="--test-suite"   ... and the wall time of the whole `make test`
    make bench ARGS="--store-only"   only the store against its peers (a few minutes)
    make bench ARGS="--against REV"  only the service, beside itself as the template at REV
                                     makes it (a commit or tag from v0.2.0 on)

PostgreSQL figures use TEMPLATE_TEST_DATABASE_URL (default: the local server on 127.0.0.1:5432).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
BENCH_DIR = TEMPLATE_DIR / "build" / "bench"
POSTGRES_URL = os.environ.get(
    "TEMPLATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# The template's own defaults: a `default_context` in the user's cookiecutter config would
# otherwise change the project measured.
DEFAULTS = ("--no-input", "--default-config")


def bake_seconds(repeat: int = 5) -> float:
    """`cookiecutter --no-input` as a user runs it (with the template's defaults), interpreter
    start-up included."""
    timings = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as output:
            command = [sys.executable, "-m", "cookiecutter", *DEFAULTS, "-o", output]
            start = time.perf_counter()
            subprocess.run([*command, str(TEMPLATE_DIR)], check=True, capture_output=True)
            timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def bake(template: Path, output: Path) -> Path:
    """The default project as `template` renders it (the benchmarks import its package name,
    my_agent). In a process of its own, started in the template's directory: two revisions of
    the template have each their own `local_extensions`, which one process would import once,
    from the first directory on its path."""
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, "-m", "cookiecutter", *DEFAULTS, "-o", str(output), "."]
    subprocess.run(
        [*command, "project_name=My Agent"], cwd=template, check=True, stdout=subprocess.DEVNULL
    )
    return output / "my-agent"


def template_at(revision: str) -> Path:
    """The template's files at `revision`, from git, beside the benchmarks' projects."""
    output = BENCH_DIR.parent / "template-against"
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    archive = ["git", "archive", "--format=tar", revision]
    files = subprocess.run(archive, cwd=TEMPLATE_DIR, check=True, stdout=subprocess.PIPE).stdout
    subprocess.run(["tar", "-x", "-C", str(output)], input=files, check=True)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--store-only", action="store_true", help="the store against its peers")
    choice.add_argument("--test-suite", action="store_true", help="also time `make test`")
    choice.add_argument("--against", metavar="REV", help="only the service, beside REV's")
    args = parser.parse_args()
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env |= {
        "UV_PYTHON_DOWNLOADS": "never",
        "BENCH_DATABASE_URL": POSTGRES_URL,
        # The benchmarks are the template's (benchmarks/); they run in the baked project.
        "PYTHONPATH": str(TEMPLATE_DIR),
    }

    project = bake(TEMPLATE_DIR, BENCH_DIR)
    subprocess.run(["uv", "sync", "--quiet"], cwd=project, env=env, check=True)
    if args.against:
        before = bake(template_at(args.against), BENCH_DIR.parent / "bench-against")
        subprocess.run(["uv", "sync", "--quiet"], cwd=before, env=env, check=True)
        print(
            f"# The service at {args.against} (before) and in this working tree (after)", flush=True
        )
        command = ["uv", "run", "--no-sync", "python", "-m", "benchmarks.compare", str(before)]
        subprocess.run(command, cwd=project, env=env, check=True)
        return
    print(f"# Benchmarks of {project.name}, rendered from this template\n", flush=True)
    modules = ["benchmarks.store", "benchmarks.service"]
    for module in modules[:1] if args.store_only else modules:
        command = ["uv", "run", "--no-sync", "python", "-m", module]
        subprocess.run(command, cwd=project, env=env, check=True)

    print("\n## The template\n")
    print(f"- `cookiecutter --no-input`, the default project: {bake_seconds() * 1000:.0f} ms")
    if args.test_suite:
        start = time.perf_counter()
        subprocess.run(["make", "test"], cwd=TEMPLATE_DIR, env=env, check=True)
        print(f"- `make test`, the whole suite: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
