"""Shared fixtures: the real CT files in ../shared/testdata (skipped when absent); torch.load refused everywhere."""

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


def _unpickling_refused(*args, **kwargs):
    raise AssertionError("torch.load was called: omnict must never unpickle a file (safetensors only)")


@pytest.fixture(autouse=True)
def no_unpickling(monkeypatch):
    """Every test fails if anything calls ``torch.load`` (issue 25: nothing is ever unpickled).

    ``torch.load`` and the ``torch.serialization`` functions behind it are
    replaced for the whole suite; transformers' own loading of ``.bin``
    files goes through them too. (``pickle`` itself stays: multiprocessing
    uses it to pass work to worker processes.)
    """
    import torch
    import torch.serialization

    monkeypatch.setattr(torch, "load", _unpickling_refused)
    for name in ("load", "_load", "_legacy_load"):
        if hasattr(torch.serialization, name):
            monkeypatch.setattr(torch.serialization, name, _unpickling_refused)
