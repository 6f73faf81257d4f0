"""A findings record as the review page may use it: every field of the type the schema says, or left out with a note.

``omnict review`` reads files that may have been edited by hand or made to
break it: ``shape`` as strings, ``timing_s`` as strings or a list,
``warnings`` as a dict, ``error`` as a plain string. Rather than guard every
use, :func:`shown_record` checks each field once against the schema of
``shared/DESIGN.md``: text fields become text, lists and maps keep only
entries of the right type, and a field that cannot be used is dropped with a
warning on the study's block. The page code then trusts the types (and still
escapes every value, see :mod:`omnict_cli.review.html_values`).
"""

from __future__ import annotations

import math
import numbers

TEXT_FIELDS = (
    "study_id",
    "record_id",
    "question_id",
    "input",
    "root",
    "kind",
    "format",
    "task",
    "prompt",
    "question",
    "organ_reason",
    "segmenter",
    "findings",
    "impression",
    "answer",
    "note",
    "status",
)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def shown_record(record: dict) -> dict:
    """A copy of ``record`` whose fields have the schema's types; problems are added to its ``warnings``."""
    shown = dict(record)
    notes: list[str] = []
    for key in TEXT_FIELDS:
        if key in shown and shown[key] is not None and not isinstance(shown[key], str):
            if isinstance(shown[key], (dict, list)):
                notes.append(f"record field '{key}' is not text; not shown")
                shown.pop(key)
            else:
                shown[key] = str(shown[key])
    _list_of(shown, "shape", _is_whole, "a list of whole numbers", notes)
    _list_of(shown, "spacing", _is_number, "a list of numbers", notes)
    _list_of(shown, "organs", lambda value: isinstance(value, str), "a list of organ names", notes)
    _map_of(shown, "timing_s", _is_number, "a map of stage to seconds", notes)
    _map_of(shown, "labels", lambda value: value in (0, 1), "a map of class to 0/1", notes)
    warnings = shown.get("warnings")
    if isinstance(warnings, str):
        shown["warnings"] = [warnings]
    elif warnings is not None and not isinstance(warnings, list):
        notes.append("record field 'warnings' is not a list; not shown")
        shown["warnings"] = []
    shown["warnings"] = [str(w) for w in shown.get("warnings") or [] if isinstance(w, (str, int, float))]
    error = shown.get("error")
    if error is not None and not (isinstance(error, dict) and isinstance(error.get("message", ""), str)):
        shown["error"] = {"message": str(error) if not isinstance(error, dict) else str(error.get("message"))}
    if shown.get("model") is not None and not isinstance(shown["model"], dict):
        notes.append("record field 'model' is not a map; not shown")
        shown.pop("model")
    shown["warnings"].extend(notes)
    return shown


def _list_of(record: dict, key: str, ok, what: str, notes: list[str]) -> None:
    value = record.get(key)
    if value is None:
        return
    if not isinstance(value, list) or not all(ok(item) for item in value):
        notes.append(f"record field '{key}' is not {what}; not shown")
        record.pop(key)


def _map_of(record: dict, key: str, ok, what: str, notes: list[str]) -> None:
    value = record.get(key)
    if value is None:
        return
    if not isinstance(value, dict) or not all(isinstance(k, str) and ok(v) for k, v in value.items()):
        notes.append(f"record field '{key}' is not {what}; not shown")
        record.pop(key)
