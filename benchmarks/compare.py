"""The service as two commits of the template make it, side by side on PostgreSQL.

`make bench ARGS="--against REV"` (scripts/bench.py) bakes the template at REV beside the working
tree's default project, and runs this in the working tree's project with REV's as argument:

    python -m benchmarks.compare ../../bench-against/my-agent

Both services on PostgreSQL, each on a database of its own that its own migrations made, take the
same loads in alternating rounds, beside the working tree's service on the in-memory store:
streamed turns (server CPU per turn), then /process (throughput), then /process with an API key
per request. Both sides see the same slow spells of the machine, so a change smaller than the
spread between two runs of one commit still shows in the ratio. REV's project must have
`my-agent create-api-key`, as v0.2.0 and later do.
"""

import argparse
import json
import os
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.support.databases import temporary_database

from .servers import python, running
from .service import (
    DATABASE_APP,
    MEMORY_APP,
    bench_cpu_per_turn,
    bench_throughput,
    load_arguments,
    ms,
)


def migrated_database(stack: ExitStack, project: Path) -> str:
    """A database of its own for `project`, made by the project's own migrations."""
    url = stack.enter_context(temporary_database(os.environ["BENCH_DATABASE_URL"], "compare"))
    command = [python(project), "-m", "alembic", "upgrade", "head"]
    subprocess.run(command, cwd=project, env={**os.environ, "DATABASE_URL": url}, check=True)
    return url


def new_api_key(project: Path, database_url: str) -> str:
    """A key, made by the project's own command, for a principal of the benchmarks' own (no key
    may prove AUTH_MODE=none's, `local`)."""
    command = [str(project / ".venv" / "bin" / "my-agent"), "create-api-key", "bench"]
    env = {**os.environ, "DATABASE_URL": database_url}
    done = subprocess.run(command, cwd=project, env=env, check=True, capture_output=True)
    return done.stdout.decode().split()[-1]  # the key is printed last


def main() -> None:
    parser = load_arguments(__doc__.splitlines()[0], rounds=8, duration=32)
    parser.add_argument("before", type=Path, help="the baked project to compare against")
    args = parser.parse_args()
    projects = {"before": args.before.resolve(), "after": Path.cwd()}

    results: dict[str, Any] = {}
    with ExitStack() as databases:
        urls = {name: migrated_database(databases, path) for name, path in projects.items()}
        keys = {name: new_api_key(path, urls[name]) for name, path in projects.items()}
        for load, bench, delay, with_keys in (
            ("cpu_per_turn", bench_cpu_per_turn, "0.05", False),
            ("throughput", bench_throughput, "0", False),
            ("throughput_with_api_keys", bench_throughput, "0", True),
        ):
            env = {"ECHO_WORD_DELAY": delay}
            with ExitStack() as stack:
                servers = {}
                for name, path in projects.items():
                    key = keys[name] if with_keys else None
                    server = running(DATABASE_APP, path, key, DATABASE_URL=urls[name], **env)
                    servers[name] = stack.enter_context(server)
                if not with_keys:  # the in-memory store, to compare each side with
                    server = running(
                        MEMORY_APP, projects["after"], DATABASE_URL=urls["after"], **env
                    )
                    servers["memory"] = stack.enter_context(server)
                results[load] = bench(projects["after"], servers, args)
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n## The service before and after, {args.rounds} alternating rounds\n")
    print("| figure | before | after | after / before | in memory |\n|" + " --- |" * 5)
    cpu = {name: figures["median"] for name, figures in results["cpu_per_turn"].items()}
    rows = [("server CPU per streamed turn", cpu, ms)]
    for load, label in (
        ("throughput", "/process"),
        ("throughput_with_api_keys", "/process, an API key per request"),
    ):
        figures = results[load]
        rows.append((f"{label}: requests/s", pick(figures, "requests/s"), "{:.0f}".format))
        rows.append((f"{label}: server CPU per request", pick(figures, "cpu_per_request"), ms))
    for label, figures, shown in rows:
        memory = shown(figures["memory"]) if "memory" in figures else ""
        ratio = figures["after"] / figures["before"]
        print(
            f"| {label} | {shown(figures['before'])} | {shown(figures['after'])} | "
            f"{ratio:.3f} | {memory} |"
        )
    for name in ("before", "after"):
        print(f"\nCPU per streamed turn, {name}, PostgreSQL / in memory: ", end="")
        print(f"{cpu[name] / cpu['memory']:.2f}x (target <= 1.25x)")
    loads = (results["throughput"], results["throughput_with_api_keys"])
    errors = sum(server["errors"] for figures in loads for server in figures.values())
    print(f"\n/process requests that failed, on every server: {errors}")


def pick(figures: dict[str, dict[str, Any]], key: str) -> dict[str, float]:
    return {name: server[key] for name, server in figures.items()}


if __name__ == "__main__":
    main()
