"""The package layout's import rules, read from the code itself.

Imports run down the data flow, never up (docs/architecture.md): how a study
comes in knows nothing of the run, the model or the command line; the run
engine knows nothing of the command line. A forbidden import added anywhere
fails here, naming the module, the line and the rule it breaks.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "omnict_cli"

# The shared ground floor: any package may import these, and they import only each other.
GROUND_FLOOR = {"atomic", "csv_safe", "errors", "ui", "prompt_format", "study_ids", "worker_pool", "__version__"}

# What each package may import besides the ground floor (its own modules always).
ALLOWED = {
    "studies": set(),
    "labels": set(),
    "segmentation": {"studies"},
    "metrics": {"labels"},
    "model": {"studies", "segmentation"},
    "phantom": {"studies", "segmentation", "labels"},
    "run": {"studies", "segmentation", "labels", "metrics", "model"},
    "review": {"studies", "segmentation", "labels", "metrics", "run"},
    "training": {"studies", "segmentation", "labels", "metrics", "model", "run"},
    "cli": {"studies", "segmentation", "labels", "metrics", "model", "phantom", "run", "review", "training"},
}

# Synthetic data is a user of the library, not a part of it: the one library module that
# may use it is the demo recipe, whose whole job is to train on phantoms.
EXCEPTIONS = {("omnict_cli.training.demo", "phantom")}


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    name = ".".join(parts)
    return name.removesuffix(".__init__")


def _unit_of(module: str) -> str:
    """'omnict_cli.run.pipeline' -> 'run'; 'omnict_cli.atomic' -> 'atomic'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imported_units(tree: ast.AST):
    """Yield (line, unit) for every omnict_cli import in a module, top-level or inside a function."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("omnict_cli."):
                    yield node.lineno, _unit_of(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "omnict_cli":
                for alias in node.names:
                    yield node.lineno, alias.name
            elif node.module.startswith("omnict_cli."):
                yield node.lineno, _unit_of(node.module)


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def import_violations(path: Path, package: Path = PACKAGE) -> list[str]:
    module = _module_name(path, package)
    source_unit = _unit_of(module)
    problems = []
    for line, target in _imported_units(ast.parse(path.read_text(encoding="utf-8"))):
        if target == source_unit or target in GROUND_FLOOR:
            continue
        if source_unit in GROUND_FLOOR or source_unit in {"", "__main__"}:
            allowed = {"cli"} if source_unit == "__main__" else set()
        else:
            allowed = ALLOWED.get(source_unit)
            if allowed is None:
                problems.append(f"{module}: package {source_unit!r} is not in the layout rules")
                continue
        if target not in allowed and (module, target) not in EXCEPTIONS:
            problems.append(f"{module}:{line} imports omnict_cli.{target}, which {source_unit or module} may not")
    return problems


def test_every_package_is_in_the_rules():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(ALLOWED), "a new package needs its line in ALLOWED and in docs/architecture.md"


def test_no_loose_modules_beyond_the_ground_floor():
    loose = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert loose <= GROUND_FLOOR, f"modules at the top that belong in a package: {sorted(loose - GROUND_FLOOR)}"


def test_imports_run_down_the_flow_never_up():
    problems = [problem for path in _modules() for problem in import_violations(path)]
    assert not problems, "\n".join(problems)


def test_the_rule_check_catches_an_upward_import(tmp_path):
    """The check itself must be able to fail: a studies module importing the run engine is caught."""
    fake_package = tmp_path / "omnict_cli"
    (fake_package / "studies").mkdir(parents=True)
    bad = fake_package / "studies" / "discover.py"
    bad.write_text("def f():\n    from omnict_cli.run.pipeline import run_report\n")
    assert import_violations(bad, fake_package) == [
        "omnict_cli.studies.discover:2 imports omnict_cli.run, which studies may not"
    ]


@pytest.mark.parametrize("package", ["studies", "run"])
def test_the_flow_packages_hold_the_moved_modules(package):
    expected = {
        "studies": {"discover", "load", "volume", "preprocess", "prepare", "inspection"},
        "run": {
            "pipeline",
            "prefetch",
            "engine",
            "study_inputs",
            "records",
            "sharding",
            "questions",
            "repeats",
            "interrupts",
        },
    }[package]
    present = {p.stem for p in (PACKAGE / package).glob("*.py")}
    assert expected <= present
