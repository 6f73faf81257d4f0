"""The organ-mask cache: keys, round trips, corruption recovery and concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from isal import igzip
from nibabel.orientations import axcodes2ornt

from omnict_cli.segmentation.base import Segmenter
from omnict_cli.segmentation.cache import MaskCache, cache_key, default_cache_root
from omnict_cli.studies.volume import Volume, canonical_affine


class ThresholdDouble(Segmenter):
    """A test double: 1 where HU > ``threshold``, 2 where HU > 300; counts its calls."""

    name = "double"

    def __init__(self, threshold: int = -500, version: str = "1", extra_options: dict | None = None):
        self.threshold = threshold
        self.version = version
        self.extra_options = extra_options or {}
        self.calls = 0

    @property
    def vocabulary(self) -> dict[int, str]:
        return {1: "body", 2: "bone"}

    def options(self) -> dict:
        return dict(self.extra_options)

    def segment(self, volume) -> np.ndarray:
        self.calls += 1
        labels = (volume.voxels > self.threshold).astype(np.uint8)
        labels[volume.voxels > 300] = 2
        return labels


def make_volume(voxels: np.ndarray, spacing=(3.0, 1.5, 1.5)) -> Volume:
    return Volume(
        voxels=voxels,
        affine=canonical_affine(spacing),
        kind="volume",
        source_format="npy",
        source_ornt=axcodes2ornt(("S", "P", "L")),
        source_shape=voxels.shape,
    )


def random_hu(seed: int, shape=(10, 24, 20)) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1000, shape).astype(np.int16)


@pytest.fixture
def cache(tmp_path) -> MaskCache:
    return MaskCache(tmp_path / "masks")


def test_equal_voxels_give_equal_keys_whatever_their_memory_layout():
    hu = random_hu(0)
    flipped_view = np.flip(np.flip(hu, axis=0).copy(), axis=0)  # same values, negative strides
    big_endian = hu.astype(">i2")
    moved = make_volume(hu.copy())
    moved.affine[:3, 3] = [10.0, -20.0, 5.0]  # origin does not change the mask
    keys = {
        cache_key(volume, ThresholdDouble())
        for volume in (make_volume(hu), make_volume(flipped_view), make_volume(big_endian), moved)
    }
    assert len(keys) == 1
    assert not flipped_view.flags.c_contiguous


def test_spacing_float_noise_keeps_the_key_but_a_real_change_does_not():
    hu = random_hu(0)
    base = cache_key(make_volume(hu, (3.0, 1.5, 1.5)), ThresholdDouble())
    assert cache_key(make_volume(hu, (3.0, 1.5 + 1e-9, 1.5)), ThresholdDouble()) == base
    assert cache_key(make_volume(hu, (3.0, 1.5, 1.6)), ThresholdDouble()) != base


def test_any_change_of_voxels_dtype_spacing_or_segmenter_changes_the_key():
    hu = random_hu(0)
    one_voxel = hu.copy()
    one_voxel[5, 5, 5] += 1
    renamed = ThresholdDouble()
    renamed.name = "other"
    keys = [
        cache_key(make_volume(hu), ThresholdDouble()),
        cache_key(make_volume(one_voxel), ThresholdDouble()),
        cache_key(make_volume(hu.astype(np.float32)), ThresholdDouble()),
        cache_key(make_volume(hu.reshape(20, 12, 20)), ThresholdDouble()),
        cache_key(make_volume(hu, (2.0, 1.5, 1.5)), ThresholdDouble()),
        cache_key(make_volume(hu), ThresholdDouble(version="2")),
        cache_key(make_volume(hu), ThresholdDouble(extra_options={"fast": True})),
        cache_key(make_volume(hu), renamed),
    ]
    assert len(set(keys)) == len(keys)


def test_round_trip_stores_a_viewable_nifti_on_the_volume_grid(cache, tmp_path):
    volume = make_volume(random_hu(1))
    segmenter = ThresholdDouble()
    labels = segmenter.segment(volume)
    path = cache.put(volume, segmenter, labels)
    key = cache_key(volume, segmenter)
    assert path == tmp_path / "masks" / "double" / key[:2] / f"{key}.nii.gz"
    assert np.array_equal(cache.get(volume, segmenter), labels)

    image = nib.load(path)
    file_labels = np.asanyarray(image.dataobj)
    assert file_labels.dtype == np.uint8 and file_labels.shape == labels.shape[::-1]
    # voxel (x, y, z) of the file is voxel [z, y, x] of the volume, at the same world position
    x, y, z = 7, 3, 4
    assert file_labels[x, y, z] == labels[z, y, x]
    assert np.allclose(image.affine @ [x, y, z, 1], volume.affine @ [z, y, x, 1])


def test_entry_record_describes_the_mask_and_holds_no_path(cache, tmp_path):
    volume = make_volume(random_hu(1))
    path = cache.put(volume, ThresholdDouble(), ThresholdDouble().segment(volume))
    raw = igzip.decompress(path.read_bytes())
    (extension,) = nib.Nifti1Image.from_bytes(raw).header.extensions
    record = json.loads(extension.get_content())
    assert set(record) == {"format", "key", "shape", "dtype", "labels_sha256", "segmenter", "created", "omnict_version"}
    assert record["shape"] == [10, 24, 20] and record["segmenter"] == "double 1"
    assert str(tmp_path).encode() not in raw


def test_get_or_compute_segments_once_then_hits(cache):
    volume = make_volume(random_hu(2))
    segmenter = ThresholdDouble()
    first, first_hit, first_warnings = cache.get_or_compute(volume, segmenter)
    again, second_hit, second_warnings = cache.get_or_compute(make_volume(volume.voxels.copy()), segmenter)
    assert (first_hit, second_hit) == (False, True)
    assert segmenter.calls == 1
    assert np.array_equal(first, again)
    assert first_warnings == second_warnings == []
    assert cache.get(volume, ThresholdDouble(version="2")) is None


def test_put_refuses_labels_outside_the_vocabulary(cache):
    volume = make_volume(random_hu(2))
    labels = np.full(volume.shape, 9, dtype=np.uint8)
    with pytest.raises(ValueError, match=r"label ids \[9\]"):
        cache.put(volume, ThresholdDouble(), labels)


def _truncate(path, other_entry):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path, other_entry):
    path.write_bytes(b"not a gzip file at all" * 50)


def _wrong_shape(path, other_entry):
    shutil.copyfile(other_entry, path)  # a valid entry of another volume (other shape and key)


def _flipped_label_byte(path, other_entry):
    raw = bytearray(igzip.decompress(path.read_bytes()))
    raw[-1] ^= 1  # last voxel: the mask no longer matches the sha256 in its record
    path.write_bytes(igzip.compress(bytes(raw)))


@pytest.mark.parametrize("damage", [_truncate, _garbage, _wrong_shape, _flipped_label_byte])
def test_a_damaged_entry_is_removed_reported_and_recomputed(cache, damage):
    volume = make_volume(random_hu(3))
    segmenter = ThresholdDouble()
    expected, _, _ = cache.get_or_compute(volume, segmenter)
    path = cache.entry_path(cache_key(volume, segmenter), segmenter)
    other_entry = cache.put(make_volume(random_hu(4, (6, 8, 8))), segmenter, np.zeros((6, 8, 8), np.uint8))
    damage(path, other_entry)

    labels, hit, warnings = cache.get_or_compute(volume, segmenter)
    assert not hit and segmenter.calls == 2
    assert np.array_equal(labels, expected)
    assert len(warnings) == 1 and "corrupt" in warnings[0] and "removed it" in warnings[0]
    assert str(path) in warnings[0]
    assert np.array_equal(cache.get(volume, segmenter), expected)  # stored again, valid


def test_get_removes_a_corrupt_entry_and_reports_a_miss(cache):
    volume = make_volume(random_hu(3))
    path = cache.put(volume, ThresholdDouble(), ThresholdDouble().segment(volume))
    _garbage(path, None)
    assert cache.get(volume, ThresholdDouble()) is None
    assert not path.exists()


def test_a_corrupt_entry_in_a_read_only_cache_does_not_fail_the_study(cache, monkeypatch):
    """The docs promise a read-only cache never fails a study; a bad entry there cannot be removed."""
    import pathlib

    volume = make_volume(random_hu(3))
    segmenter = ThresholdDouble()
    expected, _, _ = cache.get_or_compute(volume, segmenter)
    path = cache.entry_path(cache_key(volume, segmenter), segmenter)
    _garbage(path, None)

    def read_only(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "unlink", read_only)
    monkeypatch.setattr("omnict_cli.atomic.os.replace", lambda *a: read_only(Path(a[1])))
    labels, hit, warnings = cache.get_or_compute(volume, segmenter)
    assert not hit and np.array_equal(labels, expected)
    assert "corrupt" in warnings[0] and "could not remove it (Permission denied)" in warnings[0]
    assert "could not store the mask" in warnings[1]
    assert path.exists()  # left for someone who may write the cache


def test_an_unwritable_cache_still_returns_the_labels_with_a_warning(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    volume = make_volume(random_hu(5))
    labels, hit, warnings = MaskCache(blocker).get_or_compute(volume, ThresholdDouble())
    assert not hit and np.array_equal(labels, ThresholdDouble().segment(volume))
    assert len(warnings) == 1 and "could not store the mask" in warnings[0]


def test_default_root_follows_omnict_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("OMNICT_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "explicit"
    assert MaskCache().root == tmp_path / "explicit"
    monkeypatch.delenv("OMNICT_CACHE_DIR")
    assert default_cache_root() == tmp_path / "xdg" / "omnict" / "masks"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_root() == tmp_path / "home" / ".cache" / "omnict" / "masks"


def test_info_counts_per_segmenter_and_clear_removes_only_cache_files(cache):
    renamed = ThresholdDouble()
    renamed.name = "other"
    for seed in range(3):
        cache.get_or_compute(make_volume(random_hu(seed)), ThresholdDouble())
    cache.get_or_compute(make_volume(random_hu(0)), renamed)
    entry = next(cache.root.glob("double/*/*.nii.gz"))
    leftover = entry.parent / f".{entry.name}.x1y2z3.tmp"  # an interrupted write
    leftover.write_bytes(b"partial")
    unrelated = cache.root / "notes.txt"
    unrelated.write_text("not a cache file")

    info = cache.info()
    assert {name: usage.entries for name, usage in info.segmenters.items()} == {"double": 3, "other": 1}
    assert info.entries == 4 and info.size_bytes > 0
    removed = cache.clear()
    assert removed.entries == 4
    assert cache.info().entries == 0
    assert not leftover.exists() and unrelated.exists()
    assert sorted(p.name for p in cache.root.iterdir()) == ["notes.txt"]


class WorkerDouble(ThresholdDouble):
    """Same name, version and options (so the same key) in every worker, but a worker-specific mask:
    the worst case for concurrent writers, like a segmenter that is not bit-for-bit deterministic."""

    def __init__(self, worker: int):
        super().__init__(threshold=-500 + 100 * worker)


def _fill_cache_concurrently(root, worker: int, rounds: int, barrier, results) -> None:
    """Spawned worker: write the shared entry and its own entries, reading the shared one in between."""
    cache = MaskCache(root)
    shared = make_volume(random_hu(100))
    segmenter = WorkerDouble(worker)
    problems = []
    barrier.wait()
    for round_index in range(rounds):
        cache.put(shared, segmenter, segmenter.segment(shared))
        own = make_volume(random_hu(1000 * (worker + 1) + round_index))
        _, _, warnings = cache.get_or_compute(own, segmenter)
        found = cache.lookup(shared, segmenter)
        problems.extend(warnings + ([found.warning] if found.warning else []))
        if found.labels is None:
            problems.append(f"worker {worker} round {round_index}: shared entry missing after put")
    results.put((worker, problems))


def test_concurrent_processes_never_leave_or_read_a_corrupt_entry(tmp_path):
    workers, rounds = 3, 25
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(workers), context.Queue()
    processes = [
        context.Process(target=_fill_cache_concurrently, args=(tmp_path / "masks", worker, rounds, barrier, results))
        for worker in range(workers)
    ]
    for process in processes:
        process.start()
    reports = dict(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    assert reports == {worker: [] for worker in range(workers)}
    cache = MaskCache(tmp_path / "masks")
    assert cache.info().entries == 1 + workers * rounds
    assert not list(cache.root.rglob("*.tmp"))
    shared = make_volume(random_hu(100))
    stored = cache.get(shared, WorkerDouble(0))
    assert any(np.array_equal(stored, WorkerDouble(worker).segment(shared)) for worker in range(workers))
    for worker in range(workers):
        for round_index in range(rounds):
            own = make_volume(random_hu(1000 * (worker + 1) + round_index))
            assert np.array_equal(cache.get(own, WorkerDouble(worker)), WorkerDouble(worker).segment(own))
