"""A generated phantom set on disk: layout, CT-RATE files, chat rows, and exact round trips."""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from omnict_cli import discover_studies, load_path, load_study
from omnict_cli.cli import main
from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.phantom.findings import slices_showing
from omnict_cli.phantom.generate import PhantomConfig, generate_case
from omnict_cli.phantom.writer import write_phantom_set

SMALL = PhantomConfig(size=(24, 96, 96), spacing=(12.0, 3.6, 3.6))
SEED = 11


@pytest.fixture(scope="module")
def nifti_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("nifti_set")
    summary = write_phantom_set(out, 3, SEED, SMALL, "nifti")
    return out, summary


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_layout_and_ctrate_files(nifti_set):
    out, summary = nifti_set
    assert summary.cases == 3
    assert sorted(p.name for p in (out / "volumes").iterdir()) == [f"case_000{i}.nii.gz" for i in (1, 2, 3)]
    assert sorted(p.name for p in (out / "labels").iterdir()) == [f"case_000{i}.nii.gz" for i in (1, 2, 3)]
    references = read_csv(out / "references.csv")
    assert list(references[0]) == ["VolumeName", "Findings_EN", "Impressions_EN"]
    labels = read_csv(out / "labels.csv")
    assert list(labels[0]) == ["VolumeName", *CTRATE_ABNORMALITIES]
    for index, row in enumerate(labels, start=1):
        case = generate_case(SEED, index, SMALL)
        assert {k: int(v) for k, v in row.items() if k != "VolumeName"} == case.label_vector
        assert references[index - 1]["Findings_EN"] == case.report.findings
    assert not list(out.rglob(".*")), "no temporary files left behind"


def test_slice_labels_name_each_slice_and_its_findings(nifti_set):
    """slices/labels.csv: one row per slice PNG, 1 exactly for the findings that changed a voxel of that slice."""
    from omnict_cli.phantom.generate import slice_through_finding

    out, summary = nifti_set
    rows = read_csv(out / "slices" / "labels.csv")
    assert len(rows) == summary.slices > 0
    assert list(rows[0]) == ["VolumeName", *CTRATE_ABNORMALITIES]
    by_name = {row["VolumeName"]: row for row in rows}
    assert sorted(by_name) == sorted(p.name for p in (out / "slices").glob("*.png"))
    for index in range(1, summary.cases + 1):
        case = generate_case(SEED, index, SMALL)
        chosen = slice_through_finding(case)
        if chosen is None:
            continue
        z, _ = chosen
        row = by_name[f"case_{index:04d}_z{z:03d}.png"]
        showing = {f.label for f in case.findings if z in slices_showing(f)}
        assert {name for name in CTRATE_ABNORMALITIES if row[name] == "1"} == showing


def test_a_finding_reaching_the_slice_from_elsewhere_is_on_it():
    """The slice through a nodule also shows the effusion centred ten slices away but reaching it;
    a finding that ends before the slice does not count, even with its centre one slice off."""
    from omnict_cli.phantom.findings import Finding
    from omnict_cli.phantom.generate import PhantomCase, slice_through_finding

    def finding(label, centre_z, z0, z1):
        footprint = np.zeros((z1 - z0 + 1, 2, 2), bool)
        footprint[:, 0, 0] = True
        return Finding(
            label,
            "lungs",
            centre_zyx=(centre_z, 5, 5),
            details={"bbox_zyx": (z0, 5, 5, z1, 6, 6), "footprint": footprint},
        )

    nodule = finding("Lung nodule", 5, 5, 5)
    effusion = finding("Pleural effusion", 15, 2, 25)
    opacity = finding("Lung opacity", 6, 6, 8)  # centre one slice away, nothing drawn on slice 5
    case = PhantomCase(
        "case_0001",
        np.zeros((30, 8, 8), np.int16),
        np.zeros((30, 8, 8), np.uint8),
        (5.0, 1.0, 1.0),
        [nodule, effusion, opacity],
        report=None,
    )
    z, on_slice = slice_through_finding(case)
    assert z == 5 and [f.label for f in on_slice] == ["Lung nodule", "Pleural effusion"]


def test_a_set_without_findings_still_has_a_slice_label_file(tmp_path):
    """No case to slice through: slices/labels.csv is there with its header only, so readers need no special case."""
    config = PhantomConfig(
        size=SMALL.size, spacing=SMALL.spacing, prevalence={name: 0.0 for name in CTRATE_ABNORMALITIES}
    )
    summary = write_phantom_set(tmp_path, 2, SEED, config, "nifti")
    assert summary.slices == 0
    assert (tmp_path / "slices" / "labels.csv").read_text() == ",".join(["VolumeName", *CTRATE_ABNORMALITIES]) + "\n"


def test_volumes_and_label_maps_round_trip_through_the_loader(nifti_set):
    out, _ = nifti_set
    case = generate_case(SEED, 2, SMALL)
    volume = load_path(out / "volumes" / "case_0002.nii.gz")
    np.testing.assert_array_equal(volume.voxels, case.hu)
    assert volume.spacing == pytest.approx(SMALL.spacing)
    assert volume.source_axcodes == ("R", "A", "S")
    np.testing.assert_array_equal(load_path(out / "labels" / "case_0002.nii.gz").voxels, case.labels)


def test_png_and_dicom_slices_match_the_volume_slice(nifti_set):
    out, summary = nifti_set
    pngs = sorted((out / "slices").glob("*.png"))
    assert len(pngs) == summary.slices
    for png in pngs:
        index, z = int(png.stem[5:9]), int(png.stem.split("_z")[1])
        hu = generate_case(SEED, index, SMALL).hu[z]
        picture = load_path(png)
        expected = np.clip((hu.astype(np.float32) + 1000) / 2000, 0, 1)
        assert np.abs(picture.voxels[0] - expected).max() <= 0.5 / 255 + 1e-6
        dicom = load_path(png.with_suffix(".dcm"))
        assert dicom.kind == "slice"
        np.testing.assert_array_equal(dicom.voxels[0], hu)


def test_qa_rows_are_the_authors_chat_format(nifti_set):
    out, _ = nifti_set
    rows = [json.loads(line) for line in (out / "qa.jsonl").read_text().splitlines()]
    assert rows
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert (out / row["image"]).exists()
        if row["image"].endswith(".png"):
            assert user["content"].startswith("<|image2d_start|><|image2d|><|image2d_end|>\n")
        else:
            assert user["content"].startswith("<|image3d_start|><|image3d|><|image3d_end|>\n")


def test_dicom_set_reads_back_identically(tmp_path):
    write_phantom_set(tmp_path, 1, SEED, SMALL, "dicom")
    (study,) = [s for s in discover_studies(tmp_path / "volumes")]
    assert study.format == "dicom" and len(study.paths) == SMALL.size[0]
    np.testing.assert_array_equal(load_study(study).voxels, generate_case(SEED, 1, SMALL).hu)


def test_png_set_holds_slices_only(tmp_path):
    summary = write_phantom_set(tmp_path, 2, SEED, SMALL, "png")
    assert not (tmp_path / "volumes").exists() and not (tmp_path / "references.csv").exists()
    assert len(read_csv(tmp_path / "labels.csv")) == summary.slices


def test_same_seed_same_files_other_seed_other_cases(tmp_path):
    first = generate_case(3, 1, SMALL)
    again = generate_case(3, 1, SMALL)
    other = generate_case(4, 1, SMALL)
    np.testing.assert_array_equal(first.hu, again.hu)
    assert first.report.findings == again.report.findings
    assert not np.array_equal(first.hu, other.hu)


def test_demo_data_command(tmp_path):
    runner = CliRunner()
    args = [
        "demo-data",
        str(tmp_path / "set"),
        "--n",
        "2",
        "--seed",
        "3",
        "--size",
        "24",
        "96",
        "96",
        "--spacing",
        "12",
        "3.6",
        "3.6",
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "wrote 2 cases" in result.output
    again = runner.invoke(main, args)
    assert again.exit_code != 0 and "not empty" in again.output and "--overwrite" in again.output
    assert runner.invoke(main, args + ["--overwrite"]).exit_code == 0
    inspected = runner.invoke(main, ["inspect", str(tmp_path / "set" / "volumes"), "--json"])
    assert [row["status"] for row in json.loads(inspected.output)] == ["ok", "ok"]


def test_generated_reports_agree_with_the_label_vector():
    for index in range(1, 7):
        case = generate_case(SEED, index, SMALL)
        positive = {c for sentence in case.report.sentences for c in sentence.positive}
        negative = {c for sentence in case.report.sentences for c in sentence.negative}
        present = {name for name, value in case.label_vector.items() if value}
        assert positive == present
        assert not negative & present


def test_prevalence_option_controls_the_classes(tmp_path):
    runner = CliRunner()
    always = [arg for name in CTRATE_ABNORMALITIES for arg in ("--prevalence", f"{name}=0")]
    always[always.index("Lung nodule=0")] = "Lung nodule=1"
    result = runner.invoke(
        main,
        [
            "demo-data",
            str(tmp_path / "set"),
            "--n",
            "3",
            "--size",
            "24",
            "96",
            "96",
            "--spacing",
            "12",
            "3.6",
            "3.6",
            *always,
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "set" / "labels.csv")
    assert all(row["Lung nodule"] == "1" for row in rows)
    assert all(row[name] == "0" for row in rows for name in CTRATE_ABNORMALITIES if name != "Lung nodule")
    bad = runner.invoke(main, ["demo-data", str(tmp_path / "x"), "--prevalence", "Nodules=0.5"])
    assert bad.exit_code == 2 and "not a CT-RATE class" in bad.output


def test_same_seed_writes_byte_identical_volumes_and_tables(tmp_path):
    for name in ("a", "b"):
        write_phantom_set(tmp_path / name, 2, SEED, SMALL, "nifti")
    for relative in ("volumes/case_0001.nii.gz", "labels/case_0002.nii.gz", "labels.csv", "references.csv", "qa.jsonl"):
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative


@pytest.mark.parametrize("fmt", ["nifti", "dicom"])
def test_demo_data_writes_the_same_bytes_for_the_same_seed_every_file(tmp_path, fmt):
    """DICOM UIDs included: they are derived from the seed and the case, not drawn at random."""
    runner = CliRunner()
    for name in ("a", "b"):
        args = ["demo-data", str(tmp_path / name), "--n", "2", "--seed", "5", "--format", fmt]
        result = runner.invoke(main, [*args, "--size", "24", "96", "96", "--spacing", "12", "3.6", "3.6"])
        assert result.exit_code == 0, result.output

    def files(root):
        return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}

    first, second = files(tmp_path / "a"), files(tmp_path / "b")
    assert sorted(first) == sorted(second) and any(name.endswith(".dcm") for name in first)
    assert [name for name in first if first[name] != second[name]] == []
    other = tmp_path / "other_seed"
    result = runner.invoke(
        main, ["demo-data", str(other), "--n", "1", "--seed", "6", "--format", fmt, "--size", "24", "96", "96"]
    )
    assert result.exit_code == 0, result.output
    uids = {pydicom.dcmread(path).SOPInstanceUID for root in (tmp_path / "a", other) for path in root.rglob("*.dcm")}
    assert len(uids) == sum(1 for root in (tmp_path / "a", other) for _ in root.rglob("*.dcm"))  # all distinct


def test_the_bundled_phantoms_are_exactly_what_their_documented_command_writes(tmp_path):
    """examples/README.md names the command that made examples/phantoms; rerun, every file is byte-identical."""
    repo = Path(__file__).resolve().parents[1]
    readme = (repo / "examples" / "README.md").read_text(encoding="utf-8")
    (command,) = [line for line in readme.splitlines() if line.startswith("omnict demo-data examples/phantoms ")]
    args = shlex.split(command)[1:]
    args[1] = str(tmp_path / "phantoms")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    bundled, written = repo / "examples" / "phantoms", tmp_path / "phantoms"
    names = sorted(path.relative_to(written).as_posix() for path in written.rglob("*") if path.is_file())
    assert names == sorted(path.relative_to(bundled).as_posix() for path in bundled.rglob("*") if path.is_file())
    assert [name for name in names if (bundled / name).read_bytes() != (written / name).read_bytes()] == []
