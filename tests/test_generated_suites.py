"""Slow: install each combination with uv in its own environment; run its own lint and tests."""

import pytest

from .baking import Bake
from .test_bake import COMBINATIONS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("answers", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_baked_project_passes_its_own_suite(bake: Bake, answers: dict[str, object]) -> None:
    project = bake(**answers)
    project.install()

    project.run("make", "lint")
    result = project.run("make", "test")

    assert " passed" in result.stdout
    assert " failed" not in result.stdout
