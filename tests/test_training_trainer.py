"""The trainer on a tiny model and phantoms: the loss falls on held-out rows, stage 1 freezes what it should,
studies are read once, the output loads, the CLI reports what it did."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from omnict_cli.cli import main
from omnict_cli.model import OmniCTForConditionalGeneration, OmniCTProcessor
from omnict_cli.run.study_inputs import PrepareSetup
from omnict_cli.training import dataset as dataset_module
from omnict_cli.training.config import TrainConfig, TrainConfigError
from omnict_cli.training.dataset import BatchCollator, StudyDataset, prepare_examples
from omnict_cli.training.rows import read_rows
from omnict_cli.training.tensor_cache import TensorCache
from omnict_cli.training.trainer import TrainError, answer_loss_sum, load_model, train
from tests.test_training_data import one_torch_thread, phantom_set, tiny_model  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MAX_LENGTH = 256


def short_rows(phantom_dir: Path, cases: set[str], out: Path) -> Path:
    """The rows of ``cases`` whose answers are short (no reports), images as absolute paths."""
    lines = []
    for line in (phantom_dir / "qa.jsonl").read_text().splitlines():
        row = json.loads(line)
        if len(row["messages"][1]["content"]) <= 40 and any(case in row["image"] for case in cases):
            row["image"] = str(phantom_dir / row["image"])
            lines.append(json.dumps(row))
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")
    return {"tensor_cache_dir": root / "tensors", "mask_cache_dir": root / "masks"}


@pytest.fixture(scope="module")
def split_rows(tmp_path_factory, phantom_set):  # noqa: F811
    root = tmp_path_factory.mktemp("rows")
    return (
        short_rows(phantom_set, {"case_0001", "case_0002", "case_0003"}, root / "train.jsonl"),
        short_rows(phantom_set, {"case_0004"}, root / "held_out.jsonl"),
    )


def config(tmp_path, model, data, caches, **settings) -> TrainConfig:
    values = dict(stage="sft", data=data, model=model, out=tmp_path / "out", max_length=MAX_LENGTH, **caches)
    values.update(settings)
    return TrainConfig(**values)


def held_out_loss(model_dir: Path, rows_file: Path, caches) -> float:
    """Mean answer-token cross-entropy of ``model_dir`` on every row of ``rows_file``."""
    model, processor, _ = load_model(model_dir)
    model.eval()
    setup = PrepareSetup(preprocess=model.config.preprocess_config())
    cache = TensorCache(caches["tensor_cache_dir"] / "eval")
    examples = prepare_examples(read_rows(rows_file).rows, setup, cache).examples
    dataset, collate = StudyDataset(examples, cache), BatchCollator(processor, MAX_LENGTH)
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(dataset), 8):
            batch = collate([dataset[i] for i in range(start, min(start + 8, len(dataset)))])
            total += float(answer_loss_sum(model, batch, "cpu"))
            tokens += int((batch["labels"][:, 1:] != -100).sum())
    return total / tokens


def test_sft_lowers_the_loss_on_held_out_rows_not_only_on_training_rows(tmp_path, tiny_model, split_rows, caches):
    train_rows, held_out = split_rows
    before = held_out_loss(tiny_model, held_out, caches)
    result = train(
        config(
            tmp_path,
            tiny_model,
            train_rows,
            caches,
            learning_rate=2e-2,
            per_device_batch_size=4,
            max_steps=16,
            epochs=3,
            segmenter="none",
        ),
        progress=False,
    )
    after = held_out_loss(result.out_dir, held_out, caches)
    assert result.steps == 16 and result.final_loss is not None
    assert after < before * 0.8, (before, after)  # about 6.0 -> 4.2 nats per answer token
    losses = [json.loads(line)["loss"] for line in result.metrics_path.read_text().splitlines()]
    assert len(losses) == 16 and sum(losses[-4:]) < sum(losses[:4]) * 0.8


def test_stage_1_changes_the_projector_and_leaves_llm_and_vision_bitwise_unchanged(
    tmp_path, tiny_model, split_rows, caches
):
    result = train(
        config(
            tmp_path,
            tiny_model,
            split_rows[0],
            caches,
            stage="pretrain",
            per_device_batch_size=2,
            max_steps=3,
            segmenter="none",
        ),
        progress=False,
    )
    start, trained = load_file(tiny_model / "model.safetensors"), load_file(result.out_dir / "model.safetensors")
    assert start.keys() == trained.keys()
    projector = [name for name in start if ".multi_modal_projector." in name]
    frozen = [name for name in start if name not in projector]
    assert any(name.startswith("language_model.") for name in frozen)
    assert any(".vision_tower." in name for name in frozen)
    assert all(torch.equal(start[name], trained[name]) for name in frozen)
    changed = [name for name in projector if not torch.equal(start[name], trained[name])]
    assert any("volume_expert" in name for name in changed) and any("shared" in name for name in changed)


def test_each_study_is_loaded_once_however_many_epochs_and_never_again_from_the_cache(
    tmp_path, tiny_model, split_rows, caches, monkeypatch
):
    from omnict_cli.studies import prepare as prepare_module

    loads = []
    real_load = prepare_module.load_study
    monkeypatch.setattr(
        prepare_module, "load_study", lambda study, *a, **k: loads.append(study) or real_load(study, *a, **k)
    )
    fresh = {"tensor_cache_dir": tmp_path / "tensors", "mask_cache_dir": caches["mask_cache_dir"]}
    rows = tmp_path / "two_per_study.jsonl"
    lines, per_image = [], {}
    for line in split_rows[0].read_text().splitlines():
        image = json.loads(line)["image"]
        if per_image.setdefault(image, 0) < 2:
            per_image[image] += 1
            lines.append(line)
    rows.write_text("\n".join(lines) + "\n")
    first = train(
        config(tmp_path, tiny_model, rows, fresh, stage="pretrain", per_device_batch_size=4, epochs=2), progress=False
    )
    assert first.steps == 6 and first.epochs == 2
    assert len(loads) == len(per_image) == 6  # 3 volumes + 3 PNG slices, once each for both epochs
    monkeypatch.setattr(dataset_module, "prepare_study", lambda *a: pytest.fail("prepared a cached study"))
    again = train(
        config(
            tmp_path,
            tiny_model,
            rows,
            fresh,
            stage="pretrain",
            per_device_batch_size=4,
            max_steps=2,
            out=tmp_path / "again",
        ),
        progress=False,
    )
    assert again.steps == 2 and len(loads) == 6


def test_cli_trains_writes_a_loadable_model_and_refuses_to_mix_runs(tmp_path, tiny_model, split_rows, caches):
    out = tmp_path / "cli-out"
    args = [
        "train",
        "--stage",
        "sft",
        "--data",
        str(split_rows[0]),
        "--model",
        str(tiny_model),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--grad-accum",
        "2",
        "--max-steps",
        "3",
        "--save-every",
        "2",
        "--max-length",
        str(MAX_LENGTH),
        "--tensor-cache-dir",
        str(caches["tensor_cache_dir"]),
        "--cache-dir",
        str(caches["mask_cache_dir"]),
        "--quiet",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "trained 3 steps" in result.output and "final loss" in result.output
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2"]
    assert not [p for p in out.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert {"epoch", "loss", "lr", "tokens_per_s", "elapsed_s", "rows"} <= set(records[0])
    assert len(records[0]["rows"]) == 8 and records[0]["lr"] > records[-1]["lr"] > 0  # warmup 1 step, cosine
    model = OmniCTForConditionalGeneration.from_pretrained(out).eval()
    processor = OmniCTProcessor.from_pretrained(out)
    cache = TensorCache(tmp_path / "t")
    setup = PrepareSetup(preprocess=model.config.preprocess_config())
    item = StudyDataset(prepare_examples(read_rows(split_rows[0]).rows[:1], setup, cache).examples, cache)[0]
    batch = processor([item["question"]], [item["image"]])
    with torch.no_grad():
        generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == batch["input_ids"].shape[1] + 4

    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "already holds checkpoints of a run" in again.output
    assert "--resume" in again.output
    other_seed = CliRunner().invoke(main, args + ["--resume", "--seed", "5", "--grad-accum", "1"])
    assert other_seed.exit_code != 0
    assert "cannot resume step-2: settings differ (gradient_accumulation: 2 -> 1; seed: 0 -> 5)" in " ".join(
        other_seed.output.split()
    )
    finished = CliRunner().invoke(main, args + ["--resume"])
    assert finished.exit_code == 0 and "already holds the finished run (3 steps); nothing to do" in finished.output


def test_settings_no_run_could_honour_are_refused_with_their_name(tmp_path):
    with pytest.raises(TrainConfigError, match="stage must be one of pretrain, sft"):
        TrainConfig(stage="finetune", data=tmp_path, model=tmp_path, out=tmp_path)
    with pytest.raises(TrainConfigError, match="gradient_accumulation must be a whole number >= 1"):
        TrainConfig(stage="sft", data=tmp_path, model=tmp_path, out=tmp_path, gradient_accumulation=0)
    defaults = TrainConfig(stage="pretrain", data=tmp_path, model=tmp_path, out=tmp_path)
    assert (defaults.resolved_epochs, defaults.resolved_learning_rate) == (2, 2e-4)
    sft = TrainConfig(stage="sft", data=tmp_path, model=tmp_path, out=tmp_path)
    assert (sft.resolved_epochs, sft.resolved_learning_rate, sft.warmup_ratio, sft.max_length) == (1, 5e-5, 0.03, 2048)


def test_a_folder_that_is_no_model_is_a_one_line_error(tmp_path, split_rows):
    with pytest.raises(TrainError, match="is not a model directory \\(no config.json\\)"):
        train(TrainConfig(stage="sft", data=split_rows[0], model=tmp_path, out=tmp_path / "out"), progress=False)


def test_an_output_path_that_is_a_file_is_a_one_line_error(tmp_path, tiny_model, split_rows):
    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(TrainError, match="taken: cannot create the output folder"):
        train(TrainConfig(stage="sft", data=split_rows[0], model=tiny_model, out=tmp_path / "taken"), progress=False)


def test_gradient_checkpointing_trains_the_same_steps(tmp_path, tiny_model, split_rows, caches):
    runs = [
        train(
            config(
                tmp_path,
                tiny_model,
                split_rows[0],
                caches,
                per_device_batch_size=2,
                max_steps=2,
                gradient_checkpointing=checkpointing,
                out=tmp_path / str(checkpointing),
            ),
            progress=False,
        )
        for checkpointing in (False, True)
    ]
    losses = [[json.loads(line)["loss"] for line in run.metrics_path.read_text().splitlines()] for run in runs]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5) and len(losses[0]) == 2
