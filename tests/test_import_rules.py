"""The package rules of docs/architecture.md ("Dependencies between packages"), checked on every `make test`.

import-linter (`lint-imports`, contracts in `.importlinter`) checks the
project's import graph, imports inside functions included; a planted
violation of each kind shows the contracts catch it. One rule import-linter
cannot see is checked here directly: nothing outside tests/ imports
`tests.e2e` (a folder without ``__init__.py``, so not in its graph).
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from core.settings import PROJECT_ROOT

PACKAGES = ("core", "nlu", "retrieval", "recommender", "training", "bot", "tests")
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path, *contracts: str) -> subprocess.CompletedProcess:
    """`lint-imports` over the packages under `root` (only `contracts`, by id, if given)."""
    env = dict(os.environ, PYTHONPATH=str(root))
    chosen = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run([str(LINT), "--no-cache", "--no-logo", "--config", str(root / ".importlinter"), *chosen],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_project_keeps_its_package_rules():
    assert LINT.exists(), "lint-imports is missing: run `make setup` (import-linter is pinned in requirements/base.txt)"
    done = lint(PROJECT_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.fixture(scope="module")
def copy_of_the_project(tmp_path_factory) -> Path:
    """The project's Python files and lint config in a temporary folder, to plant violations in."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT_ROOT / ".importlinter", root / ".importlinter")
    for package in PACKAGES:
        for source in (PROJECT_ROOT / package).rglob("*.py"):
            target = root / source.relative_to(PROJECT_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    return root


@pytest.mark.parametrize("module, line, contract", [
    ("bot/channels/inbox.py", "from retrieval.feedback import rating_counts", "bot-public-names"),
    ("bot/actions/suggestions.py", "from recommender import store", "bot-public-names"),
    ("bot/insight/analytics_page.py", "def later():\n    from training import segments", "bot-without-training"),
    ("training/segments.py", "import bot.serve", "training-without-bot"),
    ("recommender/store.py", "from retrieval import rating_counts", "libraries-independent"),
    ("retrieval/index.py", "from bot.actions import history", "libraries-import-only-core"),
    ("core/files.py", "import nlu", "core-imports-only-core"),
    ("bot/serve.py", "from tests import oidc_standin", "nothing-imports-tests"),
])
def test_a_planted_violation_breaks_its_contract(copy_of_the_project, module, line, contract):
    path = copy_of_the_project / module
    original = path.read_text(encoding="utf-8")
    assert lint(copy_of_the_project, contract).returncode == 0
    try:
        path.write_text(original + "\n\n" + line + "\n", encoding="utf-8")
        done = lint(copy_of_the_project, contract)
    finally:
        path.write_text(original, encoding="utf-8")
    assert done.returncode != 0 and "BROKEN" in done.stdout, done.stdout


def imports_of_tests(root: Path) -> List[str]:
    """Every import of a `tests` module (at the top or inside a function) outside tests/."""
    found = []
    for package in PACKAGES:
        if package == "tests":
            continue
        for source in sorted((root / package).rglob("*.py")):
            tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
            for node in ast.walk(tree):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                found += [f"{source.relative_to(root)}:{node.lineno} imports {name}"
                          for name in names if name == "tests" or name.startswith("tests.")]
    return found


def test_nothing_outside_tests_imports_the_e2e_helpers():
    assert imports_of_tests(PROJECT_ROOT) == []


def test_the_e2e_check_sees_an_import_inside_a_function(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "bench.py").write_text("def run():\n    from tests.e2e.services import free_port\n")
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    assert imports_of_tests(tmp_path) == ["training/bench.py:2 imports tests.e2e.services"]
