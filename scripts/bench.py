"""Bake the default project and run its benchmarks; also time the template itself.

    make bench                       the project's benchmarks, and the time to bake it
    make bench ARGS="--test-suite"   ... and the wall time of the whole `make test`

Arguments other than --test-suite go to the project's benchmark (`python -m benchmarks.bench`).
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
    arguments = sys.argv[1:]
    time_test_suite = "--test-suite" in arguments
    arguments = [argument for argument in arguments if argument != "--test-suite"]
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env |= {"UV_PYTHON_DOWNLOADS": "never", "BENCH_DATABASE_URL": POSTGRES_URL}

    shutil.rmtree(BENCH_DIR, ignore_errors=True)
    project = Path(cookiecutter(str(TEMPLATE_DIR), no_input=True, output_dir=str(BENCH_DIR)))
    subprocess.run(["uv", "sync", "--quiet"], cwd=project, env=env, check=True)
    print(f"# Benchmarks of {project.name}, rendered from this template\n", flush=True)
    subprocess.run(
        ["uv", "run", "--no-sync", "python", "-m", "benchmarks.bench", *arguments],
        cwd=project,
        env=env,
        check=True,
    )

    print("\n## The template\n")
    print(f"- `cookiecutter --no-input`, the default project: {bake_seconds() * 1000:.0f} ms")
    if time_test_suite:
        start = time.perf_counter()
        subprocess.run(["make", "test"], cwd=TEMPLATE_DIR, env=env, check=True)
        print(f"- `make test`, the whole suite: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
