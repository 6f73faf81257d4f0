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
    code = (
        "import sys; from omnict_cli.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'numpy', 'nibabel', 'pydicom', 'SimpleITK') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip().splitlines()[-1] == "[]"


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "omnict_cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and __version__ in result.stdout


def test_inspect_examples_as_json():
    result = CliRunner().invoke(main, ["inspect", str(EXAMPLES), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["study_id"]: row for row in json.loads(result.output)}
    # study ids are relative paths, suffix kept: the NIfTI and the NRRD of one scan are two ids
    real = {"ct_chest_small.nii.gz", "ct_chest_small.nrrd", "ct_chest_small_axial15.png"}
    phantoms = {f"phantoms/{folder}/case_000{i}.nii.gz" for folder in ("volumes", "labels") for i in range(1, 5)}
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
    png = rows["ct_chest_small_axial15.png"]
    assert png["kind"] == "slice" and png["intensity"] == "display" and png["shape"] == [1, 101, 122]
    phantom = rows["phantoms/volumes/case_0001.nii.gz"]
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


# --------------------------------------------------------------------------- writes: checked first, one line


def _blocked(tmp_path) -> Path:
    """A destination no user can write: its parent 'folder' is a file (works as root too)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    return blocker / "out"


def _one_line_failure(result, *texts):
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output  # click's exit, not a crash
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for text in texts:
        assert text in errors[0], errors[0]


def _never_called(*args, **kwargs):
    raise AssertionError("the long work ran although the destination cannot be written")


def test_demo_data_into_an_unwritable_place_fails_before_generating(tmp_path, monkeypatch):
    monkeypatch.setattr("omnict_cli.phantom.writer.generate_case", _never_called)
    result = CliRunner().invoke(main, ["demo-data", str(_blocked(tmp_path)), "--n", "1"])
    _one_line_failure(result, str(_blocked(tmp_path)), "blocker is a file, not a folder")


@pytest.mark.parametrize(
    "options, message",
    [
        (["--seed", "-5"], "'--seed': -5 is not in the range x>=0"),
        (["--size", "4000", "4000", "4000"], "over the 268,435,456 a phantom may have"),
        (["--spacing", "0.01", "0.01", "0.01"], "voxel sizes from 0.1 to 20 mm"),
        (["--size", "8", "8", "8", "--spacing", "5", "5", "5"], "field of view; each side must be from 60"),
    ],
)
def test_demo_data_refuses_impossible_settings_as_usage_errors(tmp_path, options, message):
    result = CliRunner().invoke(main, ["demo-data", str(tmp_path / "set"), "--n", "1", *options])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "set").exists()


def test_demo_data_on_a_grid_too_coarse_for_a_finding_is_one_line(tmp_path):
    result = CliRunner().invoke(
        main, ["demo-data", str(tmp_path / "set"), "--n", "1", "--size", "8", "8", "8", "--spacing", "20", "20", "20"]
    )
    _one_line_failure(
        result,
        "case 1 of seed 0 cannot be drawn at 8x8x8 voxels of 20x20x20 mm",
        "Use smaller voxels (--spacing) or more of them (--size)",
    )


def test_score_json_into_an_unwritable_place_fails_before_scoring(tmp_path, monkeypatch):
    monkeypatch.setattr("omnict_cli.metrics.score_files.score", _never_called)
    predictions = tmp_path / "generated.jsonl"
    predictions.write_text('{"study_id": "a", "findings": "Normal."}\n')
    result = CliRunner().invoke(
        main,
        [
            "score",
            str(predictions),
            "--references",
            str(predictions),
            "--json",
            str(_blocked(tmp_path) / "scores.json"),
        ],
    )
    _one_line_failure(result, "scores.json: cannot be written", "is a file, not a folder")


def test_labels_commands_check_out_before_the_work(tmp_path, monkeypatch):
    monkeypatch.setattr("omnict_cli.labels.labeler.label_reports", _never_called)
    reports = tmp_path / "reports.jsonl"
    reports.write_text('{"study_id": "a", "findings": "Normal."}\n')
    result = CliRunner().invoke(main, ["labels", "predict", str(reports), "--out", str(_blocked(tmp_path) / "x.csv")])
    _one_line_failure(result, "x.csv: cannot be written")
    result = CliRunner().invoke(
        main,
        [
            "labels",
            "train",
            "--reports",
            str(reports),
            "--labels",
            str(reports),
            "--out",
            str(_blocked(tmp_path) / "labeler.json.gz"),
        ],
    )
    _one_line_failure(result, "labeler.json.gz: cannot be written", "is a file, not a folder")


def test_a_write_that_fails_after_the_work_is_one_line(tmp_path, monkeypatch):
    import errno

    def disk_full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("omnict_cli.atomic.write_bytes_atomically", disk_full)
    reports = tmp_path / "reports.jsonl"
    reports.write_text('{"study_id": "a", "findings": "Small right pleural effusion."}\n')
    result = CliRunner().invoke(
        main, ["labels", "predict", str(reports), "--out", str(tmp_path / "labels.csv"), "--method", "rules"]
    )
    _one_line_failure(result, "labels.csv: cannot be written (No space left on device)")


def test_the_convention_option_offers_the_labelers_conventions():
    """--help must not import the labeler, so the choices are written out twice; they must agree."""
    from omnict_cli.cli.label_options import CONVENTION_CHOICES
    from omnict_cli.labels.rules import CONVENTIONS

    assert tuple(CONVENTION_CHOICES) == tuple(CONVENTIONS)
    for command in (["score"], ["labels", "predict"]):
        assert "--convention [ctrate|clinical]" in CliRunner().invoke(main, [*command, "--help"]).output
    assert "--label-convention [ctrate|clinical]" in CliRunner().invoke(main, ["report", "--help"]).output
