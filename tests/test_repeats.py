"""A model that loops on one sentence: generation stops early, the record keeps each sentence once and says so."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from click.testing import CliRunner

from omnict_cli.cli import main
from omnict_cli.run.repeats import (
    REPEAT_LIMIT,
    TOKEN_RUN_LIMIT,
    RepeatedSentenceStop,
    drop_repeated_sentences,
    sentence_end_ids,
)

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "models" / "omnict-demo"
LOOP = (
    "Findings: Atelectasis is seen. Pleural effusion is present. Pleural effusion is present. "
    "Pleural effusion is present."
)


def test_repeats_within_a_paragraph_are_dropped_and_counted():
    text, dropped = drop_repeated_sentences(LOOP)
    assert text == "Findings: Atelectasis is seen. Pleural effusion is present."
    assert dropped == 2


def test_an_impression_may_restate_a_finding_and_a_clean_text_is_untouched():
    report = "Findings: No pleural effusion. The heart is normal.\n\nImpression: No pleural effusion."
    assert drop_repeated_sentences(report) == (report, 0)
    assert drop_repeated_sentences("Yes.") == ("Yes.", 0)


def test_an_abbreviation_does_not_end_a_sentence():
    """ "approx." ends no sentence, so three nodules "of approx." size are three different sentences."""
    report = "Nodule of approx. 5 mm in the right lobe. Nodule of approx. 3 mm in the left lobe."
    assert drop_repeated_sentences(report) == (report, 0)
    tokenizer = _demo_tokenizer()
    ids = tokenizer(" ".join(f"Nodule of approx. {size} mm." for size in (3, 4, 5)))["input_ids"]
    stop = RepeatedSentenceStop(tokenizer, sentence_end_ids(tokenizer), prompt_length=0)
    assert stop(torch.tensor([ids]))[0].item() is False


def test_a_word_said_three_times_in_a_row_is_kept_once_and_numbers_are_untouched():
    """What the previous demo model wrote to "Is there cardiomegaly?" about the real CT, and "YesYesYes..."."""
    looped = "Yes Pleural Pleural Pleural Pleural effusion is present. Pleural effusion is present."
    assert drop_repeated_sentences(looped) == ("Yes Pleural effusion is present. Pleural effusion is present.", 1)
    assert drop_repeated_sentences("YesYesYesYesYes") == ("Yes", 1)
    for kept in ("Window -1000 to 1000 HU, 1000000 voxels.", "Pleural Pleural effusion.", "Nodules nodules nodules."):
        assert drop_repeated_sentences(kept) == (kept, 0)


def test_generation_stops_when_one_token_comes_over_and_over():
    tokenizer = _demo_tokenizer()
    yes = tokenizer.convert_tokens_to_ids("Yes")
    prompt = [yes] * TOKEN_RUN_LIMIT  # the prompt does not count
    stop = RepeatedSentenceStop(tokenizer, sentence_end_ids(tokenizer), prompt_length=len(prompt))
    assert stop(torch.tensor([prompt + [yes] * (TOKEN_RUN_LIMIT - 1)]))[0].item() is False
    assert stop(torch.tensor([prompt + [yes] * TOKEN_RUN_LIMIT]))[0].item() is True


def _demo_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(DEMO_MODEL)


def test_generation_stops_on_the_third_completion_of_a_sentence_not_before():
    tokenizer = _demo_tokenizer()
    prompt = tokenizer(" Pleural effusion is present." * 3)["input_ids"]  # the prompt does not count
    sentence = tokenizer(" Pleural effusion is present.")["input_ids"]
    stop = RepeatedSentenceStop(tokenizer, sentence_end_ids(tokenizer), prompt_length=len(prompt))
    twice = prompt + sentence * (REPEAT_LIMIT - 1)
    thrice = twice + sentence
    assert stop(torch.tensor([twice]))[0].item() is False
    assert stop(torch.tensor([thrice]))[0].item() is True
    assert stop(torch.tensor([thrice[:-1]]))[0].item() is False  # mid-sentence: not yet
    exclaimed = twice + sentence[:-1] + [tokenizer.convert_tokens_to_ids("!")]  # another sentence, same length
    assert stop(torch.tensor([thrice, exclaimed])).tolist() == [True, False]


def test_sentence_ends_are_the_tokens_that_end_in_a_full_stop_question_or_exclamation_mark():
    tokenizer = _demo_tokenizer()
    ends = sentence_end_ids(tokenizer)
    for mark in (".", "?"):
        assert tokenizer.convert_tokens_to_ids(mark) in ends
    assert tokenizer.convert_tokens_to_ids("Findings") not in ends


def test_the_demo_model_on_the_real_example_ct_stops_its_loop_early():
    """The bundled model loops on the (out-of-distribution) real CT; the raw text now ends at the third repeat."""
    from omnict_cli.run.engine import Engine, GenerationSettings
    from omnict_cli.run.pipeline import REPORT_PROMPT
    from omnict_cli.run.study_inputs import PrepareSetup, organ_selection_for, prepare_study
    from omnict_cli.studies.discover import discover_studies

    engine = Engine.load(DEMO_MODEL, device="cpu")
    setup = PrepareSetup(preprocess=engine.preprocess_config)
    prepared = prepare_study(discover_studies(REPO / "examples" / "ct_chest_small.nii.gz")[0], setup)
    mask = organ_selection_for(prepared, task="report", question=REPORT_PROMPT).mask
    text = engine.generate([REPORT_PROMPT], [prepared.model_input], [mask], GenerationSettings(max_new_tokens=256))[0]
    sentences = [s.strip() for s in text.replace("\n", " ").split(".") if s.strip()]
    assert max(sentences.count(s) for s in sentences) <= REPEAT_LIMIT, text
    assert len(engine.processor.tokenizer(text)["input_ids"]) < 128, text


def test_a_report_record_keeps_each_sentence_once_and_warns(tmp_path, monkeypatch):
    from omnict_cli.run.engine import Engine

    monkeypatch.setattr(
        Engine,
        "generate",
        lambda self, questions, *rest: [LOOP + "\n\nImpression: Pleural effusion." for _ in questions],
    )
    out = tmp_path / "f.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "report",
            str(REPO / "examples" / "ct_chest_small.nii.gz"),
            "--out",
            str(out),
            "--segmenter",
            "builtin",
            "--cache-dir",
            str(tmp_path / "c"),
            "--workers",
            "0",
            "--quiet",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["findings"] == "Atelectasis is seen. Pleural effusion is present."
    assert record["impression"] == "Pleural effusion."
    assert any("2 repeats dropped" in warning for warning in record["warnings"]), record["warnings"]
