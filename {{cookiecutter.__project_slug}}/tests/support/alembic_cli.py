"""Alembic's command line, as `alembic` runs it, for each argument in turn in one process:
`python -m tests.support.alembic_cli "upgrade head" check`. A test that runs several commands
starts Python once instead of once a command (seconds each, most of a migration test)."""

import shlex
import sys

from alembic.config import main

if __name__ == "__main__":
    for command in sys.argv[1:]:
        main(argv=shlex.split(command))  # a command that fails exits, and the rest never run
