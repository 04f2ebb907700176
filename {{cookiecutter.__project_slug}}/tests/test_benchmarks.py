"""The benchmark harness, run with tiny sizes so that it cannot rot. It asserts no timing."""

import json
import os
import subprocess
import sys
from pathlib import Path

from .databases import TEST_DATABASE_URL
from .server import PROJECT_DIR


def test_the_benchmarks_run_and_report_every_figure(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    command = [
        sys.executable, "-m", "benchmarks.bench", "--sizes", "20,40", "--growth", "200",
        "--repeat", "2", "--turns", "3", "--clients", "4", "--sessions", "8",
        "--duration", "1", "--json", str(figures),
    ]  # fmt: skip
    env = {**os.environ, "BENCH_DATABASE_URL": TEST_DATABASE_URL or ""}

    run = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True)

    assert run.returncode == 0, run.stderr
    results = json.loads(figures.read_text())
    stores = {"in-memory (SDK cost)", "FileSessionManager", "SQLite"}
    database = "PostgreSQL" if TEST_DATABASE_URL else "SQLite"
    stores.add(database)
    assert [row["messages"] for row in results["restore"]] == [20, 40]
    assert stores <= set(results["restore"][0])
    assert f"{database}, as the service" in results["restore"][0]
    assert {row["store"] for row in results["growth"]} == stores - {
        "in-memory (SDK cost)",
        "FileSessionManager",
    }
    assert [row["turn"] for row in results["turns"]] == ["text turn", "one-tool turn"]
    service = results["service"]
    assert service["memory"]["requests/s"] > 0
    assert service["database"]["errors"] == 0
    assert service["health"]["probes"] > 0
    for heading in ("## Restore", "## Growth", "## Per-turn overhead", "## Service", "## /health"):
        assert heading in run.stdout
