"""Slow: the benchmark harness runs against a baked project, with tiny sizes so that it cannot rot.
It asserts what the harness reports, never a time."""

import json
import os
from pathlib import Path

import pytest

from .baking import TEMPLATE_DIR, Bake
from .test_generated_suites import POSTGRES_URL, postgres_env

pytestmark = pytest.mark.slow


def test_the_benchmarks_run_and_report_every_figure(bake: Bake, tmp_path: Path) -> None:
    if not postgres_env():
        pytest.skip("the service benchmarks need PostgreSQL")
    project = bake(project_name="My Agent")
    project.install()
    env = {"BENCH_DATABASE_URL": POSTGRES_URL, "PYTHONPATH": str(TEMPLATE_DIR)}
    python = ["uv", "run", "--no-sync", "python", "-m"]

    store = project.run(
        *python, "benchmarks.store", "--sizes", "20,40", "--growth", "200", "--repeat", "2",
        "--turns", "3", "--json", str(tmp_path / "store.json"), **env,
    )  # fmt: skip
    service = project.run(
        *python, "benchmarks.service", "--duration", "1", "--rounds", "1", "--streams", "4",
        "--conversations", "6", "--json", str(tmp_path / "service.json"), **env,
    )  # fmt: skip
    # `make bench ARGS="--against REV"` compares two bakes; here the project with itself.
    compare = project.run(
        *python, "benchmarks.compare", str(project.path), "--duration", "1", "--rounds", "1",
        "--streams", "4", "--json", str(tmp_path / "compare.json"), **env,
    )  # fmt: skip

    figures = json.loads((tmp_path / "store.json").read_text())
    assert [row["messages"] for row in figures["restore"]] == [20, 40]
    assert {"FileSessionManager", "PostgreSQL, as the service"} <= set(figures["restore"][0])
    assert {row["store"] for row in figures["growth"]} == {"SQLite", "PostgreSQL"}
    assert [row["turn"] for row in figures["turns"]] == ["text turn", "one-tool turn"]
    postgresql = next(row for row in figures["round_trips"] if row["store"] == "PostgreSQL")
    assert postgresql["statements"] == 2
    for heading in ("## Restore", "## Growth", "## Time a turn adds", "## Round trips"):
        assert heading in store.stdout

    figures = json.loads((tmp_path / "service.json").read_text())
    assert figures["throughput"]["database"]["errors"] == 0
    auth = figures["auth"]
    assert auth["api_keys"]["errors"] == auth["none"]["errors"] == 0  # the key was accepted
    assert auth["api_keys"]["cpu_per_request"] > 0
    assert "Throughput with API keys / without" in service.stdout
    assert set(figures["cpu_per_turn"]) == {"database", "memory"}
    runs = [(row["store"], row["replicas"]) for row in figures["conversations"]]
    assert runs == [("database", 1), ("memory", 1), ("database", 2)]
    assert all(row["completed"] == 6 and not row["errors"] for row in figures["conversations"])
    connections = [row["connections_held"] for row in figures["conversations"]]
    assert connections[0] > 0
    assert connections[1] == 0  # the in-memory store's server: no database of its own
    assert "## Conversations at once" in service.stdout
    assert os.path.exists(project.path / "scripts" / "loadtest.py")

    figures = json.loads((tmp_path / "compare.json").read_text())
    assert (
        set(figures["cpu_per_turn"]) == set(figures["throughput"]) == {"before", "after", "memory"}
    )
    with_keys = figures["throughput_with_api_keys"]
    assert set(with_keys) == {"before", "after"}
    assert all(server["errors"] == 0 for server in with_keys.values())  # each key was accepted
    assert "| server CPU per streamed turn |" in compare.stdout
