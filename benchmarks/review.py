"""How large is an ``omnict review`` page per study, and how fast is it made with 1 and 2 worker processes?

1. Writes 20 phantom CTs (64x256x256 at 5 x 1.4 x 1.4 mm, the demo-data
   default), segments them into a fresh mask cache with the built-in
   segmenter through the pipeline's own preparation, and writes a findings
   file of N records (default 200) cycling over them (distinct study ids;
   each record re-reads its scan and looks its mask up, as a real run's
   page does). Report texts are the phantoms' reference reports.
2. Builds the page (``build_review``, default thumbnail size) with 1 and
   with 2 worker processes; prints seconds per study for each and their
   ratio, bytes per study (page bytes / N, and PNG bytes / N), and the
   projected size of a 1,000-study page (target: under 100 MB).
3. When ``../shared/testdata`` is there, the PNG bytes of the six views of
   the real CT files (real noise compresses worse than phantoms).

Run: ``python benchmarks/review.py [N]`` (about 2 minutes for N=200 on 2 cores).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from omnict_cli.labels.ctrate_io import read_reports
from omnict_cli.phantom.generate import PhantomConfig
from omnict_cli.phantom.writer import write_phantom_set
from omnict_cli.review import ReviewOptions, build_review
from omnict_cli.review.study_images import ImageSettings, study_images
from omnict_cli.run.records import RecordWriter
from omnict_cli.run.study_inputs import PrepareSetup, organ_selection_for, prepare_study
from omnict_cli.segmentation.builtin import BuiltinSegmenter
from omnict_cli.segmentation.cache import MaskCache
from omnict_cli.studies.discover import discover_studies

DISTINCT_SCANS = 20
CONFIG = PhantomConfig(size=(64, 256, 256), spacing=(5.0, 1.4, 1.4))
TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"


def write_run(work: Path, n_records: int) -> Path:
    """Phantoms, their cached masks and a findings file of ``n_records`` ok records; returns the findings path."""
    write_phantom_set(work / "studies", DISTINCT_SCANS, 0, CONFIG)
    reports = {report.volume_name.split(".")[0]: report for report in read_reports(work / "studies/references.csv")}
    setup = PrepareSetup(segmenter=BuiltinSegmenter(), mask_cache=MaskCache(work / "masks"))
    prepared = [prepare_study(study, setup) for study in discover_studies(work / "studies/volumes")]
    findings = work / "findings.jsonl"
    with RecordWriter(findings) as writer:
        for index in range(n_records):
            study = prepared[index % len(prepared)]
            report = reports[study.study_id.split("/")[-1]]
            selection = organ_selection_for(study, "report")
            writer.write(
                {
                    "study_id": f"copy{index:04d}/{study.study_id}",
                    "input": study.input,
                    "kind": study.kind,
                    "shape": list(study.shape),
                    "spacing": list(study.spacing),
                    "organs": list(selection.groups),
                    "organ_reason": selection.reason,
                    "segmenter": study.segmenter,
                    "findings": report.findings,
                    "impression": report.impression,
                    "model": {"name": "benchmark", "revision": "0"},
                    "timing_s": study.timing_s,
                    "warnings": [],
                    "status": "ok",
                }
            )
    return findings


def time_pages(work: Path, findings: Path, n_records: int) -> None:
    options = dict(studies=work / "studies/volumes", cache_dir=work / "masks")
    seconds = {}
    for workers in (1, 2):
        started = time.perf_counter()
        result = build_review(findings, work / f"review-{workers}.html", ReviewOptions(workers=workers, **options))
        seconds[workers] = time.perf_counter() - started
        page = (work / f"review-{workers}.html").read_text(encoding="utf-8")
        assert 'class="warnings"' not in page, "every scan and mask must be found"
    page_bytes = result.pages[-1].size_bytes
    print(
        f"{n_records} studies ({DISTINCT_SCANS} distinct {CONFIG.size} phantoms), thumbnails "
        f"{ReviewOptions().max_pixels} px"
    )
    for workers, value in seconds.items():
        print(f"  {workers} worker(s): {value:.1f} s, {value / n_records:.3f} s/study")
    print(f"  ratio 1 worker / 2 workers: {seconds[1] / seconds[2]:.2f}")
    print(
        f"  page {page_bytes / 1e6:.1f} MB: {page_bytes / n_records / 1e3:.1f} kB/study "
        f"(PNG {result.image_bytes / n_records / 1e3:.1f} kB/study before base64)"
    )
    print(f"  projected 1,000-study page: {page_bytes / n_records * 1000 / 1e6:.0f} MB")


def real_ct_bytes() -> None:
    if not TESTDATA.exists():
        print("real CT: ../shared/testdata not present, skipped")
        return
    for name in ("ct_chest_small.nii.gz", "dicom_series"):
        images = study_images(
            {"study_id": name, "input": name, "organs": [], "status": "ok"}, ImageSettings((TESTDATA,))
        )
        print(f"real CT {name}: six views {sum(len(v.png) for v in images.views) / 1e3:.1f} kB of PNG")


def main() -> None:
    n_records = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        started = time.perf_counter()
        findings = write_run(work, n_records)
        print(f"setup (phantoms, masks, findings): {time.perf_counter() - started:.1f} s")
        time_pages(work, findings, n_records)
    real_ct_bytes()


if __name__ == "__main__":
    main()
