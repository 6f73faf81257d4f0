"""The tensor cache: what it stores equals fresh preparation (to float16 rounding), keys follow content and
settings, corrupt entries are caught, removed and redone, unloadable studies leave out only their rows."""

import shutil

import numpy as np
import pytest

from omnict_cli.run.study_inputs import PrepareSetup, prepare_study
from omnict_cli.segmentation.builtin import BuiltinSegmenter
from omnict_cli.segmentation.cache import MaskCache
from omnict_cli.studies.discover import single_study
from omnict_cli.studies.preprocess import PreprocessConfig
from omnict_cli.training.dataset import StudyDataset, prepare_examples
from omnict_cli.training.rows import TrainingRow
from omnict_cli.training.tensor_cache import TensorCache, entry_key, source_digest
from tests.test_training_data import phantom_set  # noqa: F401 (fixture)

GRID = PreprocessConfig(volume_size=(6, 42, 42), slice_size=(42, 42))


@pytest.fixture
def setup(tmp_path):
    return PrepareSetup(preprocess=GRID, segmenter=BuiltinSegmenter(), mask_cache=MaskCache(tmp_path / "masks"))


def rows_for(*images, question="Is there a lung nodule in this scan?") -> list[TrainingRow]:
    return [TrainingRow(image=image, question=question, answer="No", line=i + 1) for i, image in enumerate(images)]


def test_a_cached_study_equals_fresh_preparation(tmp_path, setup, phantom_set):  # noqa: F811
    volume = phantom_set / "volumes" / "case_0001.nii.gz"
    cache = TensorCache(tmp_path / "tensors")
    prepared = prepare_examples(rows_for(volume), setup, cache)
    assert prepared.problems == [] and prepared.from_cache == 0
    (example,) = prepared.examples
    assert (example.kind, example.num_units) == ("volume", 2)
    item = StudyDataset(prepared.examples, cache)[0]
    fresh = prepare_study(single_study(volume), setup)
    assert np.abs(item["image"].units - fresh.model_input.units).max() <= 5e-4  # float16: <= 0.5 HU
    assert item["image"].units.dtype == np.float32
    assert np.array_equal(item["image"].label_map, fresh.model_input.label_map)
    assert item["organ_mask"] is not None and item["organ_mask"].any()  # routed to the lungs
    again = prepare_examples(rows_for(volume), setup, cache)
    assert (again.from_cache, again.studies) == (1, 1)


def test_keys_follow_file_content_and_settings_not_names(tmp_path, setup, phantom_set):  # noqa: F811
    volume = phantom_set / "volumes" / "case_0001.nii.gz"
    copy = tmp_path / "renamed.nii.gz"
    shutil.copy(volume, copy)
    digest = source_digest([volume])
    assert source_digest([copy]) == digest
    assert source_digest([phantom_set / "volumes" / "case_0002.nii.gz"]) != digest
    key = entry_key(digest, setup)
    assert entry_key(digest, PrepareSetup(preprocess=GRID)) != key  # no segmenter
    assert (
        entry_key(digest, PrepareSetup(preprocess=PreprocessConfig(volume_size=(9, 42, 42)), segmenter=setup.segmenter))
        != key
    )
    assert entry_key(digest, setup, units_dtype="float32") != key
    cache = TensorCache(tmp_path / "tensors")
    prepare_examples(rows_for(volume), setup, cache)
    assert prepare_examples(rows_for(copy), setup, cache).from_cache == 1


def test_a_corrupt_entry_is_removed_reported_and_prepared_again(tmp_path, setup, phantom_set):  # noqa: F811
    volume = phantom_set / "volumes" / "case_0002.nii.gz"
    cache = TensorCache(tmp_path / "tensors")
    key = prepare_examples(rows_for(volume), setup, cache).examples[0].key
    path = cache.entry_path(key)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # a flipped bit in the tensor bytes; the header still parses
    path.write_bytes(bytes(data))
    found = cache.get(key)
    assert found.entry is None and "was corrupt (the bytes of" in found.warning and not path.exists()
    path.write_bytes(b"\x00" * 5)
    assert "not a readable safetensors file" in cache.get(key).warning
    redone = prepare_examples(rows_for(volume), setup, cache)
    assert redone.from_cache == 0 and cache.get(key).entry is not None


def test_an_unloadable_study_leaves_out_only_its_rows(tmp_path, setup, phantom_set):  # noqa: F811
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file at all")
    good = phantom_set / "volumes" / "case_0003.nii.gz"
    rows = rows_for(good, broken, broken) + [
        TrainingRow(good, "Is the liver ok?", "Yes", organ="pancreas_tail", line=4)
    ]
    prepared = prepare_examples(rows, setup, TensorCache(tmp_path / "tensors"))
    assert [example.row.line for example in prepared.examples] == [1]
    assert len(prepared.problems) == 2
    (study_problem,) = [problem for problem in prepared.problems if str(broken) in problem]
    assert study_problem.endswith("its 2 rows (line 2, 3) left out")
    (organ_problem,) = [problem for problem in prepared.problems if problem.startswith("line 4:")]
    assert "organ" in organ_problem and "pancreas_tail" in organ_problem and organ_problem.endswith("row left out")


def test_a_corrupt_entry_that_cannot_be_removed_is_a_warning_not_a_failure(
    tmp_path,
    setup,
    phantom_set,  # noqa: F811
    monkeypatch,
):
    import pathlib

    volume = phantom_set / "volumes" / "case_0002.nii.gz"
    cache = TensorCache(tmp_path / "tensors")
    key = prepare_examples(rows_for(volume), setup, cache).examples[0].key
    path = cache.entry_path(key)
    path.write_bytes(b"\x00" * 5)

    def read_only(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "unlink", read_only)
    found = cache.get(key)
    assert found.entry is None and "could not remove it (Permission denied)" in found.warning
    assert path.exists()
