"""``omnict review --per-study``: the text scores of ``omnict score --per-study`` on each study's block."""

from __future__ import annotations

import json
import subprocess
import sys

from omnict_cli.csv_safe import csv_text
from omnict_cli.metrics.per_study import LABEL_COLUMNS, LEADING_COLUMNS
from omnict_cli.review.blocks import study_block
from omnict_cli.review.per_study_scores import read_per_study_scores


def _table(path, rows):
    header = [*LEADING_COLUMNS, "bleu4", "rouge_l", *LABEL_COLUMNS]
    lines = [header]
    for study, prediction, bleu4, rouge in rows:
        lines.append([study, prediction, "ok", 0, "", "", bleu4, rouge, *([0] * len(LABEL_COLUMNS))])
    path.write_text(csv_text(lines))


def test_scores_are_read_by_the_record_study_id_and_shown_escaped(tmp_path):
    table = tmp_path / "studies.csv"
    _table(tmp_path / "studies.csv", [("case_1.nii.gz", "volumes/case_1", 0.25, 0.5), ("=x.nii.gz", "=x", 0.1, 0.2)])
    scores = read_per_study_scores(table)
    assert scores.warnings == []
    assert scores.scores_of("volumes/case_1") == {"bleu4": 0.25, "rouge_l": 0.5}
    assert scores.scores_of("=x") == {"bleu4": 0.1, "rouge_l": 0.2}  # the neutralising ' is read back off
    record = {"study_id": "volumes/case_1", "status": "error", "error": {"message": "boom"}}
    block = study_block(0, record, None, None, None, False, {"<b>": 0.5})
    assert "text scores (omnict score --per-study): &lt;b&gt; 0.500" in block


def test_the_command_shows_the_scores_and_warns_about_a_foreign_table(tmp_path):
    findings = tmp_path / "findings.jsonl"
    record = {"study_id": "case_1", "status": "error", "error": {"type": "X", "message": "no image"}}
    findings.write_text(json.dumps(record) + "\n")
    table = tmp_path / "studies.csv"
    _table(table, [("case_1.nii.gz", "case_1", 0.125, 0.75)])
    page = tmp_path / "page.html"
    command = [sys.executable, "-m", "omnict_cli", "review", str(findings), "--out", str(page), "--quiet"]
    result = subprocess.run([*command, "--per-study", str(table)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "bleu4 0.125 &middot; rouge_l 0.750" in page.read_text()
    table.write_text("my,own,table\n1,2,3\n")
    result = subprocess.run([*command, "--per-study", str(table)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "not an 'omnict score --per-study' table" in result.stderr
    assert "text scores" not in page.read_text()
