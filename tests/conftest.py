"""The bake fixture: render the template into a fresh directory per call."""

from itertools import count
from pathlib import Path

import pytest

from .baking import Bake, BakedProject, bake_project


@pytest.fixture
def bake(tmp_path: Path) -> Bake:
    """Render the template with the given answers (the rest default); each call gets its own dir."""
    numbers = count()

    def _bake(**answers: object) -> BakedProject:
        return bake_project(tmp_path / f"bake-{next(numbers)}", **answers)

    return _bake
