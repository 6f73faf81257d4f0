"""The README's first flow, run verbatim from the README text: report -> score -> review on the bundled examples.

The commands are read from the code blocks of the README section "Run it on
the bundled examples", so a README edit that breaks the flow fails here. They
run through the installed ``omnict`` entry point, in a temporary folder
holding a copy of ``examples/``, as a new user would after installing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Run it on the bundled examples"


def section_commands(readme: str, heading: str) -> list[str]:
    """The ``omnict ...`` lines of the bash code blocks under ``heading`` (up to the next ``## ``)."""
    start = readme.index(heading) + len(heading)
    end = readme.find("\n## ", start)
    section = readme[start : end if end != -1 else None]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("omnict "):
                commands.append(line)
    return commands


def test_the_readme_section_holds_the_report_score_review_flow():
    commands = section_commands((REPO / "README.md").read_text(encoding="utf-8"), SECTION)
    assert [shlex.split(command)[1] for command in commands] == ["report", "score", "review"]


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """The README's commands run in order in a temporary folder holding a copy of examples/.

    The environment has no ``OMNICT_*`` variable (the bundled demo model is used, as for a new
    user) and its own cache folder. Returns the folder, the environment and each command's result.
    """
    folder = tmp_path_factory.mktemp("new_user")
    shutil.copytree(REPO / "examples", folder / "examples")
    env = {key: value for key, value in os.environ.items() if not key.startswith("OMNICT_")}
    env["XDG_CACHE_HOME"] = str(folder / "cache")
    commands = section_commands((REPO / "README.md").read_text(encoding="utf-8"), SECTION)
    results = {shlex.split(command)[1]: _run(command, folder, env) for command in commands}
    return folder, env, results


def _run(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    executable = shutil.which("omnict")
    assert executable, "the omnict entry point is not installed (pip install -e .)"
    return subprocess.run(
        [executable, *shlex.split(command)[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_report_writes_a_record_per_study_with_its_root(flow):
    folder, _, results = flow
    assert results["report"].returncode == 0, results["report"].stderr[-3000:]
    records = [json.loads(line) for line in (folder / "findings.jsonl").read_text().splitlines()]
    by_id = {record["study_id"]: record for record in records}
    assert len(by_id) == len(records) == 19
    volumes = [f"phantoms/volumes/case_000{i}.nii.gz" for i in range(1, 5)]
    assert all(by_id[name]["status"] == "ok" for name in volumes)
    assert {by_id[name]["root"] for name in volumes} == {str(folder / "examples")}
    assert by_id["ct_chest_small.nrrd"]["input"] == "ct_chest_small.nrrd"


def test_score_shows_the_phantoms_and_names_what_has_no_reference(flow):
    _, _, results = flow
    done = results["score"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CT-RATE abnormality labels (4 studies" in done.stdout
    assert re.search(r"macro F1 \d+\.\d", done.stdout)
    left_out = [line for line in done.stderr.splitlines() if "have no reference" in line]
    assert len(left_out) == 1 and "11 predicted studies have no reference" in left_out[0]
    assert "ct_chest_small.nii.gz, ct_chest_small.nrrd" in left_out[0]


def test_review_shows_the_scans_and_the_scores(flow):
    folder, _, results = flow
    done = results["review"]
    assert done.returncode == 0, done.stderr[-3000:]
    page = (folder / "review.html").read_text(encoding="utf-8")
    assert "scan not found" not in page and "no scores" not in done.stderr
    assert page.count("data:image/png") >= 4 * 3  # three views of each phantom volume at least
    assert "macro F1" in page


def test_review_finds_the_scans_from_another_directory(flow, tmp_path):
    folder, env, _ = flow
    done = _run(f"omnict review {folder / 'findings.jsonl'} --out {tmp_path / 'page.html'}", tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "scan not found" not in page and page.count("data:image/png") >= 4 * 3
