"""``omnict review``: the page of a phantom run is valid HTML with the right blocks, labels, outlines and scores.

Records are made the way ``omnict report`` makes them, without the model:
each phantom study goes through the pipeline's own preparation
(``prepare_study``: load, built-in segmentation into a mask cache, organ
selection), and the report text is the phantom's reference report (one study
gets another study's report, so labels disagree somewhere).
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from omnict_cli.cli import main
from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
from omnict_cli.labels.ctrate_io import read_labels, read_reports
from omnict_cli.phantom.generate import PhantomConfig
from omnict_cli.phantom.writer import write_phantom_set
from omnict_cli.review import ReviewOptions, build_review
from omnict_cli.review.labels import record_text
from omnict_cli.review.study_images import ImageSettings, RecordedSegmenter, recorded_segmenter, study_images
from omnict_cli.review.thumbnails import OUTLINE_ALPHA, OUTLINE_RGB, organ_centre, render_volume
from omnict_cli.run.records import RecordWriter
from omnict_cli.run.study_inputs import PrepareSetup, organ_selection_for, prepare_study
from omnict_cli.segmentation.builtin import BuiltinSegmenter
from omnict_cli.segmentation.cache import MaskCache, cache_key
from omnict_cli.studies.discover import discover_studies

PHANTOMS = PhantomConfig(size=(24, 64, 64), spacing=(12.0, 4.5, 4.5))
N_CASES = 3
VOID_TAGS = {"meta", "img", "br", "input", "hr", "link", "rect", "line"}
"""Tags that never get a closing tag (HTML void elements, and the empty SVG shapes the chart writes as ``/>``)."""


# --------------------------------------------------------------------------
# A phantom run, made like `omnict report` makes it
# --------------------------------------------------------------------------


def _ok_record(prepared, selection, findings: str, impression: str) -> dict:
    return {
        "study_id": prepared.study_id,
        "input": prepared.input,
        "kind": prepared.kind,
        "format": prepared.format,
        "shape": list(prepared.shape),
        "spacing": list(prepared.spacing),
        "task": "report",
        "prompt": "Can you describe the CT image?",
        "organs": list(selection.groups),
        "organ_reason": selection.reason,
        "segmenter": prepared.segmenter,
        "mask_from_cache": prepared.mask_from_cache,
        "findings": findings,
        "impression": impression,
        "model": {"name": "test-model", "revision": "sha256:" + "ab" * 32},
        "omnict_version": "0",
        "timing_s": {**prepared.timing_s, "model": 0.5},
        "warnings": list(prepared.warnings),
        "status": "ok",
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Phantom studies, their mask cache and a findings file: 3 volumes, 1 slice, 1 error, 1 skipped record."""
    root = tmp_path_factory.mktemp("review_run")
    studies = root / "studies"
    write_phantom_set(studies, N_CASES, 7, PHANTOMS)
    cache = root / "masks"
    setup = PrepareSetup(segmenter=BuiltinSegmenter(), mask_cache=MaskCache(cache))
    references = {report.volume_name: report for report in read_reports(studies / "references.csv")}
    names = sorted(references)
    by_id = {study.study_id: study for study in discover_studies(studies)}
    records = []
    for index, name in enumerate(names):
        prepared = prepare_study(by_id[f"volumes/{name}"], setup)
        text = references[names[(index + 1) % len(names)] if index == 1 else name]  # study 2 reads study 3's report
        records.append(_ok_record(prepared, organ_selection_for(prepared, "report"), text.findings, text.impression))
    slice_id = next(
        study_id for study_id in by_id if study_id.startswith("slices/") and by_id[study_id].format == "dicom"
    )
    prepared = prepare_study(by_id[slice_id], setup)
    records.append(_ok_record(prepared, organ_selection_for(prepared, "report"), "No finding.", "Normal."))
    records.append(
        {
            "study_id": "broken/scan.nii.gz",
            "input": "broken/scan.nii.gz",
            "format": "nifti",
            "task": "report",
            "error": {"type": "StudyLoadError", "message": "broken/scan.nii.gz: not a complete gzip file"},
            "timing_s": {"model": 0.0},
            "warnings": [],
            "status": "error",
        }
    )
    records.append(
        {
            "study_id": "labels/case_0001.nii.gz",
            "input": "labels/case_0001.nii.gz",
            "format": "nifti",
            "task": "report",
            "note": "labels/case_0001.nii.gz: integer ids, mostly 0: a label map",
            "timing_s": {"model": 0.0},
            "warnings": [],
            "status": "skipped",
        }
    )
    findings = root / "findings.jsonl"
    with RecordWriter(findings) as writer:
        for record in records:
            writer.write(record)
    return {"root": root, "studies": studies, "cache": cache, "findings": findings, "records": records}


def _options(run, **changes) -> ReviewOptions:
    values = dict(
        studies=run["studies"],
        cache_dir=run["cache"],
        references=run["studies"] / "references.csv",
        reference_labels=run["studies"] / "labels.csv",
        workers=0,
    )
    values.update(changes)
    return ReviewOptions(**values)


@pytest.fixture(scope="module")
def page(run):
    out = run["root"] / "review.html"
    result = build_review(run["findings"], out, _options(run))
    return {"result": result, "html": out.read_text(encoding="utf-8"), "path": out}


# --------------------------------------------------------------------------
# Reading pages back
# --------------------------------------------------------------------------


class StrictPage(HTMLParser):
    """Parses a page and fails on any unclosed, stray or mis-nested tag; collects study blocks and images."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.studies: list[dict] = []
        self.doctype = False
        self._current: dict | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_decl(self, decl):
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag not in VOID_TAGS:
            self.stack.append(tag)
        if tag == "article":
            self._current = {"attrs": attributes, "images": [], "rows": [], "text": [], "warnings": 0}
            self.studies.append(self._current)
        elif self._current is not None:
            if tag == "img":
                self._current["images"].append(attributes)
            elif tag == "tr":
                self._row = [attributes.get("class") or ""]
            elif tag in ("td", "th"):
                self._cell = []
            elif tag == "li":
                self._current["warnings"] += 1

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in VOID_TAGS:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()
        if tag == "article":
            self._current = None
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._current is not None:
            self._current["rows"].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._current is not None:
            self._current["text"].append(data)


def parse_page(html: str) -> StrictPage:
    parser = StrictPage()
    parser.feed(html)
    parser.close()
    assert parser.doctype, "no <!DOCTYPE html>"
    assert not parser.problems, parser.problems[:5]
    assert parser.stack == [], f"unclosed tags: {parser.stack}"
    return parser


def decoded(image_attributes: dict) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert image_attributes["src"].startswith(prefix)
    return np.asarray(
        Image.open(io.BytesIO(base64.b64decode(image_attributes["src"][len(prefix) :]))).convert("RGB"), dtype=np.int16
    )


def outline_pixels(rgb: np.ndarray) -> np.ndarray:
    """Pixels in the outline colour: red far above blue (grey pixels have red == blue)."""
    return rgb[..., 0] - rgb[..., 2] > OUTLINE_ALPHA * (OUTLINE_RGB[0] - OUTLINE_RGB[2]) / 2


def label_map_of(run, record: dict) -> tuple[np.ndarray, object]:
    """The builtin label map the run cached for a record, and the loaded volume."""
    from omnict_cli.studies.load import load_path

    volume = load_path(run["studies"] / record["input"])
    labels = MaskCache(run["cache"]).get(volume, recorded_segmenter(record["segmenter"]))
    assert labels is not None
    return labels, volume


# --------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------


def test_page_is_valid_html_with_one_block_per_study_in_record_order(run, page):
    parsed = parse_page(page["html"])
    assert [s["attrs"]["data-status"] for s in parsed.studies] == [r["status"] for r in run["records"]]
    titles = ["".join(s["text"]).split()[0] for s in parsed.studies]
    assert titles == [r["study_id"] for r in run["records"]]
    assert "<script src" not in page["html"] and "http://" not in page["html"].replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )  # nothing fetched: the page works offline


def test_volumes_have_six_views_a_slice_its_windows_and_failures_none(run, page):
    studies = parse_page(page["html"]).studies
    for study, record in zip(studies, run["records"]):
        alts = [image["alt"] for image in study["images"]]
        if record["status"] != "ok":
            assert alts == []
            message = record["error"]["message"] if record["status"] == "error" else record["note"]
            assert message in "".join(study["text"])
        elif record["kind"] == "volume":
            assert alts == [
                f"{plane}, {window} window"
                for plane in ("axial", "coronal", "sagittal")
                for window in ("lung", "soft tissue")
            ]
        else:
            assert alts == ["slice, lung window", "slice, soft tissue window"]


def test_generated_and_reference_labels_are_right_and_disagreements_marked(run, page):
    from omnict_cli.labels.labeler import label_reports

    references = read_labels(run["studies"] / "labels.csv")
    studies = parse_page(page["html"]).studies
    for study, record in zip(studies[:N_CASES], run["records"][:N_CASES]):
        generated = label_reports([record_text(record)], "classifier")[0]
        reference = references[record["study_id"].split("/")[-1]]
        rows = study["rows"][1:]
        assert [row[1] for row in rows] == list(CTRATE_ABNORMALITIES)
        assert [row[2] for row in rows] == ["yes" if value else "no" for value in generated]
        assert [row[3] for row in rows] == ["yes" if reference[name] else "no" for name in CTRATE_ABNORMALITIES]
        disagree = [bool(value) != bool(reference[name]) for value, name in zip(generated, CTRATE_ABNORMALITIES)]
        assert [row[0] == "disagree" for row in rows] == disagree
        assert study["attrs"]["data-dis"] == " ".join(str(i) for i, d in enumerate(disagree) if d)
    assert any(study["attrs"]["data-dis"] for study in studies[:N_CASES]), "study 2 reads another report"


def test_a_run_with_skipped_label_maps_still_gets_its_scores(page):
    # the skipped label map has no report text; omnict score leaves it out, so the page has the chart
    assert "no scores: " not in page["html"] and "<svg" in page["html"]


def test_a_file_omnict_score_refuses_gives_a_page_with_the_reason(run, tmp_path):
    unrelated = tmp_path / "references.csv"
    unrelated.write_text("VolumeName,Findings_EN,Impressions_EN\nother_0001.nii.gz,No effusion.,Normal.\n")
    out = tmp_path / "review.html"
    build_review(run["findings"], out, _options(run, references=unrelated, reference_labels=None))
    html = out.read_text(encoding="utf-8")
    assert "no scores: " in html and "other_0001" in html
    assert parse_page(html).studies[0]["rows"], "the labels are still shown"


def test_summary_shows_the_numbers_omnict_score_prints(run, tmp_path):
    findings = tmp_path / "findings.jsonl"
    findings.write_text(
        "".join(json.dumps(record) + "\n" for record in run["records"] if record["status"] != "skipped")
    )
    out = tmp_path / "review.html"
    build_review(findings, out, _options(run))
    html = out.read_text(encoding="utf-8")
    scores_json = tmp_path / "scores.json"
    result = CliRunner().invoke(
        main,
        [
            "score",
            str(findings),
            "--references",
            str(run["studies"] / "references.csv"),
            "--reference-labels",
            str(run["studies"] / "labels.csv"),
            "--json",
            str(scores_json),
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(scores_json.read_text())
    for row in scores["per_class"]:
        cells = [("n/a" if row[k] is None else f"{100 * row[k]:.1f}") for k in ("precision", "recall", "f1")]
        expected = (
            f"<tr><td>{row['label']}</td><td>{cells[0]}</td><td>{cells[1]}</td><td>{cells[2]}</td>"
            f"<td>{row['support']}</td><td>{row['tp']}</td><td>{row['fp']}</td><td>{row['fn']}</td></tr>"
        )
        assert expected in html
    assert f"macro F1 {100 * scores['macro']['f1']:.1f}" in html
    assert f"rouge_l {100 * scores['text']['rouge_l']:.1f}" in html
    assert "<svg" in html and html.count('class="chart"') == 1
    assert "ok</span> 4" in html and "error</span> 1" in html and "skipped</span> 0" in html
    assert "test-model (sha256:abababababab)" in html


# --------------------------------------------------------------------------
# Pixels: the outline is where the mask is, views are oriented
# --------------------------------------------------------------------------


def _source_index(n_out: int, n_in: int) -> np.ndarray:
    """Which input row/column is nearest to the centre of each output one."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(int), n_in - 1)


def test_outline_pixels_lie_on_the_organ_mask_of_the_label_map(run, page):
    from omnict_cli.segmentation.organs import organ_label_ids

    studies = parse_page(page["html"]).studies
    record = run["records"][0]
    labels, volume = label_map_of(run, record)
    vocabulary = BuiltinSegmenter().vocabulary
    mask = np.isin(labels, organ_label_ids(record["organs"], vocabulary))
    z, y, x = organ_centre(mask, mask.shape)
    cuts = {"axial": mask[z], "coronal": mask[:, y, :][::-1], "sagittal": mask[:, :, x][::-1]}
    images = {
        image["alt"].split(",")[0]: decoded(image)
        for image in studies[0]["images"]
        if image["alt"].endswith("lung window")
    }
    for plane, cut in cuts.items():
        rgb = images[plane]
        on_outline = outline_pixels(rgb)
        assert on_outline.sum() > 10, plane
        in_mask = cut[np.ix_(_source_index(rgb.shape[0], cut.shape[0]), _source_index(rgb.shape[1], cut.shape[1]))]
        assert not (on_outline & ~in_mask).any(), f"{plane}: outline outside the organ mask"
        inner = (
            in_mask
            & np.roll(in_mask, 1, 0)
            & np.roll(in_mask, -1, 0)
            & np.roll(in_mask, 1, 1)
            & np.roll(in_mask, -1, 1)
        )
        assert not (on_outline & inner).any(), f"{plane}: outline inside the organ, not on its edge"
        grey = ~on_outline
        assert (rgb[grey][:, 0] == rgb[grey][:, 2]).all(), "every other pixel is grey"


def test_views_are_oriented_superior_up_right_on_the_left_and_square_in_mm():
    voxels = np.full((20, 100, 100), -1000, dtype=np.int16)
    mask = np.zeros(voxels.shape, dtype=bool)
    mask[14:18, 10:30, 10:30] = True  # superior, anterior, patient right
    views = render_volume(voxels, (5.0, 1.0, 1.0), mask, max_pixels=100, centre=(16, 20, 20))
    by_plane = {
        view.plane: np.asarray(Image.open(io.BytesIO(view.png)).convert("RGB"), dtype=np.int16)
        for view in views
        if view.window == "lung"
    }
    for plane, rgb in by_plane.items():
        assert rgb.shape[:2] == (100, 100), f"{plane}: 100 mm x 100 mm must be square"
        rows, columns = np.nonzero(outline_pixels(rgb))
        assert rows.max() < 50 and columns.max() < 50, f"{plane}: marker must be top left"
    axial_rows = np.nonzero(outline_pixels(by_plane["axial"]))[0]
    assert 5 <= axial_rows.min() and axial_rows.max() <= 35  # anterior 10-30 mm: top of the axial view


# --------------------------------------------------------------------------
# Bad inputs: warnings, never a failed page
# --------------------------------------------------------------------------


def test_a_moved_scan_a_corrupt_mask_and_an_unknown_segmenter_are_warnings(run, tmp_path):
    from omnict_cli.studies.load import load_path

    good = run["records"][0]
    cache = tmp_path / "masks"
    shutil.copytree(run["cache"], cache)
    volume = load_path(run["studies"] / good["input"])
    segmenter = recorded_segmenter(good["segmenter"])
    entry = MaskCache(cache).entry_path(cache_key(volume, segmenter), segmenter)
    entry.write_bytes(b"not a gzip file")
    records = [
        dict(good, study_id="moved/away", input="moved/away.nii.gz"),
        good,
        dict(good, study_id="other/segmenter", segmenter="mysegmenter 9"),
    ]
    findings = tmp_path / "findings.jsonl"
    findings.write_text("".join(json.dumps(record) + "\n" for record in records))
    out = tmp_path / "review.html"
    build_review(findings, out, _options(run, cache_dir=cache, references=None, reference_labels=None))
    studies = parse_page(out.read_text(encoding="utf-8")).studies
    texts = ["".join(study["text"]) for study in studies]
    assert "moved/away.nii.gz: scan not found" in texts[0] and studies[0]["images"] == []
    assert "was corrupt" in texts[1] and "no organ mask" in texts[1]
    assert len(studies[1]["images"]) == 6 and not any(outline_pixels(decoded(i)).any() for i in studies[1]["images"])
    assert "'mysegmenter 9' is not one omnict knows" in texts[2]


def test_an_unreadable_findings_file_is_one_line_and_no_page(tmp_path):
    findings = tmp_path / "findings.jsonl"
    findings.write_text('{"study_id": "a"}\nnot json\n')
    result = CliRunner().invoke(main, ["review", str(findings), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 1 and "line 2" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


# --------------------------------------------------------------------------
# Large runs: pages, workers
# --------------------------------------------------------------------------


def test_page_size_splits_into_numbered_pages_and_an_index(run, tmp_path):
    out = tmp_path / "review.html"
    result = CliRunner().invoke(
        main,
        [
            "review",
            str(run["findings"]),
            "--out",
            str(out),
            "--studies",
            str(run["studies"]),
            "--cache-dir",
            str(run["cache"]),
            "--page-size",
            "4",
            "--workers",
            "0",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    pages = [tmp_path / "review-001.html", tmp_path / "review-002.html"]
    index = out.read_text(encoding="utf-8")
    parse_page(index)
    assert all(f'href="{page.name}"' in index for page in pages) and not (tmp_path / "review-003.html").exists()
    blocks = [parse_page(page.read_text(encoding="utf-8")).studies for page in pages]
    assert [len(b) for b in blocks] == [4, 2]
    assert [s["attrs"]["data-status"] for b in blocks for s in b] == [r["status"] for r in run["records"]]
    assert 'href="review.html"' in pages[0].read_text(encoding="utf-8")


def test_worker_processes_write_the_same_page(run, page, tmp_path):
    out = tmp_path / "review.html"
    build_review(run["findings"], out, _options(run, workers=2))
    assert out.read_text(encoding="utf-8") == page["html"]


def test_the_command_default_thumbnail_size_is_the_library_one():
    from omnict_cli.review.thumbnails import DEFAULT_MAX_PIXELS

    option = next(p for p in main.commands["review"].params if p.name == "thumbnail_size")
    assert option.default == DEFAULT_MAX_PIXELS == ReviewOptions().max_pixels


def test_views_of_one_study_stay_small(run):
    images = study_images(run["records"][0], ImageSettings((run["studies"],), run["cache"]))
    assert not images.warnings
    assert sum(len(view.png) for view in images.views) < 75_000  # 1,000 studies well under 100 MB


# --------------------------------------------------------------------------
# A real browser
# --------------------------------------------------------------------------


def _browser() -> str | None:
    return next(
        (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
    )


def test_headless_chromium_renders_the_page_with_the_organ_outline(page, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium)")
    shot = tmp_path / "page.png"
    command = [
        browser,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1200,1500",
        f"--screenshot={shot}",
        page["path"].as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot.exists(), completed.stderr[-2000:]
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert rgb.std() > 20, "the screenshot is blank"
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    outline_colour = (red - blue > 80) & (np.abs(green - blue) <= 1) & (green < 140)
    assert outline_colour.sum() > 50, "the organ outline colour is not on screen"
    dom = subprocess.run(
        [*command[:-2], "--dump-dom", page["path"].as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert "6 of 6 studies shown" in dom, "the filter script did not run"


# --------------------------------------------------------------------------
# Real CT with a TotalSegmentator label map (../shared/testdata)
# --------------------------------------------------------------------------


def test_real_ct_with_a_cached_totalsegmentator_mask_outlines_the_lung_lobes(testdata, tmp_path):
    from omnict_cli.segmentation.totalseg import TotalSegmentatorSegmenter
    from omnict_cli.studies.load import load_path

    volume = load_path(testdata / "ct_chest_small.nii.gz")
    labels = np.asarray(load_path(testdata / "ct_chest_small_totalseg.nii.gz").voxels, dtype=np.uint8)
    segmenter = RecordedSegmenter(TotalSegmentatorSegmenter(device="cpu"), "2.4.0")
    MaskCache(tmp_path / "masks").put(volume, segmenter, labels)
    record = {
        "study_id": "ct_chest_small",
        "input": "ct_chest_small.nii.gz",
        "organs": ["lungs"],
        "segmenter": "totalsegmentator 2.4.0",
        "status": "ok",
    }
    images = study_images(record, ImageSettings((testdata,), tmp_path / "masks"))
    assert not images.warnings
    lobes = np.isin(labels, [10, 11, 12, 13, 14])
    z, y, x = images.centre
    assert lobes[z].any() and lobes[:, y].any() and lobes[:, :, x].any()
    axial = np.asarray(Image.open(io.BytesIO(images.views[0].png)).convert("RGB"), dtype=np.int16)
    on_outline = outline_pixels(axial)
    cut = lobes[z][np.ix_(_source_index(axial.shape[0], lobes.shape[1]), _source_index(axial.shape[1], lobes.shape[2]))]
    assert on_outline.sum() > 20 and not (on_outline & ~cut).any()
    dicom = study_images(
        {
            "study_id": "dicom_series",
            "input": "dicom_series",
            "organs": ["lungs"],
            "segmenter": "builtin 2",
            "status": "ok",
        },
        ImageSettings((testdata,), tmp_path / "masks"),
    )
    assert len(dicom.views) == 6 and any("no organ mask from builtin 2" in w for w in dicom.warnings)


# --------------------------------------------------------------------------
# End to end: a real `omnict report` run (tiny random model) then `omnict review`
# --------------------------------------------------------------------------


def test_a_real_report_run_gets_outlined_views_for_every_volume(run, tmp_path):
    from tests.tiny_model import make_tiny_model_dir

    model = make_tiny_model_dir(tmp_path / "models")
    findings, cache = tmp_path / "findings.jsonl", tmp_path / "masks"
    studies = run["studies"] / "volumes"
    report = CliRunner().invoke(
        main,
        [
            "report",
            str(studies),
            "--out",
            str(findings),
            "--model",
            str(model),
            "--segmenter",
            "builtin",
            "--cache-dir",
            str(cache),
            "--max-new-tokens",
            "4",
            "--workers",
            "0",
            "--quiet",
        ],
        catch_exceptions=False,
    )
    assert report.exit_code == 0, report.output
    out = tmp_path / "review.html"
    result = CliRunner().invoke(
        main,
        [
            "review",
            str(findings),
            "--out",
            str(out),
            "--studies",
            str(studies),
            "--cache-dir",
            str(cache),
            "--workers",
            "0",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    parsed = parse_page(out.read_text(encoding="utf-8"))
    assert len(parsed.studies) == N_CASES
    for study in parsed.studies:
        assert study["warnings"] == 0, "".join(study["text"])
        assert len(study["images"]) == 6
        assert all(outline_pixels(decoded(image)).any() for image in study["images"])


FILTER_PROBE = """<script>
function probe(name, setUp){
  [].forEach.call(document.querySelectorAll('input[name=status]'),function(e){e.checked=true});
  document.getElementById('f-label').value=''; document.getElementById('f-side').value='either';
  document.getElementById('f-disagree').checked=false; setUp(); applyFilters();
  var shown=[].filter.call(document.querySelectorAll('article.study'),function(s){return !s.hidden});
  document.body.setAttribute('data-probe-'+name, shown.map(function(s){return s.id}).join(' '));
}
probe('not-ok', function(){document.querySelector('input[value=ok]').checked=false});
probe('disagree', function(){document.getElementById('f-disagree').checked=true});
probe('nodule-generated', function(){document.getElementById('f-label').value='9';
  document.getElementById('f-side').value='generated'});
probe('nodule-reference-disagree', function(){document.getElementById('f-label').value='9';
  document.getElementById('f-side').value='reference'; document.getElementById('f-disagree').checked=true});
</script></body>"""


def test_the_filters_show_the_right_studies_in_headless_chromium(page, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium)")
    probed = tmp_path / "probed.html"
    probed.write_text(page["html"].replace("</body>", FILTER_PROBE), encoding="utf-8")
    dom = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom", probed.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    studies = parse_page(page["html"]).studies

    def ids(keep):
        return " ".join(s["attrs"]["id"] for s in studies if keep(s["attrs"]))

    nodule = CTRATE_ABNORMALITIES.index("Lung nodule")
    expected = {
        "not-ok": ids(lambda a: a["data-status"] != "ok"),
        "disagree": ids(lambda a: a["data-dis"] != ""),
        "nodule-generated": ids(lambda a: str(nodule) in a["data-gen"].split()),
        "nodule-reference-disagree": ids(
            lambda a: str(nodule) in a["data-ref"].split() and str(nodule) in a["data-dis"].split()
        ),
    }
    assert expected["not-ok"] and expected["disagree"] and expected["nodule-generated"]
    for name, shown in expected.items():
        assert f'data-probe-{name}="{shown}"' in dom, name


def test_a_torn_last_line_is_left_out_with_a_warning_and_the_file_untouched(run, tmp_path):
    findings = tmp_path / "findings.jsonl"
    whole = run["findings"].read_bytes()
    findings.write_bytes(whole + b'{"study_id": "half')
    out = tmp_path / "review.html"
    result = build_review(findings, out, _options(run, references=None, reference_labels=None))
    assert result.studies == len(run["records"])
    assert any("the last 18 bytes are not a complete line" in warning for warning in result.warnings)
    assert "the last 18 bytes are not a complete line" in out.read_text(encoding="utf-8")
    assert findings.read_bytes() == whole + b'{"study_id": "half'
