"""The command line as a user meets it: install entry points, help, inspect."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from omnict_cli import __version__
from omnict_cli.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def test_version_and_help():
    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).output.strip() == f"omnict, version {__version__}"
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "inspect" in result.output
    inspect_help = runner.invoke(main, ["inspect", "--help"])
    assert "Example" in inspect_help.output and "--json" in inspect_help.output


def test_help_does_not_import_heavy_modules():
    """`omnict --help` stays instant: numpy, torch, nibabel load only inside commands."""
    code = ("import sys; from omnict_cli.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'numpy', 'nibabel', 'pydicom', 'SimpleITK') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip().splitlines()[-1] == "[]"


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "omnict_cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and __version__ in result.stdout


def test_inspect_examples_as_json():
    result = CliRunner().invoke(main, ["inspect", str(EXAMPLES), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["study_id"]: row for row in json.loads(result.output)}
    # the NIfTI and the NRRD would both be "ct_chest_small": both keep their suffix instead
    real = {"ct_chest_small.nii.gz", "ct_chest_small.nrrd", "ct_chest_small_axial15"}
    phantoms = {f"phantoms/{folder}/case_000{i}" for folder in ("volumes", "labels") for i in range(1, 5)}
    assert real | phantoms <= set(rows)
    slices = set(rows) - real - phantoms
    assert len(slices) == 8 and all(s.startswith("phantoms/slices/case_000") for s in slices)
    assert all(row["status"] != "error" for row in rows.values())
    assert rows["ct_chest_small.nrrd"]["shape"] == [30, 101, 122]
    assert rows["ct_chest_small.nrrd"]["orientation"] == "RAS", "named in ITK's (i, j, k) order, as tools do"
    nifti = rows["ct_chest_small.nii.gz"]
    assert nifti["status"] == "ok" and nifti["kind"] == "volume" and nifti["format"] == "nifti"
    assert nifti["shape"] == [30, 101, 122] and nifti["spacing"] == [3.0, 3.0, 3.0]
    assert nifti["orientation"] == "RAS"
    assert nifti["hu_range"][0] < -1000 < 1000 < nifti["hu_range"][1]
    png = rows["ct_chest_small_axial15"]
    assert png["kind"] == "slice" and png["intensity"] == "display" and png["shape"] == [1, 101, 122]
    phantom = rows["phantoms/volumes/case_0001"]
    assert phantom["status"] == "ok" and phantom["shape"] == [32, 128, 128]


def test_inspect_table_and_summary(tmp_path):
    shutil.copy(EXAMPLES / "ct_chest_small.nii.gz", tmp_path / "good.nii.gz")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    result = CliRunner().invoke(main, ["inspect", str(tmp_path)])
    assert result.exit_code == 1  # a study failed
    assert "good" in result.output and "RAS" in result.output
    assert "2 studies: 1 ok, 0 with warnings, 1 failed" in result.output
    assert "broken.nii.gz" in result.output


def test_messages_with_brackets_print_verbatim(tmp_path):
    """File names and messages are not rich markup: '[bold]' must print as written."""
    (tmp_path / "[bold]scan.nii.gz").write_bytes(b"garbage")
    result = CliRunner().invoke(main, ["inspect", str(tmp_path)])
    assert "[bold]scan.nii.gz" in result.output


def test_inspect_missing_path_is_a_clear_usage_error():
    result = CliRunner().invoke(main, ["inspect", "/no/such/folder"])
    assert result.exit_code == 2 and "does not exist" in result.output


@pytest.mark.skipif(shutil.which("omnict") is None, reason="console script not installed")
def test_console_script_inspects_the_examples():
    result = subprocess.run(["omnict", "inspect", str(EXAMPLES), "--json"], capture_output=True, text=True)
    assert result.returncode == 0
    assert len(json.loads(result.stdout)) == 19
