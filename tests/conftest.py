"""Shared fixtures: the real CT files in ../shared/testdata (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO.parent / "shared" / "testdata"


@pytest.fixture(scope="session")
def testdata() -> Path:
    """Folder of real CT test files; a user's fresh clone does not have it."""
    if not (TESTDATA / "ct_chest_small.nii.gz").exists():
        pytest.skip("../shared/testdata is not present (real CT test files)")
    return TESTDATA
