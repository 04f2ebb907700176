"""The template's version lives in one place, and the CHANGELOG's newest release names it."""

import re
import tomllib

from .baking import TEMPLATE_DIR

RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", re.MULTILINE)


def test_the_changelog_newest_release_is_the_template_version() -> None:
    pyproject = tomllib.loads((TEMPLATE_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    changelog = (TEMPLATE_DIR / "CHANGELOG.md").read_text(encoding="utf-8")

    releases = RELEASE.findall(changelog)

    assert releases, "CHANGELOG.md names no release"
    assert releases[0][0] == pyproject["project"]["version"]
    assert [date for _, date in releases] == sorted((date for _, date in releases), reverse=True)
    for version, _ in releases:
        assert f"[{version}]: " in changelog, f"no link for {version} at the end of CHANGELOG.md"
