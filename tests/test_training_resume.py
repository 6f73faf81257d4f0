"""Resume: a real `omnict train` process killed (SIGKILL) after a checkpoint, then `--resume`, continues at
the same step with the same next batch and ends where an uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from omnict_cli.training.checkpoint import list_checkpoints
from omnict_cli.training.config import TrainConfig
from omnict_cli.training.trainer import train
from tests.test_training_data import one_torch_thread, phantom_set, tiny_model  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
STEPS = 16


@pytest.fixture(scope="module")
def rows(tmp_path_factory, phantom_set):  # noqa: F811
    """Three short-answer rows per study (24 rows: 12 steps an epoch)."""
    lines, per_image = [], {}
    for line in (phantom_set / "qa.jsonl").read_text().splitlines():
        row = json.loads(line)
        if len(row["messages"][1]["content"]) <= 40 and per_image.setdefault(row["image"], 0) < 3:
            per_image[row["image"]] += 1
            row["image"] = str(phantom_set / row["image"])
            lines.append(json.dumps(row))
    path = tmp_path_factory.mktemp("resume-rows") / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def settings(rows, model, out, caches) -> dict:
    return dict(
        stage="sft",
        data=rows,
        model=model,
        out=out,
        learning_rate=5e-3,
        per_device_batch_size=1,
        gradient_accumulation=2,
        epochs=2,
        max_steps=STEPS,
        save_every_steps=2,
        max_length=256,
        tensor_cache_dir=caches / "tensors",
        mask_cache_dir=caches / "masks",
    )


def command(values: dict, resume: bool) -> list[str]:
    args = [sys.executable, "-m", "omnict_cli", "train", "--quiet"]
    for option, name in (
        ("--stage", "stage"),
        ("--data", "data"),
        ("--model", "model"),
        ("--out", "out"),
        ("--lr", "learning_rate"),
        ("--batch-size", "per_device_batch_size"),
        ("--grad-accum", "gradient_accumulation"),
        ("--epochs", "epochs"),
        ("--max-steps", "max_steps"),
        ("--save-every", "save_every_steps"),
        ("--max-length", "max_length"),
        ("--tensor-cache-dir", "tensor_cache_dir"),
        ("--cache-dir", "mask_cache_dir"),
    ):
        args += [option, str(values[name])]
    return args + (["--resume"] if resume else [])


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_killed_run_resumes_at_the_same_step_with_the_same_next_batch(tmp_path, tiny_model, rows):
    caches = tmp_path / "caches"
    reference = train(TrainConfig(**settings(rows, tiny_model, tmp_path / "reference", caches)), progress=False)
    values = settings(rows, tiny_model, tmp_path / "killed", caches)
    environment = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        command(values, resume=False), cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not list_checkpoints(values["out"]) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    resumed_at = list_checkpoints(values["out"])[-1][0]
    assert 2 <= resumed_at < STEPS

    finished = subprocess.run(
        command(values, resume=True), cwd=REPO, env=environment, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"resuming from {values['out'] / 'checkpoints' / f'step-{resumed_at}'} at step {resumed_at}" in " ".join(
        finished.stderr.split()
    )
    resumed, uninterrupted = metrics(values["out"]), metrics(reference.out_dir)
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))  # no step twice, none missing
    for mine, theirs in zip(resumed[resumed_at:], uninterrupted[resumed_at:]):
        assert mine["rows"] == theirs["rows"]  # the same next batch, and every batch after it
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-4, abs=1e-5)
        assert mine["lr"] == pytest.approx(theirs["lr"])
    final, expected = load_file(values["out"] / "model.safetensors"), load_file(reference.out_dir / "model.safetensors")
    assert all(torch.allclose(final[name], expected[name], atol=1e-5) for name in expected)


def test_ctrl_c_finishes_the_step_saves_a_checkpoint_prints_the_resume_command_and_exits_130(
    tmp_path, tiny_model, rows
):
    import shlex

    values = dict(settings(rows, tiny_model, tmp_path / "stopped", tmp_path / "caches"), save_every_steps=100)
    environment = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        command(values, resume=False), cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        metrics_file = values["out"] / "metrics.jsonl"
        while process.poll() is None and time.monotonic() < deadline:
            if metrics_file.is_file() and len(metrics_file.read_text().splitlines()) >= 2:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        stderr = process.communicate(timeout=120)[1].decode()
    finally:
        process.kill()
    assert process.returncode == 130, stderr[-2000:]
    done = metrics(values["out"])[-1]["step"]
    assert 2 <= done < STEPS  # the step under way was finished, the run stopped before the end
    assert list_checkpoints(values["out"])[-1][0] == done  # no periodic checkpoint was due: this one is Ctrl-C's
    assert f"interrupted after step {done} of {STEPS}" in stderr and "Traceback" not in stderr
    assert "Writing model shards" not in stderr and "it/s]" not in stderr, stderr  # no library bar at the checkpoint
    resume_line = stderr.strip().splitlines()[-1].split()
    assert resume_line[0] == "omnict" and resume_line[-1] == "--resume"

    finished = subprocess.run(
        [sys.executable, "-m", "omnict_cli", *shlex.split(" ".join(resume_line))[1:]],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert [r["step"] for r in metrics(values["out"])] == list(range(1, STEPS + 1))  # no step twice, none missing
