"""A PostgreSQL server of the test's own, which the test can stop and start: a database outage."""

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .databases import unavailable
from .server import free_port


def _bindir() -> Path | None:
    if pg_config := shutil.which("pg_config"):
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout
        if (Path(bindir.strip()) / "initdb").exists():
            return Path(bindir.strip())
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


class ThrowawayPostgres:
    def __init__(self, bindir: Path, data: Path, run_as: list[str]) -> None:
        self.bindir, self.data, self.run_as = bindir, data, run_as
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *arguments: str) -> None:
        command = [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), *arguments]
        subprocess.run(command, check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.data} -F"
        self._pg_ctl("-o", options, "-l", str(self.data / "server.log"), "-w", "start")

    def stop(self) -> None:
        """Stop at once, as a crash or a lost network would: clients see their connections die."""
        self._pg_ctl("-m", "immediate", "-w", "stop")


@contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """initdb a fresh cluster in a temporary directory and start it on a free port.

    PostgreSQL refuses to run as root, so as root (as CI runs) it runs as the `postgres` user.
    """
    bindir = _bindir()
    if bindir is None:
        unavailable("initdb is not installed")
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(tempfile.mkdtemp(prefix="outage-"))
    try:
        if run_as:
            shutil.chown(data, "postgres", "postgres")
        subprocess.run(
            [*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
             "--no-sync", "--no-instructions"],
            check=True, capture_output=True,
        )  # fmt: skip
        server = ThrowawayPostgres(bindir, data, run_as)
        server.start()
        try:
            yield server
        finally:
            subprocess.run(
                [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
            )
    finally:
        shutil.rmtree(data, ignore_errors=True)
