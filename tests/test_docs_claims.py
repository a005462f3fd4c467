"""The README and package docstrings claim only what exists: test markers in use, triggers, caching."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_SOURCES = [p.read_text() for p in (REPO / "tests").rglob("*.py") if p.name != Path(__file__).name]
CLAIMS = [REPO / "README.md", REPO / "deployments" / "__init__.py", REPO / "tasks" / "__init__.py"]


def _used(marker: str) -> bool:
    return any(re.search(rf"pytest\.mark\.{marker}\b", text) for text in TEST_SOURCES)


def test_readme_names_only_markers_that_tests_use() -> None:
    readme = (REPO / "README.md").read_text()
    paragraph = readme[readme.index("Test markers:"):].split("\n\n")[0]
    in_use = re.findall(r"`(\w+)` \(", paragraph)  # "`slow` (what it means)" claims tests behind it
    assert in_use and all(_used(m) for m in in_use), in_use
    declared = [line.split(":")[0] for line in
                tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]]
    for marker in declared:
        if not _used(marker):  # declared ahead of its tests: both places must say so
            assert f"`{marker}`" not in in_use and "no test uses it yet" in paragraph
            assert any(line.startswith(f"{marker}:") and "no test uses it yet" in line for line in
                       tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"])


def test_event_triggers_and_caching_are_claimed_only_when_they_exist() -> None:
    deployment_code = (REPO / "deployments" / "serve_all.py").read_text() + (REPO / "deployments" / "prefect.yaml").read_text()
    has_triggers = "triggers" in deployment_code
    task_code = "".join(p.read_text() for p in (REPO / "tasks").glob("*.py"))
    has_cache = bool(re.search(r"cache_policy=(?!NO_CACHE)|cache_key_fn=", task_code))
    for path in CLAIMS:
        for sentence in re.split(r"(?<=[.;])\s", path.read_text()):
            if not has_triggers and re.search(r"trigger", sentence, re.IGNORECASE):
                assert "planned" in sentence, f"{path.name}: {sentence!r}"
            if not has_cache and re.search(r"\bcaching\b", sentence, re.IGNORECASE):
                raise AssertionError(f"{path.name} claims caching, but every task uses NO_CACHE: {sentence!r}")
