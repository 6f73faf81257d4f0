"""Loaders and runs under attack (issue 25): sizes from headers, orientation truth, worker lifecycle, SIGTERM.

Every file here is small; the hostile ones only *claim* to be huge in their
headers, so a regression would show as a refusal that no longer happens (or
as a MemoryError), never as a test that fills the machine.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from click.testing import CliRunner
from PIL import Image

from omnict_cli.cli import main
from omnict_cli.errors import StudyLoadError, StudyTooLargeError
from omnict_cli.phantom.generate import PhantomConfig
from omnict_cli.phantom.writer import write_phantom_set
from omnict_cli.studies.discover import discover_studies
from omnict_cli.studies.load import LoadOptions, load_path
from omnict_cli.studies.readers.base import DEFAULT_MAX_BYTES, study_bytes
from tests.tiny_model import make_tiny_model_dir

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3


def _nifti_header_only(path: Path, shape, dtype, *, data: bytes = b"", endianness: str = "<") -> Path:
    """A NIfTI header claiming ``shape`` voxels of ``dtype``, followed by ``data`` (a first part of them, or nothing)."""
    header = nib.Nifti1Header(endianness=endianness)
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\0" * 4 + data
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def _load_error(path: Path, options: LoadOptions = LoadOptions()) -> StudyLoadError:
    with pytest.raises(StudyLoadError) as caught:
        load_path(path, options)
    return caught.value


# ---- byte limits, from the header, before allocation -------------------------------------------


@pytest.fixture
def no_big_allocation(monkeypatch):
    """Make any numpy allocation of more than 64 MiB fail loudly, so "refused before allocating" is checked."""
    limit = 64 * 2**20
    real_empty, real_zeros = np.empty, np.zeros

    def guarded(real):
        def allocate(shape, dtype=float, *args, **kwargs):
            size = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
            if size > limit:
                raise AssertionError(f"allocated {size:,} bytes before refusing")
            return real(shape, dtype, *args, **kwargs)

        return allocate

    monkeypatch.setattr(np, "empty", guarded(real_empty))
    monkeypatch.setattr(np, "zeros", guarded(real_zeros))


def test_a_1_kb_header_claiming_16_gib_of_complex128_is_refused_for_its_type_before_allocating(
    tmp_path, no_big_allocation
):
    path = _nifti_header_only(tmp_path / "complex.nii", (1024, 1024, 1024), np.complex128)
    assert path.stat().st_size < 1024
    error = _load_error(path)
    assert "voxel type complex128 is not supported" in error.message
    assert not isinstance(error, StudyTooLargeError)  # the type is judged first


@pytest.mark.parametrize("endianness", ["<", ">"])
def test_a_small_nii_gz_expanding_to_8_gb_of_float64_is_refused_from_its_header_in_one_line(
    tmp_path, no_big_allocation, endianness
):
    # 1000^3 float64 = 8 GB, under the voxel limit (1024^3) the issue found it passed; zeros compress
    # about 1000-fold, so the file is the first 16 MB of such a volume (the whole one would be 7.8 MB)
    path = _nifti_header_only(
        tmp_path / "bomb.nii.gz", (1000, 1000, 1000), np.float64, data=b"\0" * 2**24, endianness=endianness
    )
    assert path.stat().st_size < 100_000
    error = _load_error(path)
    assert isinstance(error, StudyTooLargeError)
    assert "1000x1000x1000 voxels of float64 need 11.2 GiB" in error.message
    assert "over the limit of 6.0 GiB" in error.message and "--max-bytes" in error.hint
    assert "\n" not in error.one_line()


def test_the_default_limit_lets_1024_cubed_int16_through_and_counts_the_float32_working_copy():
    assert study_bytes((1024, 1024, 1024), np.int16) == 6 * GIB == DEFAULT_MAX_BYTES
    assert study_bytes((1024, 1024, 1024), np.float32) == 8 * GIB


def test_max_bytes_refuses_and_raises_for_a_real_small_volume(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 1000
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "small.nii")
    needed = study_bytes(data.shape, np.int16)
    error = _load_error(tmp_path / "small.nii", LoadOptions(max_bytes=needed - 1))
    assert isinstance(error, StudyTooLargeError) and "4x5x6 voxels of int16" in error.message
    assert load_path(tmp_path / "small.nii", LoadOptions(max_bytes=needed)).voxels.shape == (6, 5, 4)


def test_every_reader_checks_bytes_from_its_header(tmp_path, no_big_allocation):
    tight = LoadOptions(max_bytes=10_000)
    # NumPy: a real 8 KB float64 array, too large for the tight limit; and a complex one
    np.save(tmp_path / "a.npy", np.zeros((4, 16, 16)))
    assert "voxels of float64 need" in _load_error(tmp_path / "a.npy", tight).message
    np.save(tmp_path / "c.npy", np.zeros((2, 2, 2), dtype=np.complex64))
    assert "voxel type complex64" in _load_error(tmp_path / "c.npy").message
    # NRRD/MHA through SimpleITK's header reader: a 2x2x2 float64 file whose header then claims 8 GiB
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 2, 2))), str(tmp_path / "big.mha"))
    header = (tmp_path / "big.mha").read_bytes().replace(b"DimSize = 2 2 2", b"DimSize = 1024 1024 1024")
    (tmp_path / "big.mha").write_bytes(header)
    assert "1024x1024x1024 voxels of float64 need 12.0 GiB" in _load_error(tmp_path / "big.mha").message
    # (MetaImage and NRRD have no complex type: SimpleITK writes complex as two float channels, counted)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((16, 16, 16), dtype=np.complex64)), str(tmp_path / "c.mha"))
    assert "16x16x16 voxels of 2 x float32 need" in _load_error(tmp_path / "c.mha", tight).message
    # DICOM: one slice whose header claims 4096x4096 at 64 bits (no pixel bytes behind it)
    dicom_dir = tmp_path / "dicom"
    dicom_dir.mkdir()
    _dicom_slice(dicom_dir / "big.dcm", rows=4096, columns=4096, bits=64)
    assert "1x4096x4096 voxels of uint64 need" in _load_error(dicom_dir / "big.dcm", tight).message
    # 2D pictures: an RGB picture counts three float32 bands
    Image.new("RGB", (64, 64)).save(tmp_path / "rgb.png")
    assert "1x64x64 voxels of 3 x float32 need" in _load_error(tmp_path / "rgb.png", tight).message


def test_max_bytes_is_an_option_of_every_command_that_loads_studies(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 8, 8), dtype=np.int16))
    for command in ("report", "ask", "inspect", "segment"):
        assert "--max-bytes" in CliRunner().invoke(main, [command, "--help"]).output, command
    result = CliRunner().invoke(main, ["inspect", str(tmp_path), "--json", "--max-bytes", "100"])
    assert result.exit_code == 1
    (record,) = json.loads(result.output)
    assert "over the limit of 100 bytes" in record["error"]


def _dicom_slice(path: Path, rows: int, columns: int, bits: int = 16, pixels: bytes | None = None) -> None:
    dataset = pydicom.Dataset()
    dataset.file_meta = pydicom.dataset.FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    dataset.SOPClassUID = pydicom.uid.CTImageStorage
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    dataset.Modality = "CT"
    dataset.SeriesInstanceUID = "1.2.3"
    dataset.Rows, dataset.Columns = rows, columns
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = bits, bits, bits - 1
    dataset.PixelRepresentation = 0
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.ImagePositionPatient = [0, 0, 0]
    dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    dataset.PixelSpacing = [1, 1]
    dataset.PixelData = pixels if pixels is not None else b"\0\0"
    dataset.save_as(path, enforce_file_format=True)


# ---- orientation tells the truth -------------------------------------------------------------


def _volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1000, (6, 5, 4)).astype(np.int16)


def test_codes_0_load_as_the_warning_says_voxel_for_voxel_with_a_copy_coded_that_way(tmp_path):
    data, pixdim = _volume(), [2.0, 3.0, 4.0]
    uncoded = nib.Nifti1Image(data, None)
    uncoded.header.set_zooms(pixdim)
    uncoded.set_qform(None, code=0)
    uncoded.set_sform(None, code=0)
    nib.save(uncoded, tmp_path / "uncoded.nii")
    assert nib.load(tmp_path / "uncoded.nii").header["qform_code"] == 0
    loaded = load_path(tmp_path / "uncoded.nii")
    (warning,) = [w for w in loaded.warnings if "no orientation" in w]
    assert "assumed RAS" in warning
    # the orientation the warning claims, written as codes: RAS with the pixdim voxel sizes
    coded = nib.Nifti1Image(data, np.diag([*pixdim, 1.0]))
    coded.set_qform(np.diag([*pixdim, 1.0]), code=1)
    coded.set_sform(np.diag([*pixdim, 1.0]), code=1)
    nib.save(coded, tmp_path / "coded.nii")
    reference = load_path(tmp_path / "coded.nii")
    np.testing.assert_array_equal(loaded.voxels, reference.voxels)
    np.testing.assert_allclose(loaded.spacing, reference.spacing)
    # negative control: the left-right mirror (nibabel's Analyze-style LAS guess) is different data
    assert not np.array_equal(loaded.voxels, reference.voxels[:, :, ::-1])


@pytest.mark.parametrize(
    "qform, named",
    [
        (np.diag([20.0, 30.0, 40.0, 1.0]), "qform: 20x30x40 mm, axes RAS"),  # a 10x scale
        (np.array([[0, -2.0, 0, 0], [2.0, 0, 0, 0], [0, 0, 4.0, 0], [0, 0, 0, 1]]), "axes ALS"),  # 90 degrees
    ],
)
def test_qform_and_sform_that_disagree_are_a_warning_naming_both_and_the_one_used(tmp_path, qform, named):
    sform = np.diag([2.0, 3.0, 4.0, 1.0])
    image = nib.Nifti1Image(_volume(), sform)
    image.set_sform(sform, code=2)
    image.set_qform(qform, code=1)
    nib.save(image, tmp_path / "two.nii")
    loaded = load_path(tmp_path / "two.nii")
    (warning,) = [w for w in loaded.warnings if "disagree" in w]
    assert "sform: 2x3x4 mm, axes RAS" in warning and named in warning and "used the sform" in warning
    agreeing = nib.Nifti1Image(_volume(), sform)
    agreeing.set_qform(sform, code=1)
    nib.save(agreeing, tmp_path / "agree.nii")
    assert not [w for w in load_path(tmp_path / "agree.nii").warnings if "disagree" in w]
    np.testing.assert_array_equal(loaded.voxels, load_path(tmp_path / "agree.nii").voxels)  # the sform's voxels


@pytest.mark.parametrize("sform_code", [0, 1])
def test_a_qform_quaternion_that_is_not_a_rotation_is_named_or_passed_over_never_a_traceback(tmp_path, sform_code):
    image = nib.Nifti1Image(_volume(), np.diag([2.0, 3.0, 4.0, 1.0]))
    image.set_qform(np.diag([2.0, 3.0, 4.0, 1.0]), code=1)
    image.set_sform(np.diag([2.0, 3.0, 4.0, 1.0]), code=sform_code)
    nib.save(image, tmp_path / "q.nii")
    raw = bytearray((tmp_path / "q.nii").read_bytes())
    raw[256:264] = np.array([0.9, 0.9], dtype="<f4").tobytes()  # quatern_b, quatern_c: 0.81 + 0.81 > 1
    (tmp_path / "q.nii").write_bytes(bytes(raw))
    if sform_code == 0:
        assert "the qform has a quaternion that is not a rotation" in _load_error(tmp_path / "q.nii").message
    else:  # the sform is used; the broken qform is not compared with it
        assert load_path(tmp_path / "q.nii").spacing == pytest.approx((4.0, 3.0, 2.0))


def _patched_nifti(tmp_path: Path, offset: int, value: float) -> Path:
    path = tmp_path / "patched.nii"
    nib.save(nib.Nifti1Image(_volume(), np.eye(4)), path)
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 4] = np.float32(value).tobytes()
    path.write_bytes(bytes(raw))
    return path


SCL_SLOPE, SCL_INTER, VOX_OFFSET = 112, 116, 108


def test_a_nan_slope_means_no_scaling_and_an_intercept_beside_it_is_warned_as_ignored(tmp_path):
    reference = load_path(_patched_nifti(tmp_path, SCL_SLOPE, 1.0)).voxels
    path = _patched_nifti(tmp_path, SCL_SLOPE, np.nan)
    unset = load_path(path)  # NaN slope and NaN intercept: nibabel's "unset"
    np.testing.assert_array_equal(unset.voxels, reference)
    assert not [w for w in unset.warnings if "scl_" in w]
    raw = bytearray(path.read_bytes())
    raw[SCL_INTER : SCL_INTER + 4] = np.float32(-1024).tobytes()
    path.write_bytes(bytes(raw))
    loaded = load_path(path)
    np.testing.assert_array_equal(loaded.voxels, reference)
    assert "scl_slope is nan, which means no scaling in NIfTI, so scl_inter -1024 was not applied" in " ".join(
        loaded.warnings
    )


@pytest.mark.parametrize("field, value", [(SCL_SLOPE, np.inf), (SCL_INTER, np.nan)])
def test_an_infinite_slope_or_a_nan_intercept_beside_a_real_slope_is_an_error(tmp_path, field, value):
    path = _patched_nifti(tmp_path, SCL_SLOPE, 2.0)
    raw = bytearray(path.read_bytes())
    raw[SCL_INTER : SCL_INTER + 4] = np.float32(0).tobytes()
    raw[field : field + 4] = np.float32(value).tobytes()
    path.write_bytes(bytes(raw))
    assert "not finite numbers" in _load_error(path).message


def test_vox_offset_0_reads_the_voxels_after_the_header_with_a_warning(tmp_path):
    reference = load_path(_patched_nifti(tmp_path, VOX_OFFSET, 352)).voxels
    loaded = load_path(_patched_nifti(tmp_path, VOX_OFFSET, 0))
    np.testing.assert_array_equal(loaded.voxels, reference)
    assert "vox_offset 0 points inside the header: read the voxels from byte 352" in " ".join(loaded.warnings)


def test_vox_offset_0_with_header_extensions_is_an_error_not_a_guess(tmp_path):
    image = nib.Nifti1Image(_volume(), np.eye(4))
    image.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"a comment, padded to sixteen"))
    nib.save(image, tmp_path / "ext.nii")
    raw = bytearray((tmp_path / "ext.nii").read_bytes())
    raw[VOX_OFFSET : VOX_OFFSET + 4] = np.float32(0).tobytes()
    (tmp_path / "ext.nii").write_bytes(bytes(raw))
    assert "header extensions follow it" in _load_error(tmp_path / "ext.nii").message


# ---- messages --------------------------------------------------------------------------------


def test_random_or_mislabelled_dcm_files_are_named_not_dicom(tmp_path):
    (tmp_path / "random.dcm").write_bytes(np.random.default_rng(1).bytes(5000))
    Image.new("L", (8, 8)).save(tmp_path / "picture.dcm", format="PNG")
    (tmp_path / "text.dcm").write_text("hello world\n")
    bare = pydicom.Dataset()  # real DICOM fields, but no pixel data, SOP class or modality
    bare.SeriesInstanceUID = "1.2.3"
    bare.save_as(tmp_path / "bare.dcm", implicit_vr=True, little_endian=True)
    problems = {s.study_id: s.problem for s in discover_studies(tmp_path)}
    assert len(problems) == 4
    bare_problem = problems.pop(next(key for key in problems if key.startswith("bare")))
    assert bare_problem == "DICOM file has no pixel data (no SOP class or modality given)"
    for problem in problems.values():
        assert problem.startswith("not a DICOM file"), problem
        assert "()" not in problem


def test_pictures_over_89_million_pixels_are_refused_as_the_docs_say(tmp_path):
    # a PNG header claiming 10000x10000 pixels: Pillow reads the size without decoding
    Image.new("L", (10000, 1)).save(tmp_path / "wide.png")
    raw = bytearray((tmp_path / "wide.png").read_bytes())
    raw[20:24] = (10000).to_bytes(4, "big")  # IHDR height
    raw[29:33] = zlib.crc32(bytes(raw[12:29])).to_bytes(4, "big")  # the IHDR chunk's checksum
    (tmp_path / "wide.png").write_bytes(bytes(raw))
    error = _load_error(tmp_path / "wide.png")
    assert "decompression-bomb limit" in error.message and "89478485" in error.message
    docs = (REPO / "docs" / "loading.md").read_text()
    assert "89 million pixels" in docs and "179 million" not in docs


# ---- real processes: SIGKILL leaves no process behind, SIGTERM exits 143 ------------------------


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_run")
    model_dir = make_tiny_model_dir(root / "models")
    write_phantom_set(root / "phantoms", 3, 11, PhantomConfig(size=(16, 64, 64), spacing=(16.0, 4.5, 4.5)))
    studies = root / "studies"
    studies.mkdir()
    for copy in range(6):
        for name in ("case_0001", "case_0002", "case_0003"):
            (studies / f"{name}_{copy}.nii.gz").symlink_to(root / "phantoms" / "volumes" / f"{name}.nii.gz")
    return model_dir, studies


def _start_report(run_folder, out: Path, cache: Path) -> subprocess.Popen:
    model_dir, studies = run_folder
    command = [
        sys.executable, "-m", "omnict_cli", "report", str(studies), "--out", str(out),
        "--model", str(model_dir), "--segmenter", "builtin", "--cache-dir", str(cache),
        "--max-new-tokens", "12", "--batch-size", "1", "--workers", "2", "--quiet",
    ]  # fmt: skip
    # its own session, so every process it starts (workers, resource tracker) shares its process group
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def _wait_for_records(out: Path, count: int, process, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run did not write {count} records in time (exit {process.poll()})")


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live (not zombie) process, read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                found[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return found


def _of_the_run(root_pid: int, known: set[int]) -> set[int]:
    """Live processes in the run's process group, or descended from it, or seen as its descendants before."""
    processes = _processes()
    members = {pid for pid, (_, group) in processes.items() if group == root_pid} | (known & set(processes))
    grew = True
    while grew:
        children = {pid for pid, (parent, _) in processes.items() if parent in members | {root_pid}}
        grew = not children <= members
        members |= children
    return members - {root_pid}


def _sigkill_and_expect_no_survivors(process: subprocess.Popen, workers: set[int]) -> None:
    """SIGKILL ``process``; within 10 s no process of its group or seen among ``workers`` may be alive."""
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while _of_the_run(process.pid, workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _of_the_run(process.pid, workers), "processes of the killed command are still alive"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc (Linux)")
def test_after_sigkill_of_report_no_process_of_the_run_is_alive_10_s_later(run_folder, tmp_path):
    out = tmp_path / "f.jsonl"
    process = _start_report(run_folder, out, tmp_path / "c")
    _wait_for_records(out, 2, process)
    workers = _of_the_run(process.pid, set())
    assert len(workers) >= 2, "the run should have loader workers (and a resource tracker) by now"
    _sigkill_and_expect_no_survivors(process, workers)


@pytest.mark.parametrize("to_group", [False, True], ids=["kill-pid", "scheduler-kills-the-group"])
def test_sigterm_finishes_the_write_prints_the_resume_line_and_exits_143(run_folder, tmp_path, to_group):
    out = tmp_path / "f.jsonl"
    process = _start_report(run_folder, out, tmp_path / "c")
    _wait_for_records(out, 2, process)
    if to_group:  # a batch scheduler or `docker stop` signals the workers too
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr.decode()
    text = stderr.decode()
    assert "terminated (SIGTERM)" in text and "run the same command again to resume" in text
    assert "Traceback" not in text
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) - 1 >= 2
    assert all(json.loads(line)["study_id"] for line in lines[:-1])  # whole records only
    deadline = time.monotonic() + 10
    while _of_the_run(process.pid, set()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _of_the_run(process.pid, set())


def test_a_valid_csv_with_a_1_mb_cell_is_read_not_called_malformed(tmp_path):
    import csv

    from omnict_cli.labels.ctrate_io import read_reports

    findings = "x" * 1_000_000
    path = tmp_path / "reports.csv"
    path.write_text(f"VolumeName,Findings_EN,Impressions_EN\na.nii.gz,{findings},No acute findings.\n")
    (report,) = read_reports(path)
    assert report.findings == findings and report.impression == "No acute findings."
    assert csv.field_size_limit() == 131072  # the csv module's own limit is left as it was


def test_closing_the_prefetcher_leaves_no_pool_thread_for_the_exit_hook_to_race(run_folder):
    """The intermittent "Bad file descriptor" traceback at exit: a pool shut down without waiting still has
    its manager thread closing the wake-up pipe that ``concurrent.futures``' exit hook writes to, unlocked.
    Closing must leave no such thread (and no worker) behind."""
    from concurrent.futures import process as futures_process

    from omnict_cli.run.prefetch import StudyPrefetcher
    from omnict_cli.run.study_inputs import PrepareSetup
    from omnict_cli.studies.preprocess import PreprocessConfig

    _, studies = run_folder
    small = PreprocessConfig(volume_size=(12, 48, 48), slice_size=(48, 48), slices_per_unit=3)
    with StudyPrefetcher(PrepareSetup(preprocess=small), workers=2) as prefetch:
        results = list(prefetch.prepared(discover_studies(studies)[:3]))
    assert len(results) == 3 and not [r for _, r in results if isinstance(r, Exception)]
    managers = [t for t in threading.enumerate() if isinstance(t, futures_process._ExecutorManagerThread)]
    assert not [t for t in managers if t.is_alive()]
    workers = [pid for pid, (parent, _) in _processes().items() if parent == os.getpid() and _is_worker(pid)]
    assert not workers


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it ended while we looked
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc (Linux)")
def test_after_sigkill_of_review_no_process_of_it_is_alive_10_s_later(run_folder, tmp_path):
    """review's image workers come from the same pool as report's: none outlives a killed review."""
    out = tmp_path / "f.jsonl"
    report = _start_report(run_folder, out, tmp_path / "c")
    report.communicate(timeout=300)
    records = out.read_text().splitlines()
    out.write_text("\n".join(records * 20) + "\n")  # the same studies again and again: a page that takes a while
    review = subprocess.Popen(
        [sys.executable, "-m", "omnict_cli", "review", str(out), "--out", str(tmp_path / "r.html"), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while len(workers := _of_the_run(review.pid, set())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(workers) >= 2, "review should have image workers (and a resource tracker) by now"
    _sigkill_and_expect_no_survivors(review, workers)
