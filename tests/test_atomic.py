"""Atomic writes: the old file or the new one, the user's usual file mode, no leftovers on failure."""

import os
import stat

import pytest

from omnict_cli.atomic import TEMP_SUFFIX, write_bytes_atomically, write_text_atomically


def test_writes_create_folders_and_use_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomically(tmp_path / "a" / "b.csv", "x,y\n")
    finally:
        os.umask(old)
    assert path.read_text() == "x,y\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert [p.name for p in path.parent.iterdir()] == ["b.csv"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "scores.json"
    path.write_text("old")

    def broken_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomically(path, b"new")
    assert path.read_text() == "old"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)]
