"""JSONL report files are read with jsonlines, line by line on "\\n" only, and every bad line is one clear
message naming the file and the line (issue 12 item 4, issue 10 item 9)."""

from __future__ import annotations

import json

import pytest

from omnict_cli.labels.ctrate_io import MAX_JSONL_LINE_CHARS, CtrateFileError, LabelledReport, read_reports


def _write(path, lines: list[str], end: str = "\n", last_end: bool = True) -> None:
    path.write_text(end.join(lines) + (end if last_end else ""), encoding="utf-8", newline="")


def test_line_and_paragraph_separators_inside_strings_are_text_not_line_ends(tmp_path):
    path = tmp_path / "reports.jsonl"
    findings = "Right pleural effusion.\u2028Small nodule in the left lower lobe.\u0085No consolidation."
    _write(
        path,
        [
            json.dumps({"study_id": "s1", "findings": findings}, ensure_ascii=False),
            json.dumps({"study_id": "s2", "findings": "Normal.\u2029"}, ensure_ascii=False),
        ],
    )
    reports = read_reports(path)
    assert [report.volume_name for report in reports] == ["s1", "s2"]
    assert "Small nodule" in reports[0].findings


def test_windows_line_ends_and_blank_lines_are_read(tmp_path):
    path = tmp_path / "reports.jsonl"
    _write(path, ['{"study_id": "s1", "findings": "A"}', "", '{"study_id": "s2", "findings": "B"}'], end="\r\n")
    assert read_reports(path) == [LabelledReport("s1", "A", ""), LabelledReport("s2", "B", "")]


@pytest.mark.parametrize(
    "lines, last_end, message",
    [
        (
            ['{"study_id": "s1", "findings": "A"}', '{"study_id": "s2", "find'],
            False,
            r"line 2: not valid JSON \(Unterminated string .*\); it is the last line and has no line end",
        ),
        (
            ['{"study_id": "s1", "findings": "A"}', '{"study_id": "s2",, }', '{"study_id": "s3", "findings": "C"}'],
            True,
            r"line 2: not valid JSON \(Expecting property name enclosed in double quotes, column 19\)$",
        ),
        (['{"study_id": "s1", "findings": "A"}', '["s2", "B"]'], True, "line 2: expected one JSON object per line"),
        (['{"study_id": "s1", "findings": "A"}', "null"], True, "line 2: expected one JSON object per line"),
        (['{"study_id": "s1", "findings": ' + "[" * 100_000 + "]" * 100_000 + "}"], True, "line 1: nested too deeply"),
    ],
)
def test_a_bad_line_is_one_message_naming_file_and_line(tmp_path, lines, last_end, message):
    path = tmp_path / "generated.jsonl"
    _write(path, lines, last_end=last_end)
    with pytest.raises(CtrateFileError, match=message) as caught:
        read_reports(path)
    assert caught.value.one_line().startswith(f"{path}: line ")
    assert "\n" not in caught.value.one_line()


def test_a_huge_line_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "huge.jsonl"
    huge = '{"study_id": "s2", "findings": "' + "x" * MAX_JSONL_LINE_CHARS + '"}'
    _write(path, ['{"study_id": "s1", "findings": "A"}', huge])
    with pytest.raises(
        CtrateFileError,
        match=r"huge\.jsonl: line 2: 16,777,2\d\d characters, more than the "
        r"16,777,216 one JSONL record may have",
    ):
        read_reports(path)
