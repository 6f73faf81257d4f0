"""What ``--model`` accepts: an omnict directory, a hub id from the (offline) Hugging Face cache, a release
checkpoint imported once into omnict's cache; and one clear line for weights files that are not safetensors.

The hub cache is built in the test exactly as ``huggingface_hub`` writes it
(``models--org--name/refs/main``, ``snapshots/<commit>/<file>`` symlinked to
``blobs/<sha>``), from the bundled demo model's files, with
``HF_HUB_OFFLINE=1``: nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from omnict_cli.cli.main import main
from omnict_cli.errors import OmnictError
from omnict_cli.model import import_cache
from omnict_cli.model.import_cache import IMPORT_RECORD, cached_import, imported_model_dir
from omnict_cli.model.sources import ModelSourceError, ResolvedSource, resolve_pretrained

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "models" / "omnict-demo"
SLICE = REPO / "examples" / "ct_chest_small_axial15.png"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OLD_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def fill_hub_cache(cache: Path, repo_id: str, commit: str, source: Path, ref: str | None = "main") -> Path:
    """Lay ``source``'s files out as ``snapshot_download`` leaves them; returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.is_file():
            blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
            shutil.copyfile(path, blob)
            (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An offline hub cache at ``$HF_HUB_CACHE`` holding the demo model as ``org/omnict-demo``."""
    cache = tmp_path / "hf-cache"
    fill_hub_cache(cache, "org/omnict-demo", COMMIT, DEMO)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMNICT_CACHE_DIR", str(tmp_path / "omnict-cache"))
    monkeypatch.chdir(tmp_path)
    return cache


def test_a_hub_id_resolves_to_its_snapshot_in_the_offline_cache(offline_hub):
    source = resolve_pretrained("org/omnict-demo")
    assert source.path == offline_hub / "models--org--omnict-demo" / "snapshots" / COMMIT
    assert (source.hub_id, source.commit) == ("org/omnict-demo", COMMIT)
    assert (source.path / "model.safetensors").read_bytes() == (DEMO / "model.safetensors").read_bytes()
    assert source.to_dict() == {"hub_id": "org/omnict-demo", "commit": COMMIT}
    assert source.description == f"org/omnict-demo@{COMMIT}"


def test_hf_home_is_honoured_when_hf_hub_cache_is_not_set(tmp_path, monkeypatch):
    fill_hub_cache(tmp_path / "hf-home" / "hub", "org/omnict-demo", COMMIT, DEMO)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_pretrained("org/omnict-demo").path.parent.parent.parent == tmp_path / "hf-home" / "hub"


def test_a_revision_after_at_picks_that_snapshot_by_commit_or_by_ref(offline_hub):
    fill_hub_cache(offline_hub, "org/omnict-demo", OLD_COMMIT, DEMO, ref="v1")
    assert resolve_pretrained(f"org/omnict-demo@{OLD_COMMIT}").commit == OLD_COMMIT
    assert resolve_pretrained("org/omnict-demo@v1").commit == OLD_COMMIT
    assert resolve_pretrained("org/omnict-demo@main").commit == COMMIT


RELEASE_REPO_FILES = [
    "config.json",
    "generation_config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "projection-weights/model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "pytorch_model.bin",
    "training_args.bin",
    "optimizer.pt",
    "rng_state.pth",
    "modeling_omnict.py",
    "README.md",
]


def test_online_a_hub_id_fetches_configs_tokenizer_and_safetensors_only(tmp_path, monkeypatch):
    """What snapshot_download is asked for, applied the way the hub applies it to a release's file list."""
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    asked = {}

    def fake_snapshot_download(repo_id, revision=None, cache_dir=None, local_files_only=False, allow_patterns=None):
        asked.update(repo_id=repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
        asked["files"] = sorted(filter_repo_objects(RELEASE_REPO_FILES, allow_patterns=allow_patterns))
        folder = tmp_path / "snapshots" / COMMIT
        folder.mkdir(parents=True)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    source = resolve_pretrained("Alibaba-DAMO-Academy/OmniCT-3B@v1.0")
    assert (source.commit, asked["revision"], asked["local_files_only"]) == (COMMIT, "v1.0", False)
    assert Path(asked["cache_dir"]) == tmp_path / "hf-home" / "hub"
    assert not [name for name in asked["files"] if name.endswith((".bin", ".pt", ".pth", ".py", ".md"))]
    assert {"config.json", "model.safetensors.index.json", "tokenizer.json", "merges.txt"} <= set(asked["files"])
    assert {"model-00001-of-00002.safetensors", "chat_template.jinja"} <= set(asked["files"])


def test_a_hub_id_missing_from_the_offline_cache_is_one_line(offline_hub):
    with pytest.raises(ModelSourceError) as missing:
        resolve_pretrained("org/not-cached")
    assert str(missing.value) == (
        f"hub id org/not-cached not in the local cache {offline_hub} (HF_HUB_OFFLINE is set); "
        "run once online or copy the cache"
    )
    with pytest.raises(ModelSourceError, match="hub id org/omnict-demo@v7 not in the local cache"):
        resolve_pretrained("org/omnict-demo@v7")
    result = CliRunner().invoke(main, ["ask", str(SLICE), "Is there a nodule?", "--model", "org/not-cached"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "hub id org/not-cached not in the local cache" in result.output and "(from --model)" in result.output


def test_omnict_model_may_hold_a_hub_id_too(offline_hub, monkeypatch):
    from omnict_cli.run.engine import resolve_model

    monkeypatch.setenv("OMNICT_MODEL", "org/omnict-demo")
    assert resolve_model(None).to_dict() == {"hub_id": "org/omnict-demo", "commit": COMMIT}
    monkeypatch.setenv("OMNICT_MODEL", "org/not-cached")
    with pytest.raises(OmnictError, match=r"hub id org/not-cached not in the local cache .*\(from \$OMNICT_MODEL\)"):
        resolve_model(None)


def test_build_model_takes_its_components_by_hub_id(offline_hub, tmp_path):
    from tests.test_model_build import save_llm, save_siglip

    fill_hub_cache(offline_hub, "google/siglip-tiny", COMMIT, save_siglip(tmp_path / "siglip"))
    fill_hub_cache(offline_hub, "Qwen/Qwen2.5-tiny", COMMIT, save_llm(tmp_path / "qwen"))
    out = tmp_path / "built"
    args = ["build-model", "--vision", "google/siglip-tiny", "--llm", "Qwen/Qwen2.5-tiny", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["model_type"] == "omnict"
    missing = CliRunner().invoke(main, [*args[:4], "Qwen/not-cached", "--out", str(tmp_path / "other")])
    assert missing.exit_code == 1 and "hub id Qwen/not-cached not in the local cache" in missing.output
    assert not (tmp_path / "other").exists()


def test_train_refuses_a_hub_id_it_cannot_find_in_one_line(offline_hub, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("{}\n")
    args = ["train", "--stage", "sft", "--data", str(rows), "--model", "org/not-cached", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: hub id org/not-cached not in the local cache" in result.output


def test_an_existing_directory_wins_over_a_hub_id_of_the_same_spelling(offline_hub, tmp_path):
    shutil.copytree(DEMO, tmp_path / "org" / "omnict-demo")
    source = resolve_pretrained("org/omnict-demo")
    assert source.hub_id is None and source.path == Path("org/omnict-demo")
    assert source.to_dict() == {"path": "org/omnict-demo"}


def test_report_with_a_hub_id_records_the_hub_id_and_commit(offline_hub, tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(SLICE, studies / "slice.png")
    out = tmp_path / "findings.jsonl"
    command = [sys.executable, "-m", "omnict_cli", "report", str(studies), "--out", str(out)]
    done = subprocess.run(
        [*command, "--model", "org/omnict-demo", "--segmenter", "none", "--device", "cpu", "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert f"org/omnict-demo@{COMMIT}" in done.stderr
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["status"] == "ok"
    assert record["model"]["name"] == "omnict-demo"
    assert record["model"]["source"] == {"hub_id": "org/omnict-demo", "commit": COMMIT}


def test_ask_with_a_hub_id_and_the_same_weights_by_path_share_one_file(offline_hub, tmp_path):
    runner = CliRunner()
    rows = tmp_path / "questions.jsonl"
    rows.write_text(json.dumps({"image": str(SLICE), "question": "Is there a nodule?"}) + "\n")
    out = tmp_path / "answers.jsonl"
    common = [
        "ask",
        "--batch",
        str(rows),
        "--out",
        str(out),
        "--segmenter",
        "none",
        "--device",
        "cpu",
        "--workers",
        "0",
    ]
    by_hub = runner.invoke(main, [*common, "--model", "org/omnict-demo"])
    assert by_hub.exit_code == 0, by_hub.output
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["model"]["source"] == {"hub_id": "org/omnict-demo", "commit": COMMIT}
    by_path = runner.invoke(main, [*common, "--model", str(DEMO)])  # same revision: resuming is allowed
    assert by_path.exit_code == 0, by_path.output
    assert len(out.read_text().splitlines()) == 1


def test_an_omnict_directory_records_the_path_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(
        main, ["ask", str(SLICE), "Is there a nodule?", "--model", "models/omnict-demo", "--json", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout[result.stdout.index("{") :])
    assert record["model"]["source"] == {"path": "models/omnict-demo"}
    assert record["model"]["name"] == "omnict-demo"


# ---- the cache of imported release checkpoints -------------------------------------------------------------


class CountingImporter:
    """Stands in for ``import_release``: writes the demo model at ``out`` and counts its calls."""

    def __init__(self, seconds: float = 0.0):
        self.calls = 0
        self.seconds = seconds

    def __call__(self, source_dir, out, echo=print):
        self.calls += 1
        time.sleep(self.seconds)
        shutil.copytree(DEMO, out)


def _release_dir(tmp_path: Path) -> ResolvedSource:
    folder = tmp_path / "OmniCT-3B"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llava_qwen"}')
    (folder / "model.safetensors").write_bytes((DEMO / "model.safetensors").read_bytes())
    return ResolvedSource(path=folder, given=str(folder))


def test_the_second_use_of_a_release_directory_reuses_the_cached_import(tmp_path):
    source, importer, root = _release_dir(tmp_path), CountingImporter(), tmp_path / "models"
    first = cached_import(source, root=root, importer=importer, echo=lambda text: None)
    stamp = (first / IMPORT_RECORD).stat().st_mtime_ns
    second = cached_import(source, root=root, importer=importer, echo=lambda text: None)
    assert (first, importer.calls) == (second, 1)
    assert (second / IMPORT_RECORD).stat().st_mtime_ns == stamp
    assert json.loads((first / IMPORT_RECORD).read_text())["source"] == {"path": str(source.path)}
    os.utime(source.path / "model.safetensors", ns=(1, 1))  # the checkpoint changed: import again, elsewhere
    third = cached_import(source, root=root, importer=importer, echo=lambda text: None)
    assert third != first and importer.calls == 2


def test_two_runs_starting_at_once_import_once(tmp_path):
    source, importer, root = _release_dir(tmp_path), CountingImporter(seconds=0.5), tmp_path / "models"
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cached_import(source, root=root, importer=importer)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert importer.calls == 1 and len(set(results)) == 1 and len(results) == 2


KILLED_IMPORT = """
import shutil, sys, time
from pathlib import Path
from omnict_cli.model.import_cache import cached_import
from omnict_cli.model.sources import ResolvedSource

def slow_importer(source_dir, out, echo=print):
    out.mkdir(parents=True)
    shutil.copy(Path(source_dir) / "config.json", out / "config.json")  # half a model, then killed
    Path(sys.argv[3]).write_text("started")
    time.sleep(60)

cached_import(ResolvedSource(path=Path(sys.argv[1]), given=sys.argv[1]), root=Path(sys.argv[2]), importer=slow_importer)
"""


def test_an_import_killed_midway_is_not_used_by_the_next_run(tmp_path):
    source, root, started = _release_dir(tmp_path), tmp_path / "models", tmp_path / "started"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_IMPORT, str(source.path), str(root), str(started)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 120
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), "the import never started"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    out = imported_model_dir(source, root)
    assert not out.exists()  # nothing at the place a run looks
    importer = CountingImporter()
    assert cached_import(source, root=root, importer=importer, echo=lambda text: None) == out
    assert importer.calls == 1 and (out / "model.safetensors").is_file()
    assert [path.name for path in root.iterdir() if path.name.startswith(".importing")] == []


def test_a_refused_import_leaves_nothing_in_the_cache(tmp_path):
    def refusing_importer(source_dir, out, echo=print):
        out.mkdir(parents=True)
        raise OmnictError("tensor 'x.weight' has no place", path=source_dir)

    source, root = _release_dir(tmp_path), tmp_path / "models"
    with pytest.raises(OmnictError, match="tensor 'x.weight' has no place"):
        cached_import(source, root=root, importer=refusing_importer, echo=lambda text: None)
    assert [path.name for path in root.iterdir() if not path.name.endswith(".lock")] == []


def test_the_models_cache_follows_omnict_cache_dir_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("OMNICT_CACHE_DIR", str(tmp_path / "a"))
    assert import_cache.default_models_root() == tmp_path / "a" / "models"
    monkeypatch.delenv("OMNICT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert import_cache.default_models_root() == tmp_path / "xdg" / "omnict" / "models"


@pytest.fixture
def release_setup(offline_hub, tmp_path) -> Path:
    """A tiny release checkpoint without a vision tower; the stock SigLIP id it needs sits in the offline cache."""
    from omnict_cli.model.release_import import DEFAULT_VISION
    from tests.release_checkpoints import write_release_checkpoint, write_siglip_dir

    fill_hub_cache(offline_hub, DEFAULT_VISION, OLD_COMMIT, write_siglip_dir(tmp_path / "siglip"))
    return write_release_checkpoint(tmp_path / "OmniCT-3B", style="projector")


def test_a_release_directory_is_imported_on_first_use_and_reused_after(release_setup, tmp_path):
    runner = CliRunner()
    ask = ["ask", str(SLICE), "Is there a nodule?", "--model", str(release_setup), "--json", "--device", "cpu"]
    first = runner.invoke(main, [*ask, "--segmenter", "none"])
    assert first.exit_code == 0, first.output
    assert f"importing {release_setup} into {tmp_path / 'omnict-cache' / 'models'}" in first.stderr
    (imported,) = [path for path in (tmp_path / "omnict-cache" / "models").glob("OmniCT-3B-*") if path.is_dir()]
    stamp = (imported / IMPORT_RECORD).stat().st_mtime_ns
    second = runner.invoke(main, [*ask, "--segmenter", "none"])
    assert second.exit_code == 0, second.output
    assert "importing" not in second.stderr and (imported / IMPORT_RECORD).stat().st_mtime_ns == stamp
    record = json.loads(second.stdout[second.stdout.index("{") :])
    assert record["status"] == "ok"
    assert record["model"]["name"] == "OmniCT-3B" and record["model"]["source"] == {"path": str(release_setup)}


def test_a_hub_id_of_a_release_checkpoint_is_imported_once_keyed_by_its_commit(release_setup, offline_hub):
    from omnict_cli.model.sources import resolve_model

    fill_hub_cache(offline_hub, "Alibaba-DAMO-Academy/OmniCT-3B", COMMIT, release_setup)
    lines = []
    source = resolve_model("Alibaba-DAMO-Academy/OmniCT-3B", echo=lines.append)
    assert source.path.name == f"Alibaba-DAMO-Academy--OmniCT-3B-{COMMIT[:16]}"
    assert (source.hub_id, source.commit) == ("Alibaba-DAMO-Academy/OmniCT-3B", COMMIT)
    assert json.loads((source.path / "config.json").read_text())["model_type"] == "omnict"
    assert any(line.startswith("importing Alibaba-DAMO-Academy/OmniCT-3B@") for line in lines)
    lines.clear()
    assert resolve_model("Alibaba-DAMO-Academy/OmniCT-3B", echo=lines.append) == source and lines == []


def test_a_directory_that_is_neither_kind_is_one_line(tmp_path):
    import torch
    from safetensors.torch import save_file

    from omnict_cli.model.sources import resolve_model

    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    save_file({"classifier.weight": torch.zeros(2, 3)}, tmp_path / "model.safetensors")
    with pytest.raises(ModelSourceError, match="neither an omnict model directory .* nor a checkpoint in the OmniCT"):
        resolve_model(str(tmp_path))


def test_a_directory_of_pickled_weights_is_refused_without_unpickling(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("torch.load was called"))
    (tmp_path / "config.json").write_text('{"model_type": "llava_qwen"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    result = CliRunner().invoke(main, ["ask", str(SLICE), "Is there a nodule?", "--model", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{tmp_path}: the model weights are pickles (pytorch_model.bin), which omnict never loads" in result.output
    assert "save_file" in result.output  # how to convert them


# ---- weights files that are not safetensors ------------------------------------------------------------------


def _header_file(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


GARBAGE_WEIGHTS = {
    "random bytes": bytes(range(256)) * 20,
    "too short": b"\x01\x02",
    "huge header length": struct.pack("<Q", 2**63 - 1) + b"{}",
    "header not JSON": struct.pack("<Q", 4) + b"\xff\xfe{}",
    "huge shape": _header_file({"w": {"dtype": "F32", "shape": [2**40, 2**30], "data_offsets": [0, 16]}}, b"\0" * 16),
    "16 GiB of complex128": _header_file({"w": {"dtype": "C128", "shape": [2**30], "data_offsets": [0, 16]}}),
    "bytes past the end": _header_file({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
    "truncated real file": (DEMO / "model.safetensors").read_bytes()[:100_000],
}


@pytest.mark.parametrize("kind", sorted(GARBAGE_WEIGHTS))
def test_garbage_weights_under_model_or_the_environment_are_one_line(kind, tmp_path, monkeypatch):
    bad = tmp_path / "bad-model"
    bad.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(DEMO / name, bad / name)
    (bad / "model.safetensors").write_bytes(GARBAGE_WEIGHTS[kind])
    runner = CliRunner()
    for args, where in ((["--model", str(bad)], "--model"), ([], "$OMNICT_MODEL")):
        monkeypatch.setenv("OMNICT_MODEL", str(bad))
        result = runner.invoke(main, ["ask", str(SLICE), "Is there a nodule?", "--device", "cpu", *args])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and not isinstance(result.exception, MemoryError)
        (line,) = [line for line in result.output.splitlines() if "model.safetensors" in line]
        assert line.startswith(f"Error: {bad / 'model.safetensors'}: ") and line.endswith(f"(from {where})")


def test_a_garbage_shard_in_a_release_directory_is_named_before_any_import(tmp_path):
    from omnict_cli.model.sources import resolve_model

    release = _release_dir(tmp_path)
    (release.path / "model-00002-of-00002.safetensors").write_bytes(GARBAGE_WEIGHTS["huge shape"])
    with pytest.raises(OmnictError, match="model-00002-of-00002.safetensors: tensor 'w': shape"):
        resolve_model(str(release.path), echo=lambda text: pytest.fail(f"an import started: {text}"))


def test_gpu_check_times_a_model_given_by_hub_id(offline_hub, tmp_path, monkeypatch):
    """``benchmarks/gpu_check.py --model`` on the CPU (``--small``): the same resolution as ``report``."""
    from benchmarks import gpu_check

    results = tmp_path / "gpu_check.json"
    arguments = ["--small", "--model", "org/omnict-demo", "--batches", "1", "--new-tokens", "3"]
    skips = ["--skip-device-map", "--skip-pipeline", "--skip-train"]
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", *arguments, *skips, "--json", str(results)])
    gpu_check.main()
    measured = json.loads(results.read_text())
    assert measured["model"]["source"] == {"hub_id": "org/omnict-demo", "commit": COMMIT}
    assert [row["batch"] for row in measured["batches"]] == [1] and measured["batches"][0]["generate_s"] > 0
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--small", "--model", "org/not-cached", *skips])
    with pytest.raises(SystemExit, match="hub id org/not-cached not in the local cache"):
        gpu_check.main()
