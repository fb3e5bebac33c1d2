"""Helpers shared by the observability tests: real tool binaries and the exported names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from streams.metrics import ALL
from streams.settings import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
RULES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
}


def tool(name: str) -> str:
    """Path of a required binary; the test fails (never skips) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed (Debian: apt-get install {name})", pytrace=False)
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


def exported_series_names() -> set[str]:
    """Every series name the worker's registry can expose (metric families × type suffixes)."""
    names: set[str] = set()
    for family in ALL.collect():
        suffixes = _SUFFIXES.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names
