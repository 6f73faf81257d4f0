"""The bundled demo model (models/omnict-demo): it loads, answers within seconds on CPU, and reads the image.

"Reads the image" is tested as a user would notice it: on phantoms that do and
do not show a finding, its reports name the finding on the first and not on the
second; asked a closed question about such phantoms, its yes/no answers should
follow the image too (not yet: a strict xfail). The phantoms come from a seed
no training set used.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from omnict_cli.phantom.generate import PhantomConfig
from omnict_cli.phantom.writer import write_phantom_set
from omnict_cli.studies.preprocess import ModelInput
from omnict_cli.training.demo import PHANTOM_SIZE, PHANTOM_SPACING, TRAIN_SEEDS

DEMO_MODEL = Path(__file__).resolve().parents[1] / "models" / "omnict-demo"
REPO_EXAMPLE_VOLUME = Path(__file__).resolve().parents[1] / "examples" / "phantoms" / "volumes" / "case_0001.nii.gz"
TEST_SEED = 4242
QUESTION = "Is there a pleural effusion in this scan?"
CASES = 4


@pytest.fixture(scope="module")
def demo():
    """``(model, processor)`` of the bundled model, loaded once, and how long loading took."""
    from omnict_cli.model import OmniCTForConditionalGeneration, OmniCTProcessor

    started = time.perf_counter()
    model = OmniCTForConditionalGeneration.from_pretrained(DEMO_MODEL, dtype=torch.float32).eval()
    processor = OmniCTProcessor.from_pretrained(DEMO_MODEL)
    return model, processor, time.perf_counter() - started


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """Half the cases with a pleural effusion drawn, half with none (seed unused in training)."""
    assert TEST_SEED not in TRAIN_SEEDS
    folder = tmp_path_factory.mktemp("demo-phantoms")
    sets = {}
    for present, rate in ((True, 1.0), (False, 0.0)):
        config = PhantomConfig(size=PHANTOM_SIZE, spacing=PHANTOM_SPACING, prevalence={"Pleural effusion": rate})
        write_phantom_set(folder / str(present), CASES // 2, TEST_SEED, config)
        sets[present] = sorted((folder / str(present) / "volumes").glob("*.nii.gz"))
    return sets


@pytest.fixture(scope="module")
def prepared(demo, phantoms):
    """Present -> ``[(model input, organ mask), ...]``, each phantom prepared once."""
    model = demo[0]
    return {present: [prepared_inputs(path, model, QUESTION) for path in paths] for present, paths in phantoms.items()}


def prepared_inputs(path: Path, model, question: str):
    """Model input and the routed organ mask of one study, as ``omnict ask`` prepares them."""
    from omnict_cli.run.study_inputs import PrepareSetup, organ_selection_for, prepare_study
    from omnict_cli.segmentation.builtin import BuiltinSegmenter
    from omnict_cli.studies.discover import discover_studies

    setup = PrepareSetup(preprocess=model.config.preprocess_config(), segmenter=BuiltinSegmenter())
    prepared = prepare_study(discover_studies(path)[0], setup)
    return prepared.model_input, organ_selection_for(prepared, task="ask", question=question).mask


def answer(model, processor, image, mask, question: str = QUESTION, max_new_tokens: int = 4) -> str:
    batch = processor([question], [image], organ_masks=[mask])
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.decode(out[:, batch["input_ids"].shape[1] :])[0].strip()


def test_bundled_model_is_small_safetensors_with_a_card():
    files = {path.name for path in DEMO_MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    assert sum(path.stat().st_size for path in DEMO_MODEL.iterdir()) <= 30 * 2**20


def test_loads_and_answers_within_seconds_on_cpu(demo, prepared):
    model, processor, load_s = demo
    image, mask = prepared[True][0]
    started = time.perf_counter()
    text = answer(model, processor, image, mask)
    assert load_s < 10 and time.perf_counter() - started < 10
    assert text in ("Yes", "No")


def yes_probability(model, processor, image, mask, question: str = QUESTION) -> float:
    """P("Yes") / (P("Yes") + P("No")) for the first answer token."""
    batch = processor([question], [image], organ_masks=[mask])
    yes, no = (
        processor.tokenizer.convert_tokens_to_ids(processor.tokenizer.tokenize(word))[0] for word in ("Yes", "No")
    )
    with torch.no_grad():
        logits = model(**batch, logits_to_keep=1).logits[0, -1]
    return float(torch.softmax(logits[[yes, no]], dim=0)[0])


def test_the_image_reaches_the_answer(demo, prepared):
    """The pixels change the answer's probability: the vision path is wired to the output.

    A wiring check only: it fails if the pixels never reach the decoder. The bundled
    model reads the image in its reports, not yet in its yes/no answers; the tests
    below ask for reading.
    """
    model, processor, _ = demo
    image, mask = prepared[True][0]
    blank = ModelInput(units=np.full_like(image.units, -1.0), kind="volume", grid_spacing=image.grid_spacing)
    assert abs(yes_probability(model, processor, image, mask) - yes_probability(model, processor, blank, None)) > 1e-6


def test_reports_name_a_finding_only_on_the_phantoms_that_show_it(demo, tmp_path):
    """The report of a phantom with fibrotic sequelae names them; the report of one without does not.

    The same seed draws both sets, so the cases differ in that finding only (and in what the
    prevalence draw then does to the others): the text depends on the pixels, not the prior.
    """
    from omnict_cli.labels import CTRATE_ABNORMALITIES
    from omnict_cli.labels.labeler import label_reports
    from omnict_cli.training.demo import REPORT_QUESTION

    model, processor, _ = demo
    named = {}
    for present, rate in ((True, 1.0), (False, 0.0)):
        folder = tmp_path / str(present)
        config = PhantomConfig(
            size=PHANTOM_SIZE, spacing=PHANTOM_SPACING, prevalence={"Pulmonary fibrotic sequela": rate}
        )
        write_phantom_set(folder, 3, TEST_SEED, config)
        texts = []
        for path in sorted((folder / "volumes").glob("*.nii.gz")):
            image, mask = prepared_inputs(path, model, REPORT_QUESTION)
            texts.append(answer(model, processor, image, mask, REPORT_QUESTION, max_new_tokens=96))
        column = CTRATE_ABNORMALITIES.index("Pulmonary fibrotic sequela")
        named[present] = np.asarray(label_reports(texts))[:, column].tolist()
    assert sum(named[True]) >= 2 and sum(named[False]) <= 1, named


def test_reports_on_the_example_slices_are_whole_sentences(demo):
    """A 2D slice gets a report made of the sentences the model was taught, not broken repeated words."""
    from omnict_cli.labels.ctrate_io import split_sections
    from omnict_cli.training.demo import REPORT_QUESTION
    from omnict_cli.training.structured_reports import FINDING_SENTENCES, NORMAL_FINDINGS

    model, processor, _ = demo
    slices = sorted((Path(__file__).resolve().parents[1] / "examples" / "phantoms" / "slices").glob("*.png"))
    assert slices
    taught = set(FINDING_SENTENCES.values()) | {NORMAL_FINDINGS}
    for path in slices:
        image, mask = prepared_inputs(path, model, REPORT_QUESTION)
        findings, _ = split_sections(answer(model, processor, image, mask, REPORT_QUESTION, max_new_tokens=96))
        sentences = [sentence.strip() + "." for sentence in findings.split(".") if sentence.strip()]
        assert sentences and set(sentences) <= taught, (path.name, findings)


@pytest.mark.xfail(
    strict=True,
    reason="models/omnict-demo reads the image in its reports but not yet in its yes/no "
    "answers: its model card shows 50% for the right image as for swapped and blank ones. Remove this "
    "mark when a retrained model does (strict: an unexpected pass fails, so the mark cannot outlive "
    "the fix).",
)
def test_yes_no_answers_follow_the_image(demo, prepared):
    """Asked about an effusion, it says "Yes" on the phantoms that have one and "No" on those that do not."""
    model, processor, _ = demo
    answers = {
        present: [answer(model, processor, image, mask) for image, mask in inputs]
        for present, inputs in prepared.items()
    }
    correct = answers[True].count("Yes") + answers[False].count("No")
    assert correct >= CASES - 1, answers  # chance is CASES / 2


# ---- the recipe's encoder pretraining data ---------------------------------------------------


def test_unit_labels_mark_the_units_a_finding_box_reaches():
    from omnict_cli.labels import CTRATE_ABNORMALITIES
    from omnict_cli.phantom.findings import Finding
    from omnict_cli.studies.preprocess import PreprocessConfig
    from omnict_cli.training.demo import unit_labels

    config = PreprocessConfig(volume_size=(30, 96, 96), slice_size=(96, 96))
    effusion = Finding("Pleural effusion", "lungs", details={"bbox_zyx": (0, 10, 10, 9, 50, 50)})
    nodule = Finding("Lung nodule", "lungs", details={"bbox_zyx": (31, 40, 40, 31, 44, 44)})
    no_box = Finding("Emphysema", "lungs")
    labels = unit_labels([effusion, nodule, no_box], phantom_depth=32, config=config)
    assert labels.shape == (10, 18)
    # source slices 0-9 of 32 are resampled slices 0-9.37 of 30: units 0-3 (slices 0-11)
    assert labels[:, CTRATE_ABNORMALITIES.index("Pleural effusion")].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert labels[:, CTRATE_ABNORMALITIES.index("Lung nodule")].tolist() == [0] * 9 + [1]
    assert labels[:, CTRATE_ABNORMALITIES.index("Emphysema")].tolist() == [1] * 10  # present, place unknown
    assert labels.sum() == 4 + 1 + 10


def test_encoder_pretraining_sees_a_phantom_as_the_loader_does(tmp_path):
    """The in-memory cases the encoder pretrains on equal the written volumes after loading and preprocessing."""
    from dataclasses import replace

    from omnict_cli.studies.discover import discover_studies
    from omnict_cli.studies.prepare import load_and_preprocess
    from omnict_cli.studies.preprocess import PreprocessConfig
    from omnict_cli.training.demo import VISION_SEED, DemoRecipe, pretraining_units

    units, labels = pretraining_units(replace(DemoRecipe(), vision_pretrain_cases=2))
    assert units.shape == (2, 10, 3, 96, 96) and labels.shape == (2, 10, 18)
    write_phantom_set(tmp_path, 2, VISION_SEED, PhantomConfig(size=PHANTOM_SIZE, spacing=PHANTOM_SPACING))
    config = PreprocessConfig(volume_size=(30, 96, 96), slice_size=(96, 96))
    for index, study in enumerate(sorted(discover_studies(tmp_path / "volumes"), key=lambda s: s.study_id)):
        _, loaded = load_and_preprocess(study, config)
        np.testing.assert_allclose(units[index].float().numpy(), loaded.units, atol=1e-3)  # float16 storage
    held_out, held_out_labels = pretraining_units(DemoRecipe(), cases=1, first=2)  # the probe's held-out cases
    assert torch.equal(held_out[0], units[1]) and torch.equal(held_out_labels[0], labels[1])


def test_balanced_closed_rows_leave_no_answer_prior_per_question():
    from collections import Counter

    from omnict_cli.training.demo import balanced_closed_rows

    def row(question, answer):
        return {
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "image": "volumes/case.nii.gz",
        }

    rows = (
        [row("Is there X?", "No")] * 5
        + [row("Is there X?", "Yes")] * 2
        + [row("Is there Y?", "Yes")] * 3
        + [row("Which?\nA. X\nB. Y", "A. X")]
    )
    kept = balanced_closed_rows(rows, seed=0)
    answers = Counter((r["messages"][0]["content"], r["messages"][1]["content"]) for r in kept)
    assert answers == {("Is there X?", "No"): 2, ("Is there X?", "Yes"): 2, ("Which?\nA. X\nB. Y", "A. X"): 1}
    assert balanced_closed_rows(rows, seed=0) == kept  # seeded: the recipe is reproducible


def test_recipe_rows_by_report_style(tmp_path):
    """Structured recipes train on one structured report per volume (repeated); the first recipe's rows are as before."""
    from dataclasses import replace

    from omnict_cli.training.demo import FIRST_DEMO, phantom_rows, recipe_rows
    from omnict_cli.training.structured_reports import present_classes, structured_report

    folder = tmp_path / "phantoms"
    write_phantom_set(folder, 3, TEST_SEED, PhantomConfig(size=(24, 96, 96), spacing=(8.0, 3.0, 3.0)))
    first = replace(FIRST_DEMO, report_repeats=2)
    reports, closed, stage2 = recipe_rows([folder], first)
    assert stage2 == phantom_rows(folder, 2)  # file order kept: the card's command still makes the same model
    assert len(reports) == 6 and all(r["messages"][1]["content"].startswith("Findings:") for r in reports)

    structured = replace(first, report_style="structured", report_repeats=3, slice_report_repeats=2)
    reports, closed_again, stage2 = recipe_rows([folder], structured)
    assert closed_again == closed and stage2 == reports + closed
    truth = {}
    for labels, images in (
        (folder / "labels.csv", folder / "volumes"),
        (folder / "slices" / "labels.csv", folder / "slices"),
    ):
        with open(labels, newline="") as handle:
            truth.update(
                {
                    str((images / r["VolumeName"]).resolve()): structured_report(present_classes(r))
                    for r in csv.DictReader(handle)
                }
            )
    slices = [r for r in reports if r["image"].endswith(".png")]
    assert len(reports) - len(slices) == 9 and len(slices) == 2 * len(list((folder / "slices").glob("*.png"))) > 0
    assert all(r["messages"][1]["content"] == truth[r["image"]] for r in reports)
    assert all(r["messages"][0]["content"].endswith("Can you describe the CT image?") for r in reports)
    assert all(r["messages"][0]["content"].startswith("<|image2d_start|>") for r in slices)
    with pytest.raises(ValueError, match="report_style"):
        recipe_rows([folder], replace(first, report_style="free"))


def test_projector_calibration_gives_image_tokens_the_word_embeddings_scale(tmp_path):
    """After calibration the image tokens are centred and spread like word embeddings, not 10x-100x larger."""
    from dataclasses import replace

    from omnict_cli.model import OmniCTForConditionalGeneration
    from omnict_cli.training.demo import (
        DemoRecipe,
        build_demo_components,
        build_untrained_model,
        calibrate_projector,
        pretraining_units,
        train_tokenizer,
    )

    recipe = replace(DemoRecipe(), calibration_cases=3)
    tokenizer = train_tokenizer(
        ["No pleural effusion.", "Is there a lung nodule?", "Yes", "No"] * 20, tmp_path / "tokenizer", 300
    )
    vision, llm = build_demo_components(tokenizer, tmp_path / "components", recipe.sizes)
    build_untrained_model(vision, llm, tmp_path / "untrained", recipe.sizes)
    model_dir = tmp_path / "untrained"
    result = calibrate_projector(model_dir, recipe)
    model = OmniCTForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    units, _ = pretraining_units(recipe, cases=3)
    with torch.no_grad():
        grids = model.spatial_encoder(units.flatten(0, 1).float(), [10] * 3, ["volume"] * 3)
    tokens = torch.cat([grid.reshape(-1, grid.shape[-1]) for grid in grids])
    words = float(model.get_input_embeddings().weight.detach().norm(dim=-1).mean())
    assert result["scale"] != pytest.approx(1.0)
    assert float((tokens - tokens.mean(0)).norm(dim=-1).mean()) == pytest.approx(words, rel=1e-3)
    assert float(tokens.mean(0).norm()) < 1e-3 * words


def test_train_demo_offers_every_named_recipe():
    from click.testing import CliRunner

    from omnict_cli.cli import main
    from omnict_cli.training.demo import RECIPES, DemoRecipe

    command = main.commands["train-demo"]
    choice = next(param for param in command.params if param.name == "recipe_name")
    assert sorted(choice.type.choices) == sorted(RECIPES)
    assert RECIPES["shipped"] == DemoRecipe()  # the model card's command makes the bundled model
    assert CliRunner().invoke(main, ["train-demo", "--help"]).exit_code == 0


def _tiny_recipe():
    """The shipped recipe cut to seconds: 2 x 3 phantoms, 2 encoder epochs on 4 cases, one epoch per stage."""
    from dataclasses import replace

    from omnict_cli.training.demo import DemoRecipe, StageSettings

    return replace(
        DemoRecipe(),
        cases_per_seed=3,
        report_repeats=1,
        slice_report_repeats=1,
        vision_pretrain_cases=4,
        calibration_cases=2,
        vision_pretrain=StageSettings(epochs=2, learning_rate=1e-3, batch_size=2),
        stage1=StageSettings(epochs=1, learning_rate=1e-3),
        stage2=StageSettings(epochs=1, learning_rate=3e-4),
    )


def test_train_demo_makes_a_model_that_reports_and_a_rerun_reuses_every_finished_step(tmp_path):
    import hashlib
    from dataclasses import replace

    from omnict_cli.prompt_format import REPORT_QUESTION
    from omnict_cli.run.engine import Engine
    from omnict_cli.training.demo import MODEL_FILES, DemoWorkDirError, train_demo

    recipe, out, work = _tiny_recipe(), tmp_path / "demo", tmp_path / "work"
    said = []
    summary = train_demo(out, recipe, work_dir=work, progress=False, notify=said.append)
    names = {p.name for p in out.iterdir()}  # model files only: no checkpoints, logs or caches
    assert names <= set(MODEL_FILES) and {"config.json", "model.safetensors", "tokenizer.json"} <= names
    epochs = [line.split(":")[0] for line in said if line.startswith("encoder pretraining epoch")]
    assert epochs == ["encoder pretraining epoch 1", "encoder pretraining epoch 2"]  # no quiet ten minutes
    assert summary.stages["pretrain"]["steps"] > 0 and summary.stages["sft"]["steps"] > 0
    assert (work / "stage-sft" / "metrics.jsonl").is_file()  # the training curve the model card quotes
    weights = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    engine = Engine.load(out, device="cpu")
    image, mask = prepared_inputs(REPO_EXAMPLE_VOLUME, engine.model, REPORT_QUESTION)
    assert isinstance(engine.generate([REPORT_QUESTION], [image], [mask])[0], str)

    again = []
    train_demo(out, recipe, work_dir=work, progress=False, notify=again.append)
    assert any("reusing the untrained model" in line for line in again), again
    assert not any(line.startswith("encoder pretraining epoch") for line in again)
    assert sum("already holds the finished run" in line for line in again) == 2, again
    assert hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest() == weights

    with pytest.raises(DemoWorkDirError, match="another recipe.*report_repeats"):
        train_demo(tmp_path / "other", replace(recipe, report_repeats=2), work_dir=work, progress=False)
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "stage-sft").mkdir()
    with pytest.raises(DemoWorkDirError, match="does not say which recipe"):
        train_demo(tmp_path / "other", recipe, work_dir=tmp_path / "stray", progress=False)
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "recipe.json").write_text("{broken")
    with pytest.raises(DemoWorkDirError, match="cannot read its recipe.json"):
        train_demo(tmp_path / "other", recipe, work_dir=tmp_path / "torn", progress=False)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DemoWorkDirError, match="cannot create the work folder"):
        train_demo(tmp_path / "other", recipe, work_dir=tmp_path / "file" / "work", progress=False)
