"""`accelerate launch -m omnict_cli train` with 2 CPU processes (DDP over gloo) gives the loss curve of one
process with twice the gradient accumulation: same rows per step, same losses, same final weights."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from omnict_cli.training.config import TrainConfig
from omnict_cli.training.trainer import train
from tests.test_training_data import one_torch_thread, phantom_set, tiny_model  # noqa: F401 (fixtures)
from tests.test_training_resume import rows  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
STEPS = 6


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_match_one_process_with_twice_the_accumulation(tmp_path, tiny_model, rows):  # noqa: F811
    caches = dict(tensor_cache_dir=tmp_path / "tensors", mask_cache_dir=tmp_path / "masks")
    common = dict(
        stage="sft",
        data=rows,
        model=tiny_model,
        learning_rate=5e-3,
        per_device_batch_size=2,
        max_steps=STEPS,
        max_length=256,
        segmenter="builtin",
        **caches,
    )
    single = train(TrainConfig(out=tmp_path / "one", gradient_accumulation=2, **common), progress=False)

    # --multi_gpu selects accelerate's multi-process launcher (torchrun); without a GPU the trainer runs on CPU
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "omnict_cli",
        "train",
        "--quiet",
        "--stage",
        "sft",
        "--data",
        str(rows),
        "--model",
        str(tiny_model),
        "--out",
        str(tmp_path / "two"),
        "--lr",
        "5e-3",
        "--batch-size",
        "2",
        "--grad-accum",
        "1",
        "--max-steps",
        str(STEPS),
        "--max-length",
        "256",
        "--tensor-cache-dir",
        str(caches["tensor_cache_dir"]),
        "--cache-dir",
        str(caches["mask_cache_dir"]),
    ]
    environment = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    run = subprocess.run(launch, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "trained 6 steps" in run.stderr and run.stderr.count("trained 6 steps") == 1  # main process reports

    one = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in two] == [r["step"] for r in one] == list(range(1, STEPS + 1))
    assert [r["rows"] for r in two] == [r["rows"] for r in one]
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-4)
    assert one[-1]["loss"] < one[0]["loss"]
    state = json.loads((tmp_path / "two" / "training.json").read_text())
    assert state["num_processes"] == 2 and single.steps == state["step"] == STEPS
    weights_one = load_file(tmp_path / "one" / "model.safetensors")
    weights_two = load_file(tmp_path / "two" / "model.safetensors")
    assert all(torch.allclose(weights_two[name], weights_one[name], atol=1e-5) for name in weights_one)
