"""`omnict ask` prints an answer, not a report: yes/no for a closed question from the model's next-token
probabilities, a phrase for an open one; the bundled demo model says what it is; organ routing says when
the segmenter lacks the organ. Real subprocesses with the bundled demo model and example scan."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from omnict_cli.run.answers import CLOSED, OPEN, REQUEST, first_phrase, question_kind
from omnict_cli.run.demo_notice import DEMO_NOTICE

REPO = Path(__file__).resolve().parents[1]
SCAN = REPO / "examples" / "ct_chest_small.nii.gz"
PHANTOM = REPO / "examples" / "phantoms" / "volumes" / "case_0002.nii.gz"


def omnict(*args, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m omnict_cli ARGS`` in a subprocess with the bundled demo model (no $OMNICT_MODEL)."""
    environment = {key: value for key, value in os.environ.items() if key != "OMNICT_MODEL"}
    environment.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", OMNICT_CACHE_DIR=str(cwd / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "omnict_cli", *args], cwd=cwd, env=environment, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Is the heart enlarged?", CLOSED),
        ("Can emphysema be seen in this scan?", CLOSED),
        ("does this slice show a mosaic attenuation pattern?", CLOSED),
        ("Were there any nodules?", CLOSED),
        ("Can you describe the CT image?", REQUEST),
        ("Is the effusion on the left or the right?", OPEN),
        ("Which abnormality is present?\nA. Lung nodule\nB. Consolidation", OPEN),
        ("Where is the arterial wall calcification located in this scan?", OPEN),
        ("How severe is the emphysema?", OPEN),
        ("", OPEN),
    ],
)
def test_the_documented_rule_tells_closed_open_and_request_questions_apart(question, kind):
    assert question_kind(question) == kind


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("Moderate\nImpression: Emphysema.", "Moderate"),
        ("57.8 mm. The rest", "57.8 mm."),
        ("C. Pulmonary fibrotic sequela. Findings: more", "C. Pulmonary fibrotic sequela."),
        ("Lung nodule in the right lower lobe, 26.6 mm. Emphysema.", "Lung nodule in the right lower lobe, 26.6 mm."),
        ("Right", "Right"),
        (
            "Findings: Coronary artery wall calcification is seen. Emphysema.",
            "Coronary artery wall calcification is seen.",
        ),
    ],
)
def test_an_open_answer_is_cut_at_its_first_phrase_end_not_inside_numbers_or_option_letters(text, phrase):
    assert first_phrase(text) == phrase


def test_a_closed_question_prints_yes_or_no_and_routing_says_the_builtin_segmenter_has_no_liver(tmp_path):
    result = omnict("ask", str(SCAN), "Is there ascites?", "--segmenter", "builtin", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout in ("Yes\n", "No\n")  # the answer and nothing else on stdout
    lines = result.stderr.splitlines()
    assert lines.count(DEMO_NOTICE) == 1
    assert any(line.startswith("P(Yes) ") and ", P(No) " in line for line in lines)
    routing = next(line for line in lines if line.startswith("organ tokens: "))
    assert "the built-in segmenter has no liver, spleen, kidneys, pancreas, stomach, bowel classes" in routing
    assert "install TotalSegmentator for abdominal organs; using the whole volume" in routing
    assert "lungs" not in routing and "scan shows none" not in routing

    record = json.loads(omnict("ask", str(SCAN), "Is there ascites?", "--json", cwd=tmp_path).stdout)
    assert record["answer"] in ("Yes", "No") and record["answer_kind"] == "closed"
    probabilities = record["answer_probabilities"]
    assert set(probabilities) == {"Yes", "No"} and 0 < probabilities["Yes"] + probabilities["No"] <= 1
    assert record["answer"] == max(probabilities, key=probabilities.get)
    assert record["organs"] == [] and "the built-in segmenter has no liver" in record["organ_reason"]
    assert record["warnings"][0] == DEMO_NOTICE
    assert any(w.startswith("the built-in segmenter has no liver") for w in record["warnings"])


def test_an_open_question_gets_one_phrase_not_a_report(tmp_path):
    result = omnict(
        "ask", str(PHANTOM), "How severe is the arterial wall calcification in this scan?", "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["answer_kind"] == "open" and "answer_probabilities" not in record
    assert record["answer"] == first_phrase(record["answer"]) and "\n" not in record["answer"]
    assert "Impression" not in record["answer"]


def test_a_report_with_the_demo_model_says_so_once_and_in_every_record(tmp_path):
    from omnict_cli.segmentation.totalseg import totalsegmentator_status

    studies = tmp_path / "studies"
    studies.mkdir()
    for name in ("case_0002.nii.gz", "case_0003.nii.gz"):
        (studies / name).symlink_to(PHANTOM.parent / name)
    out = tmp_path / "findings.jsonl"
    result = omnict("report", str(studies), "--out", str(out), cwd=tmp_path)  # --segmenter auto
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines().count(DEMO_NOTICE) == 1
    fallback = [line for line in result.stderr.splitlines() if line.startswith("using the built-in segmenter")]
    assert len(fallback) == (0 if totalsegmentator_status(False)[0] else 1)  # one line, once per run
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 and all(record["warnings"][0] == DEMO_NOTICE for record in records)


def test_help_and_a_report_rerun_with_nothing_to_do_import_no_torch(tmp_path):
    """The start of a command is not spent importing torch (or loading the model) when nothing needs it."""
    out = tmp_path / "findings.jsonl"
    first = omnict("report", str(PHANTOM), "--out", str(out), "--quiet", cwd=tmp_path)
    assert first.returncode == 0 and first.stderr == ""  # --quiet: no segmenter notice, demo line or model line
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['omnict', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('omnict_cli', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    code = stop.code\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', ','.join(heavy) or '-', 'EXIT', code, file=sys.stderr)\n"
    )
    environment = dict(os.environ, PYTHONPATH=str(REPO), OMNICT_CACHE_DIR=str(tmp_path / "cache"))
    environment.pop("OMNICT_MODEL", None)
    for args in (["--help"], ["report", str(PHANTOM), "--out", str(out)]):
        result = subprocess.run(
            [sys.executable, "-c", probe, *args], cwd=tmp_path, env=environment, capture_output=True, text=True
        )
        assert "HEAVY - EXIT 0" in result.stderr, (args, result.stderr[-2000:])
        assert "parameters on" not in result.stderr  # the model was not loaded
