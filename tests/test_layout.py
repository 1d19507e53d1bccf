"""The tests' own layout: no test module imports another one. What several modules share
(fixtures, helpers, constants) lives in tests/conftest.py, where pytest finds the fixtures
without an import; importing a test module instead runs its module-level code twice and
collects its fixtures under a second name."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def names_of_test_modules(folder: Path) -> set[str]:
    return {path.stem for path in folder.glob("test_*.py")}


def imported_test_modules(source: str, test_modules: set[str]) -> set[str]:
    """The test modules that ``source`` imports (``import test_x``, ``from test_x import ...``,
    at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & test_modules


def test_imported_test_modules_sees_every_form_of_import():
    modules = {"test_a", "test_b", "test_c", "test_d"}
    source = (
        "import os, test_a\n"
        "from test_b import helper  # noqa\n"
        "def f():\n"
        "    import test_c as c\n"
        "from conftest import ROOT\n"
        "from plain import plain_kl\n"
    )
    assert imported_test_modules(source, modules) == {"test_a", "test_b", "test_c"}


def test_no_test_module_imports_another():
    modules = names_of_test_modules(TESTS)
    found = {}
    for path in sorted(TESTS.rglob("*.py")):
        imported = imported_test_modules(path.read_text(encoding="utf-8"), modules - {path.stem})
        if imported:
            found[path.relative_to(TESTS).as_posix()] = imported
    assert found == {}, (
        "test files importing test modules: move what they share into tests/conftest.py (fixtures) "
        "or a helper module without the test_ prefix (tests/serving.py, tests/optional.py)"
    )
