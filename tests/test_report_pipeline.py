"""``omnict report`` / ``omnict ask`` end to end with a tiny model built in code: records, faults, resume, PHI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
import torch
from badinputs import build_bad_corpus, phantom_hu, write_dicom_series
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from omnict_cli.cli import main
from omnict_cli.phantom.generate import PhantomConfig
from omnict_cli.phantom.writer import write_phantom_set
from tests.tiny_model import make_tiny_model_dir

REPO = Path(__file__).resolve().parents[1]
TINY_PHANTOMS = PhantomConfig(size=(16, 64, 64), spacing=(16.0, 4.5, 4.5))
PHI = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-4455667",
    "PatientBirthDate": "19580214",
    "AccessionNumber": "ACC-99887766",
    "InstitutionName": "Saint Example Hospital",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    write_phantom_set(root, 3, 11, TINY_PHANTOMS)
    return root


def run_cli(args, model_dir, cache_dir, env=None):
    base = [
        "--model",
        str(model_dir),
        "--segmenter",
        "builtin",
        "--cache-dir",
        str(cache_dir),
        "--max-new-tokens",
        "4",
        "--workers",
        "0",
    ]
    return CliRunner().invoke(main, [*args[:1], *base, *args[1:]], env=env, catch_exceptions=False)


def records_of(path: Path) -> list[dict]:
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"", "the file must end with a whole line"
    return [json.loads(line) for line in lines[:-1]]


def without_timing(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in ("timing_s", "mask_from_cache")}


def test_a_folder_of_phantoms_and_bad_files_gives_one_valid_record_per_study(model_dir, phantom_set, tmp_path):
    studies = tmp_path / "studies"
    cases = build_bad_corpus(studies / "bad")
    os.symlink(phantom_set / "volumes", studies / "phantoms")
    out = tmp_path / "findings.jsonl"
    result = run_cli(["report", str(studies), "--out", str(out), "--batch-size", "3"], model_dir, tmp_path / "c")
    assert result.exit_code == 1, result.output  # some studies failed
    records = records_of(out)
    ids = [r["study_id"] for r in records]
    assert len(ids) == len(set(ids))
    by_id = {r["study_id"]: r for r in records}
    for case in ("phantoms/case_0001.nii.gz", "phantoms/case_0002.nii.gz", "phantoms/case_0003.nii.gz"):
        record = by_id[case]
        assert record["status"] == "ok" and record["kind"] == "volume" and record["shape"] == [16, 64, 64]
        assert isinstance(record["findings"], str) and record["model"]["name"] == "tiny-omnict"
        assert "lungs" in record["organs"] and record["segmenter"].startswith("builtin")
    assert by_id["bad/truncated.nii.gz"]["status"] == "error"
    assert "truncated" in by_id["bad/truncated.nii.gz"]["error"]["message"]
    assert by_id["bad/zero_byte.nii.gz"]["status"] == "error"
    four_d = by_id["bad/four_d.nii.gz"]
    assert four_d["status"] == "ok" and any("4D" in w for w in four_d["warnings"])
    nan = by_id["bad/nan_inf.nii.gz"]
    assert nan["status"] == "ok" and any("NaN" in w for w in nan["warnings"])
    assert by_id["bad/dicom_uneven"]["status"] == "ok" and by_id["bad/dicom_uneven"]["warnings"]
    assert sum(r["status"] == "error" for r in records) >= 5
    for record in records:
        if record["status"] == "error":
            assert record["error"]["message"] and "\n" not in record["error"]["message"]
    assert "error" in result.output  # one line per failure on stderr
    assert cases


def test_rerunning_skips_finished_studies_and_retry_errors_redoes_only_failures(model_dir, phantom_set, tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    for name in ("case_0001", "case_0002"):
        (studies / f"{name}.nii.gz").write_bytes((phantom_set / "volumes" / f"{name}.nii.gz").read_bytes())
    broken = studies / "case_0003.nii.gz"
    broken.write_bytes((phantom_set / "volumes" / "case_0003.nii.gz").read_bytes()[:300])
    out = tmp_path / "findings.jsonl"
    args = ["report", str(studies), "--out", str(out)]
    assert run_cli(args, model_dir, tmp_path / "c").exit_code == 1
    first = records_of(out)
    assert [r["status"] for r in first] == ["ok", "ok", "error"]
    assert run_cli(args, model_dir, tmp_path / "c").exit_code == 1
    assert records_of(out) == first  # nothing redone, nothing added
    broken.write_bytes((phantom_set / "volumes" / "case_0003.nii.gz").read_bytes())
    result = run_cli([*args, "--retry-errors"], model_dir, tmp_path / "c")
    assert result.exit_code == 0, result.output
    after = records_of(out)
    assert sorted(r["study_id"] for r in after) == ["case_0001.nii.gz", "case_0002.nii.gz", "case_0003.nii.gz"]
    assert all(r["status"] == "ok" for r in after)
    assert after[:2] == first[:2]


def test_a_findings_file_from_before_suffix_kept_ids_resumes_without_redoing(model_dir, phantom_set, tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    for name in ("case_0001", "case_0002"):
        (studies / f"{name}.nii.gz").write_bytes((phantom_set / "volumes" / f"{name}.nii.gz").read_bytes())
    out = tmp_path / "findings.jsonl"
    args = ["report", str(studies), "--out", str(out)]
    assert run_cli(args, model_dir, tmp_path / "c").exit_code == 0
    # as an older omnict wrote it: ids without the suffix, no root
    old = [{**{k: v for k, v in r.items() if k != "root"}, "study_id": r["study_id"][:-7]} for r in records_of(out)]
    out.write_text("".join(json.dumps(record) + "\n" for record in old))
    assert [r["study_id"] for r in old] == ["case_0001", "case_0002"]
    result = run_cli(args, model_dir, tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert records_of(out) == old  # nothing redone, nothing added


def test_a_torn_last_line_is_cut_and_the_study_redone(model_dir, phantom_set, tmp_path):
    out = tmp_path / "findings.jsonl"
    args = ["report", str(phantom_set / "volumes"), "--out", str(out)]
    assert run_cli(args, model_dir, tmp_path / "c").exit_code == 0
    whole = records_of(out)
    out.write_bytes(out.read_bytes()[:-40])  # killed inside the last write
    result = run_cli(args, model_dir, tmp_path / "c")
    assert result.exit_code == 0 and "torn last line" in result.output
    assert [without_timing(r) for r in records_of(out)] == [without_timing(r) for r in whole]


def test_resume_with_another_model_is_refused_unless_overwrite(model_dir, phantom_set, tmp_path):
    other = make_tiny_model_dir(tmp_path, name="other-omnict")
    weights = load_file(other / "model.safetensors")
    weights = {name: tensor + 0.01 if tensor.is_floating_point() else tensor for name, tensor in weights.items()}
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "findings.jsonl"
    args = ["report", str(phantom_set / "volumes" / "case_0001.nii.gz"), "--out", str(out)]
    assert run_cli(args, model_dir, tmp_path / "c").exit_code == 0
    refused = run_cli(args, other, tmp_path / "c")
    assert refused.exit_code == 2, refused.output
    assert "another model" in refused.output and "--overwrite" in refused.output
    assert "Traceback" not in refused.output
    assert run_cli([*args, "--overwrite"], other, tmp_path / "c").exit_code == 0
    assert [r["model"]["name"] for r in records_of(out)] == ["other-omnict"]


def test_no_model_anywhere_names_both_ways_to_give_one(tmp_path, monkeypatch):
    from omnict_cli.run import engine as inference

    monkeypatch.setattr(inference, "bundled_model_dirs", lambda: [tmp_path / "nothing"])
    monkeypatch.delenv("OMNICT_MODEL", raising=False)
    result = CliRunner().invoke(
        main, ["report", str(REPO / "examples" / "ct_chest_small.nii.gz"), "--out", str(tmp_path / "f.jsonl")]
    )
    assert result.exit_code == 2
    assert "--model" in result.output and "OMNICT_MODEL" in result.output
    assert not (tmp_path / "f.jsonl").exists()


def test_model_comes_from_the_environment_when_not_given(model_dir, tmp_path, monkeypatch):
    out = tmp_path / "f.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "report",
            str(REPO / "examples" / "ct_chest_small.nii.gz"),
            "--out",
            str(out),
            "--segmenter",
            "none",
            "--max-new-tokens",
            "2",
            "--workers",
            "0",
        ],
        env={"OMNICT_MODEL": str(model_dir)},
    )
    assert result.exit_code == 0, result.output
    assert "model tiny-omnict:" in result.output and "parameters on cpu, float32" in result.output
    assert records_of(out)[0]["segmenter"] == "none"


def test_the_segmenter_fallback_notice_keeps_its_install_command_whole(model_dir, phantom_set, tmp_path, monkeypatch):
    """Rich markup once ate the "[seg]" of 'pip install -e ".[seg]"' from the notice, leaving a wrong command."""
    import omnict_cli.segmentation.totalseg as totalseg

    monkeypatch.setattr(totalseg, "_installed_version", lambda: None)
    out = tmp_path / "f.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "report",
            str(phantom_set / "volumes" / "case_0001.nii.gz"),
            "--out",
            str(out),
            "--model",
            str(model_dir),
            "--segmenter",
            "auto",
            "--cache-dir",
            str(tmp_path / "c"),
            "--max-new-tokens",
            "4",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert 'pip install -e ".[seg]"' in " ".join(result.output.split()), result.output


def test_an_unwritable_output_stops_before_any_work_with_one_line(model_dir, phantom_set, tmp_path):
    if os.geteuid() == 0:
        target = Path("/proc/version")  # exists, not writable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "f.jsonl"
    result = run_cli(["report", str(phantom_set / "volumes"), "--out", str(target)], model_dir, tmp_path / "c")
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "writ" in result.output


def test_a_full_disk_mid_run_stops_with_one_line_and_no_partial_record(model_dir, phantom_set, tmp_path, monkeypatch):
    from omnict_cli.run import records

    out = tmp_path / "findings.jsonl"
    real_write, calls = os.write, {"n": 0}

    def write_then_fail(fd, data):
        calls["n"] += 1
        if calls["n"] == 2:  # the second record: half of it lands, then the disk is full
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(records.os, "write", write_then_fail)
    result = run_cli(["report", str(phantom_set / "volumes"), "--out", str(out)], model_dir, tmp_path / "c")
    assert result.exit_code == 2
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert len(records_of(out)) == 1  # the first record whole, nothing of the second


def test_no_dicom_identifier_reaches_a_record(model_dir, tmp_path):
    series = tmp_path / "studies" / "anon_001"
    files = write_dicom_series(series, phantom_hu((12, 32, 32)))
    for path in files:
        dataset = pydicom.dcmread(path)
        for keyword, value in PHI.items():
            setattr(dataset, keyword, value)
        dataset.save_as(path)
    out = tmp_path / "f.jsonl"
    result = run_cli(["report", str(tmp_path / "studies"), "--out", str(out)], model_dir, tmp_path / "c")
    assert result.exit_code == 0, result.output
    text = out.read_text() + result.output
    assert records_of(out)[0]["study_id"] == "anon_001"
    for value in [*PHI.values(), "Doe", "Jane", "4455667", "1958"]:
        assert value not in text


def test_ask_prints_the_answer_and_routes_the_organ(model_dir, tmp_path):
    scan = REPO / "examples" / "ct_chest_small.nii.gz"
    result = run_cli(["ask", str(scan), "Is the heart enlarged?", "--json"], model_dir, tmp_path / "c")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["task"] == "ask" and record["question"] == "Is the heart enlarged?"
    assert record["status"] == "ok" and isinstance(record["answer"], str)
    assert "heart" in record["organ_reason"]
    plain = run_cli(["ask", str(scan), "Is the heart enlarged?", "--organ", "lungs"], model_dir, tmp_path / "c")
    assert plain.exit_code == 0 and "lungs" in plain.output


def test_ask_batch_on_demo_rows_then_score(model_dir, phantom_set, tmp_path):
    rows = phantom_set / "qa.jsonl"
    extra = tmp_path / "rows.jsonl"
    lines = rows.read_text().splitlines()[:6]
    extra.write_text(
        "\n".join(lines) + "\n" + json.dumps({"image": "missing.nii.gz", "question": "Any effusion?"}) + "\n"
    )
    for line in lines:  # images are relative to the rows file's folder
        image = json.loads(line)["image"]
        (tmp_path / image).parent.mkdir(parents=True, exist_ok=True)
        if not (tmp_path / image).exists():
            (tmp_path / image).symlink_to(phantom_set / image)
    out = tmp_path / "answers.jsonl"
    result = run_cli(["ask", "--batch", str(extra), "--out", str(out), "--batch-size", "4"], model_dir, tmp_path / "c")
    assert result.exit_code == 1, result.output  # the missing image is an error record
    records = records_of(out)
    assert len(records) == 7 and len({r["record_id"] for r in records}) == 7
    missing = [r for r in records if r["status"] == "error"]
    assert len(missing) == 1 and "line 7" in missing[0]["error"]["message"]
    assert all(isinstance(r["answer"], str) for r in records if r["status"] == "ok")
    references = tmp_path / "references.jsonl"
    references.write_text("\n".join(lines) + "\n")
    scored = CliRunner().invoke(main, ["score", str(out), "--references", str(references)])
    assert "VQA" in scored.output, scored.output


def test_oom_on_a_batch_retries_in_halves_then_records_the_study(model_dir, phantom_set, tmp_path, monkeypatch):
    from omnict_cli.run.engine import Engine

    real_generate, sizes = Engine.generate, []

    def generate(self, questions, inputs, masks, settings):
        sizes.append(len(questions))
        if len(questions) > 1 or inputs[0].kind == "slice":  # the slice never fits, in this pretend GPU
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_generate(self, questions, inputs, masks, settings)

    monkeypatch.setattr(Engine, "generate", generate)
    studies = tmp_path / "s"
    studies.mkdir()
    for name in ("case_0001", "case_0002", "case_0003"):
        (studies / f"{name}.nii.gz").symlink_to(phantom_set / "volumes" / f"{name}.nii.gz")
    (studies / "slice.png").symlink_to(next((phantom_set / "slices").glob("*.png")))
    out = tmp_path / "f.jsonl"
    result = run_cli(["report", str(studies), "--out", str(out), "--batch-size", "4"], model_dir, tmp_path / "c")
    assert sizes == [4, 2, 1, 1, 2, 1, 1]
    by_id = {r["study_id"]: r for r in records_of(out)}
    assert [by_id[f"case_000{i}.nii.gz"]["status"] for i in (1, 2, 3)] == ["ok", "ok", "ok"]
    slice_record = by_id["slice.png"]
    assert slice_record["status"] == "error" and "out of GPU memory even alone" in slice_record["error"]["message"]
    assert result.exit_code == 1


def test_beam_search_on_a_mixed_batch_equals_each_study_alone():
    from tests.test_model_generation import batch_of_two, build

    model, processor = build()
    batch = batch_of_two(processor)
    together = model.generate(**batch, max_new_tokens=5, num_beams=3, num_return_sequences=2, do_sample=False)
    prompt = batch["input_ids"].shape[1]
    for row, (question, kind, units) in enumerate(
        [("is the liver enlarged ?", "slice", 1), ("describe this ct image", "volume", 2)]
    ):
        from tests.test_model_processing import study

        alone = processor([question], [study(kind, units)])
        ids = model.generate(**alone, max_new_tokens=5, num_beams=3, num_return_sequences=2, do_sample=False)
        assert torch.equal(ids[:, alone["input_ids"].shape[1] :], together[2 * row : 2 * row + 2, prompt:])


# ---- real processes ------------------------------------------------------------------------


def _report_command(studies, out, model_dir, cache, *extra):
    return [
        sys.executable,
        "-m",
        "omnict_cli",
        "report",
        str(studies),
        "--out",
        str(out),
        "--model",
        str(model_dir),
        "--segmenter",
        "builtin",
        "--cache-dir",
        str(cache),
        "--max-new-tokens",
        "12",
        "--batch-size",
        "1",
        "--workers",
        "0",
        "--quiet",
        *extra,
    ]


def _wait_for_records(out: Path, count: int, process, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run did not write {count} records in time: {process.poll()}")


@pytest.fixture(scope="module")
def many_studies(phantom_set, tmp_path_factory):
    folder = tmp_path_factory.mktemp("many")
    for copy in range(2):
        for name in ("case_0001", "case_0002", "case_0003"):
            (folder / f"{name}_{copy}.nii.gz").symlink_to(phantom_set / "volumes" / f"{name}.nii.gz")
    return folder


def test_sigkill_mid_run_then_rerun_gives_every_study_exactly_once(model_dir, many_studies, tmp_path):
    out, cache = tmp_path / "f.jsonl", tmp_path / "c"
    process = subprocess.Popen(
        _report_command(many_studies, out, model_dir, cache),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait_for_records(out, 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    interrupted = records_of(out)
    assert 2 <= len(interrupted) < 6
    finished = subprocess.run(
        _report_command(many_studies, out, model_dir, cache), cwd=REPO, capture_output=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr.decode()
    records = records_of(out)
    assert sorted(r["study_id"] for r in records) == sorted(p.name for p in many_studies.iterdir())
    assert records[: len(interrupted)] == interrupted


def test_ctrl_c_finishes_the_write_and_exits_130(model_dir, many_studies, tmp_path):
    out = tmp_path / "f.jsonl"
    process = subprocess.Popen(
        _report_command(many_studies, out, model_dir, tmp_path / "c"),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait_for_records(out, 2, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    assert "resume" in stderr.decode() and b"Traceback" not in stderr
    assert len(records_of(out)) >= 2


@pytest.fixture(scope="module")
def single_process_records(model_dir, many_studies, tmp_path_factory):
    """The records of one in-process run over ``many_studies`` (timing left out), sorted by study id."""
    root = tmp_path_factory.mktemp("single")
    args = ["report", str(many_studies), "--out", str(root / "single.jsonl"), "--max-new-tokens", "12"]
    assert run_cli(args, model_dir, root / "c").exit_code == 0
    return sorted((without_timing(r) for r in records_of(root / "single.jsonl")), key=lambda r: r["study_id"])


def test_two_shards_merge_into_the_single_process_records(model_dir, many_studies, single_process_records, tmp_path):
    """Two SLURM-array jobs: each writes its shard; the one that finishes last merges them into --out."""
    out = tmp_path / "sharded.jsonl"
    for index in range(2):
        result = run_cli(
            ["report", str(many_studies), "--out", str(out), "--shard", f"{index}/2", "--max-new-tokens", "12"],
            model_dir,
            tmp_path / "c",
        )
        assert result.exit_code == 0, result.output
        assert out.exists() == (index == 1)  # merged only when both shards are done
    parts = [records_of(tmp_path / f"sharded.shard{i}-of-2.jsonl") for i in range(2)]
    assert all(parts) and not {r["study_id"] for r in parts[0]} & {r["study_id"] for r in parts[1]}
    assert [without_timing(r) for r in records_of(out)] == single_process_records


def test_two_distributed_cpu_processes_merge_one_file(model_dir, many_studies, single_process_records, tmp_path):
    """torchrun sets RANK / WORLD_SIZE as `accelerate launch` does on GPUs; rank 0 merges after a barrier."""
    pytest.importorskip("accelerate")
    out = tmp_path / "launched.jsonl"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "omnict_cli",
        *_report_command(many_studies, out, model_dir, tmp_path / "c")[3:],
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    shards = [records_of(tmp_path / f"launched.shard{i}-of-2.jsonl") for i in range(2)]
    assert all(shards)
    assert [without_timing(r) for r in records_of(out)] == single_process_records


def test_the_documented_python_example_runs(model_dir, tmp_path, monkeypatch):
    """docs/report.md's "From Python" block, run from a folder holding examples/ (model from the env;
    in-process loading and 4 new tokens to keep the test fast)."""
    from omnict_cli.run.engine import GenerationSettings

    text = (REPO / "docs" / "report.md").read_text()
    code = text[text.index("## From Python") :].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("OMNICT_MODEL", str(model_dir))
    monkeypatch.setenv("OMNICT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    quick = code.replace("workers=1)", "workers=0, generation=GenerationSettings(max_new_tokens=4))")
    assert quick != code
    exec(compile(quick, "docs/report.md", "exec"), {"GenerationSettings": GenerationSettings})
    records = records_of(tmp_path / "findings.jsonl")
    assert len(records) == len({r["study_id"] for r in records}) >= 15
    assert {r["status"] for r in records} == {"ok", "skipped"}
