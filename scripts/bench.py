"""Bake the default project and run the benchmarks of the template (benchmarks/) against it.

    make bench                       the store and the service, and the time to bake
    make bench ARGS="--test-suite"   ... and the wall time of the whole `make test`
    make bench ARGS="--store-only"   only the store against its peers (a few minutes)

PostgreSQL figures use TEMPLATE_TEST_DATABASE_URL (default: the local server on 127.0.0.1:5432).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
BENCH_DIR = TEMPLATE_DIR / "build" / "bench"
POSTGRES_URL = os.environ.get(
    "TEMPLATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def bake_seconds(repeat: int = 5) -> float:
    """`cookiecutter --no-input` as a user runs it, interpreter start-up included."""
    timings = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as output:
            command = [sys.executable, "-m", "cookiecutter", "--no-input", "-o", output]
            start = time.perf_counter()
            subprocess.run([*command, str(TEMPLATE_DIR)], check=True, capture_output=True)
            timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> None:
    arguments = set(sys.argv[1:])
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env |= {
        "UV_PYTHON_DOWNLOADS": "never",
        "BENCH_DATABASE_URL": POSTGRES_URL,
        # The benchmarks are the template's (benchmarks/); they run in the baked project.
        "PYTHONPATH": str(TEMPLATE_DIR),
    }

    shutil.rmtree(BENCH_DIR, ignore_errors=True)
    # The benchmarks import the default package name, my_agent.
    project = Path(
        cookiecutter(
            str(TEMPLATE_DIR),
            no_input=True,
            output_dir=str(BENCH_DIR),
            extra_context={"project_name": "My Agent"},
        )
    )
    subprocess.run(["uv", "sync", "--quiet"], cwd=project, env=env, check=True)
    print(f"# Benchmarks of {project.name}, rendered from this template\n", flush=True)
    modules = ["benchmarks.store", "benchmarks.service"]
    for module in modules[:1] if "--store-only" in arguments else modules:
        command = ["uv", "run", "--no-sync", "python", "-m", module]
        subprocess.run(command, cwd=project, env=env, check=True)

    print("\n## The template\n")
    print(f"- `cookiecutter --no-input`, the default project: {bake_seconds() * 1000:.0f} ms")
    if "--test-suite" in arguments:
        start = time.perf_counter()
        subprocess.run(["make", "test"], cwd=TEMPLATE_DIR, env=env, check=True)
        print(f"- `make test`, the whole suite: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
