"""The template's own CI workflow is one GitHub accepts (the generated projects' are checked in
test_bake.py), against the schema that check-jsonschema bundles: nothing is downloaded."""

import subprocess
import sys

from .baking import TEMPLATE_DIR


def test_the_template_workflows_follow_the_github_schema() -> None:
    workflows = sorted((TEMPLATE_DIR / ".github" / "workflows").glob("*.yml"))
    command = [
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.github-workflows",
    ]

    result = subprocess.run([*command, *map(str, workflows)], capture_output=True, text=True)

    assert workflows
    assert result.returncode == 0, result.stdout + result.stderr
