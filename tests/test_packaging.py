"""The package's metadata has one source: the version lives in bertclf/__init__.py only."""

import importlib.metadata
from pathlib import Path

import tomllib

import bertclf

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_lives_in_one_place():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject.toml must not repeat the version"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "bertclf.__version__"}
    assert importlib.metadata.version("bertclf") == bertclf.__version__, "the installed metadata reads it"
