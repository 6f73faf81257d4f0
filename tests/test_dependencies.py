"""A torchvision that cannot load with this torch gets one line naming it, not a transformers traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def broken_torchvision(tmp_path):
    """A ``torchvision`` package that fails on import the way a CUDA build does under a CPU torch."""
    package = tmp_path / "site" / "torchvision"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO)])}


def test_ask_names_the_broken_torchvision_and_the_fix(broken_torchvision, tmp_path):
    scan = REPO / "examples" / "ct_chest_small.nii.gz"
    result = subprocess.run(
        [sys.executable, "-m", "omnict_cli", "ask", str(scan), "Is there ascites?"],
        capture_output=True,
        text=True,
        env=broken_torchvision,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert "torchvision" in result.stderr and "operator torchvision::nms does not exist" in result.stderr
    assert "pip uninstall torchvision" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_writes_nothing_when_the_model_code_cannot_load(broken_torchvision, tmp_path):
    scan = REPO / "examples" / "ct_chest_small.nii.gz"
    out = tmp_path / "findings.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "omnict_cli", "report", str(scan), "--out", str(out)],
        capture_output=True,
        text=True,
        env=broken_torchvision,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert "torchvision" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() or out.read_text() == ""


def test_a_working_or_absent_torchvision_is_left_alone():
    from omnict_cli.model.dependencies import check_torchvision

    check_torchvision()  # this environment's torchvision (or none) must pass
