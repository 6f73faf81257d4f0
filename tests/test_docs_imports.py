"""Every ``import`` in the Python examples of README.md and docs/*.md names a module and names that exist.

Why: the layout moves modules between packages; a doc example that still
imports the old path is the first thing a user copies. Only the import
statements are run (the examples themselves need data and models).
"""

import ast
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _omnict_imports(markdown: Path):
    for block in PYTHON_BLOCK.findall(markdown.read_text(encoding="utf-8")):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("omnict_cli"):
                yield node.module, [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                yield from ((alias.name, []) for alias in node.names if alias.name.startswith("omnict_cli"))


def _is_submodule(package: str, name: str) -> bool:
    try:
        importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError:
        return False
    return True


CASES = [(doc.relative_to(REPO).as_posix(), module, names) for doc in DOCS for module, names in _omnict_imports(doc)]


def test_the_docs_have_python_examples_to_check():
    assert len(CASES) >= 10


@pytest.mark.parametrize(("doc", "module", "names"), CASES, ids=[f"{d}:{m}" for d, m, _ in CASES])
def test_doc_example_imports_resolve(doc, module, names):
    imported = importlib.import_module(module)
    missing = [name for name in names if not hasattr(imported, name) and not _is_submodule(module, name)]
    assert not missing, f"{doc}: `from {module} import` names that do not exist: {missing}"
