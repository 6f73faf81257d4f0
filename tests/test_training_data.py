"""Training data: chat rows, CT-RATE/phantom report rows, the tensor cache, the data order; plus the tiny
model and phantom set the other training tests share."""

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from omnict_cli.model import OmniCTConfig, OmniCTForConditionalGeneration, OmniCTProcessor
from omnict_cli.model.processing_omnict import special_tokens
from omnict_cli.training.dataset import StepPlan
from omnict_cli.training.rows import (
    REPORT_QUESTION,
    phantom_report_rows,
    question_text,
    read_rows,
    report_rows,
    write_rows,
)

QWEN_STYLE_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen2.5's chat layout: a default system turn, ``<|im_start|>role\\ncontent<|im_end|>\\n`` per turn."""

TINY_SIDE = 42  # 3 x 3 SigLIP patches of 14 px


def bpe_tokenizer(texts, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` with the ``tokenizers`` library, Qwen-style chat template."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = QWEN_STYLE_TEMPLATE
    return tokenizer


def tiny_omnict_config(vocab_size: int, **overrides) -> OmniCTConfig:
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=14,
        image_size=TINY_SIDE,
    )
    text = dict(
        model_type="qwen2",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=vocab_size,
    )
    sizes = dict(
        volume_size=(6, TINY_SIDE, TINY_SIDE),
        slice_size=(TINY_SIDE, TINY_SIDE),
        tpe_depth_dim=4,
        tpe_row_dim=4,
        tpe_col_dim=4,
    )
    return OmniCTConfig(vision_config=vision, text_config=text, **{**sizes, **overrides})


def save_tiny_model(out: Path, texts, seed: int = 0) -> Path:
    """A tiny random OmniCT (SigLIP 32 x 2 layers at 42 px, Qwen2 32 x 2 layers) with a BPE tokenizer, saved."""
    tokenizer = bpe_tokenizer(texts)
    processor = OmniCTProcessor(tokenizer, tiny_omnict_config(len(tokenizer) + len(special_tokens())))
    config = tiny_omnict_config(len(tokenizer), **processor.token_ids)
    torch.manual_seed(seed)
    OmniCTForConditionalGeneration(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_phantoms(out: Path, count: int, seed: int) -> Path:
    from omnict_cli.phantom.generate import PhantomConfig
    from omnict_cli.phantom.writer import write_phantom_set

    write_phantom_set(out, count, seed, PhantomConfig(size=(12, 48, 48), spacing=(10.0, 7.0, 7.0)), "nifti")
    return out


def row_texts(rows_file: Path) -> list[str]:
    texts = []
    for line in rows_file.read_text().splitlines():
        texts += [message["content"] for message in json.loads(line)["messages"]]
    return texts


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one torch thread avoids oversubscription (2x faster here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def phantom_set(tmp_path_factory) -> Path:
    """Four small phantoms (12 x 48 x 48 voxels) with their qa.jsonl, references.csv and PNG slices."""
    return write_phantoms(tmp_path_factory.mktemp("phantoms"), 4, seed=3)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, phantom_set) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"), row_texts(phantom_set / "qa.jsonl"))


# ---- rows ---------------------------------------------------------------------------------


def test_question_text_drops_every_placeholder_but_keeps_the_question():
    content = "<|image3d_start|><|image3d|><|image3d_end|>\n<|organ_start|><|mask3d|><|organ_end|>\nIs there X?"
    assert question_text(content) == "Is there X?"
    assert question_text("<|image2d_start|><|image2d|><|image2d_end|>\nDescribe.") == "Describe."


def test_demo_data_rows_are_read_with_images_relative_to_the_file(phantom_set):
    read = read_rows(phantom_set / "qa.jsonl")
    assert read.problems == []
    lines = (phantom_set / "qa.jsonl").read_text().splitlines()
    assert len(read.rows) == len(lines)
    report = read.rows[0]
    assert report.question == REPORT_QUESTION and report.answer.startswith("Findings: ")
    assert report.image == phantom_set / "volumes" / "case_0001.nii.gz" and report.line == 1
    assert {row.organ for row in read.rows} > {None, "lungs"}
    assert any(row.image.suffix == ".png" for row in read.rows)


def test_bad_rows_are_left_out_with_a_line_each_and_the_rest_kept(tmp_path, phantom_set):
    good = json.loads((phantom_set / "qa.jsonl").read_text().splitlines()[1])
    good["image"] = str(phantom_set / good["image"])
    bad_roles = dict(good, messages=good["messages"][:1])
    missing = dict(good, image="nowhere.nii.gz")
    empty_answer = dict(good, messages=[good["messages"][0], {"role": "assistant", "content": " "}])
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps(bad_roles),
        json.dumps(missing),
        "",
        json.dumps(empty_answer),
        json.dumps([1, 2]),
    ]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    read = read_rows(tmp_path / "rows.jsonl")
    assert [row.line for row in read.rows] == [1]
    assert len(read.problems) == 5
    assert read.problems[0].startswith(f"{tmp_path / 'rows.jsonl'}: line 2: not valid JSON")
    assert "line 3: expected one user turn then one assistant turn" in read.problems[1]
    assert "line 4: image" in read.problems[2] and "not found" in read.problems[2]
    assert all(problem.endswith("row left out") for problem in read.problems)


def test_phantom_set_gives_one_report_row_per_case_that_round_trips(tmp_path, phantom_set):
    read = phantom_report_rows(phantom_set)
    assert read.problems == []
    assert [row.image.name for row in read.rows] == [f"case_000{i}.nii.gz" for i in range(1, 5)]
    qa_reports = [row for row in read_rows(phantom_set / "qa.jsonl").rows if row.question == REPORT_QUESTION]
    assert [row.answer for row in read.rows] == [row.answer for row in qa_reports]  # same text demo-data writes
    write_rows(tmp_path / "reports.jsonl", read.rows)
    again = read_rows(tmp_path / "reports.jsonl")
    assert [(r.image, r.question, r.answer) for r in again.rows] == [(r.image, r.question, r.answer) for r in read.rows]
    assert not Path(json.loads((tmp_path / "reports.jsonl").read_text().splitlines()[0])["image"]).is_absolute()


def test_train_rows_command_writes_report_rows_and_names_what_it_left_out(tmp_path, phantom_set):
    from click.testing import CliRunner

    from omnict_cli.cli import main

    result = CliRunner().invoke(
        main, ["train-rows", "--phantoms", str(phantom_set), "--out", str(tmp_path / "r.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 4 report rows" in result.output
    assert len(read_rows(tmp_path / "r.jsonl").rows) == 4
    (tmp_path / "reports.csv").write_text("VolumeName,Findings_EN,Impressions_EN\nmissing.nii.gz,Clear.,Normal.\n")
    missing = CliRunner().invoke(
        main,
        [
            "train-rows",
            "--reports",
            str(tmp_path / "reports.csv"),
            "--volumes",
            str(phantom_set / "volumes"),
            "--out",
            str(tmp_path / "none.jsonl"),
        ],
    )
    assert missing.exit_code == 1 and "missing.nii.gz: no such volume" in missing.output
    assert "nothing written" in missing.output and not (tmp_path / "none.jsonl").exists()
    neither = CliRunner().invoke(main, ["train-rows", "--out", str(tmp_path / "x.jsonl")])
    assert neither.exit_code == 2 and "give --reports and --volumes, or --phantoms" in neither.output


def test_ctrate_layout_finds_nested_volumes_and_reports_missing_ones(tmp_path):
    nested = tmp_path / "dataset" / "train" / "train_1" / "train_1_a"
    nested.mkdir(parents=True)
    (nested / "train_1_a_1.nii.gz").write_bytes(b"x")
    (tmp_path / "reports.csv").write_text(
        "VolumeName,ClinicalInformation_EN,Findings_EN,Impressions_EN\n"
        "train_1_a_1.nii.gz,Cough.,No nodule.,Normal chest.\n"
        "train_2_a_1.nii.gz,,Small effusion.,Effusion.\n"
    )
    read = report_rows(tmp_path / "reports.csv", tmp_path / "dataset")
    assert [row.image for row in read.rows] == [nested / "train_1_a_1.nii.gz"]
    assert read.rows[0].answer == "Findings: No nodule.\nImpression: Normal chest."
    assert len(read.problems) == 1 and "train_2_a_1.nii.gz: no such volume" in read.problems[0]


# ---- data order ---------------------------------------------------------------------------


def test_two_processes_see_the_rows_one_process_sees_with_twice_the_accumulation():
    one = StepPlan(10, 1, 1, 2, epochs=2, seed=7)
    two = StepPlan(10, 1, 2, 1, epochs=2, seed=7)
    for epoch in range(2):
        for step in range(one.steps_per_epoch):
            single = [batch for batch in one.process_batches(epoch, step, step + 1, rank=0)]
            split = [list(two.process_batches(epoch, step, step + 1, rank=r)) for r in (0, 1)]
            assert single == [split[0][0], split[1][0]]
    assert one.total_steps == two.total_steps == 10


def test_a_step_deals_its_rows_out_longest_first_so_passes_pad_little():
    lengths = (5, 900, 40, 880, 60, 20, 910, 30)
    plain = StepPlan(8, 2, 1, 4, epochs=1, seed=3)
    grouped = StepPlan(8, 2, 1, 4, epochs=1, seed=3, lengths=lengths)
    step = grouped.step_rows(0, 0)
    assert sorted(step.ravel()) == sorted(plain.step_rows(0, 0).ravel())  # the same rows, other passes
    passes = [[lengths[i] for i in micro.ravel()] for micro in step]
    assert passes == [[910, 900], [880, 60], [40, 30], [20, 5]]
    two = StepPlan(8, 2, 2, 2, epochs=1, seed=3, lengths=lengths)
    assert two.step_rows(0, 0).reshape(4, 2).tolist() == step.reshape(4, 2).tolist()


def test_each_epoch_covers_every_row_in_a_new_seeded_order():
    plan = StepPlan(7, 2, 1, 2, epochs=3, seed=1)
    assert plan.steps_per_epoch == 2  # 7 rows in global batches of 4: the last one filled from the start
    orders = []
    for epoch in range(3):
        seen = [i for batch in plan.process_batches(epoch, 0, plan.steps_per_epoch, 0) for i in batch]
        assert set(seen) == set(range(7)) and len(seen) == 8
        orders.append(seen[:7])
    assert orders[0] != orders[1] != orders[2]
    assert StepPlan(7, 2, 1, 2, epochs=3, seed=1).epoch_order(1).tolist() == plan.epoch_order(1).tolist()
    assert StepPlan(7, 2, 1, 2, epochs=3, seed=2).epoch_order(1).tolist() != plan.epoch_order(1).tolist()
    assert StepPlan(7, 2, 1, 2, epochs=3, seed=1, max_steps=5).total_steps == 5


def test_training_rows_keep_a_line_separator_inside_a_json_string(tmp_path):
    """U+2028 / U+0085 inside a string are text, not line ends (JSONL splits at "\\n" only)."""
    from omnict_cli.training.rows import read_rows

    rows = tmp_path / "rows.jsonl"
    (tmp_path / "scan.nii.gz").write_bytes(b"")  # rows only need the image to exist
    answer = "Findings:\u2028no effusion.\u0085End."
    row = {
        "messages": [{"role": "user", "content": "Describe the CT image."}, {"role": "assistant", "content": answer}],
        "image": "scan.nii.gz",
    }
    rows.write_text(json.dumps(row, ensure_ascii=False) + "\n" + "[" * 100000 + "\n", encoding="utf-8")
    result = read_rows(rows)
    assert [r.answer for r in result.rows] == [answer]
    assert len(result.problems) == 1 and "line 2" in result.problems[0]


def test_training_and_ask_build_the_same_question_from_a_messy_row():
    """Training prompts must equal inference prompts: `ask --batch` tidies spaces, so training does too."""
    from omnict_cli.run.questions import question_text as ask_question

    messy = "<|image3d_start|><|image3d|><|image3d_end|>\n  Which   finding is present?\n\nA.  Emphysema\nB. None "
    assert question_text(messy) == ask_question(messy) == "Which finding is present?\nA. Emphysema\nB. None"
