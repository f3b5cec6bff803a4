"""The environment descriptions and the commands the README promises stay in step."""

import os
import re
import subprocess
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]


def name_of(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_every_pyproject_dependency_is_in_environment_yml():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {name_of(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    listed = set()
    pip_lines = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_lines += dep["pip"]
        else:
            listed.add(name_of(dep))
    listed |= {name_of(line) for line in pip_lines if not line.startswith("-e")}
    assert "-e .[dev]" in pip_lines, "environment.yml must install this package with its dev extras"
    missing = sorted(wanted - listed)
    assert not missing, f"in pyproject.toml but not in environment.yml: {missing}"


def test_make_help_lists_every_target():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-zA-Z_-]+):", makefile, flags=re.M))
    out = subprocess.run(
        ["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert targets == listed, f"targets without a '## ' help line: {sorted(targets - listed)}"
    for required in ("setup", "test", "test-backends", "reproduce", "report", "clean"):
        assert required in listed


def test_ci_runs_setup_then_the_test_command():
    ci = REPO / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    text = ci.read_text()
    assert "set -euo pipefail" in text
    assert text.index("make setup") < text.index("make test\n") < text.index("make test-backends")


def test_readme_shows_the_two_commands_first():
    readme = (REPO / "README.md").read_text()
    setup, test, reproduce = (readme.find(f"make {c}") for c in ("setup", "test", "reproduce"))
    assert -1 < setup < test < reproduce


def test_claims_readme_documents_every_field():
    from common import claims

    text = (REPO / "claims" / "README.md").read_text()
    for field in claims.REQUIRED_FIELDS + claims.OPTIONAL_FIELDS + claims.UNITS:
        assert f"`{field}`" in text, field
