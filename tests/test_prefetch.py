"""StudyPrefetcher: worker processes prepare studies in order, within a bounded window, and survive a dying worker."""

from __future__ import annotations

import os

import numpy as np
import pytest

from omnict_cli.phantom.generate import PhantomConfig
from omnict_cli.phantom.writer import write_phantom_set
from omnict_cli.run.prefetch import StudyPrefetcher, WorkerDied
from omnict_cli.run.study_inputs import PrepareSetup
from omnict_cli.segmentation.builtin import BuiltinSegmenter
from omnict_cli.studies.discover import discover_studies
from omnict_cli.studies.preprocess import PreprocessConfig

SMALL = PreprocessConfig(volume_size=(12, 48, 48), slice_size=(48, 48), slices_per_unit=3)


class DyingSegmenter(BuiltinSegmenter):
    """Kills the process segmenting a volume of a chosen depth, as an out-of-memory kill would."""

    def __init__(self, fatal_depth: int):
        super().__init__()
        self.fatal_depth = fatal_depth

    def segment(self, volume):
        if volume.shape[0] == self.fatal_depth:
            os._exit(9)
        return super().segment(volume)


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    write_phantom_set(root, 4, 3, PhantomConfig(size=(16, 48, 48), spacing=(16.0, 6.0, 6.0)))
    return discover_studies(root / "volumes")


def test_workers_give_the_same_inputs_in_the_same_order_as_one_process(studies):
    setup = PrepareSetup(preprocess=SMALL, segmenter=BuiltinSegmenter())
    with StudyPrefetcher(setup, workers=0) as here, StudyPrefetcher(setup, workers=2) as pool:
        local = list(here.prepared(studies))
        remote = list(pool.prepared(studies))
    assert [s.study_id for s, _ in remote] == [s.study_id for s in studies]
    for (_, a), (_, b) in zip(local, remote):
        np.testing.assert_array_equal(a.model_input.units, b.model_input.units)
        np.testing.assert_array_equal(a.model_input.label_map, b.model_input.label_map)


def test_no_more_than_depth_studies_are_taken_ahead_of_the_consumer(studies):
    pulled = []

    def source():
        for study in studies * 3:
            pulled.append(study)
            yield study

    with StudyPrefetcher(PrepareSetup(preprocess=SMALL), workers=1, depth=3) as prefetch:
        for taken, _ in enumerate(prefetch.prepared(source()), start=1):
            assert len(pulled) - taken <= 3


def test_a_study_that_kills_its_worker_fails_alone(studies, tmp_path):
    bad = tmp_path / "deep.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.full((40, 40, 17), -800, dtype=np.int16), np.diag([6.0, 6.0, 16.0, 1.0])), bad)
    mixed = list(studies[:2]) + discover_studies(bad) + list(studies[2:])
    setup = PrepareSetup(preprocess=SMALL, segmenter=DyingSegmenter(fatal_depth=17))
    with StudyPrefetcher(setup, workers=2) as prefetch:
        results = list(prefetch.prepared(mixed))
    assert [s.study_id for s, _ in results] == [s.study_id for s in mixed]
    outcome = dict((s.study_id, r) for s, r in results)
    assert isinstance(outcome["deep.nii.gz"], WorkerDied) and "died" in str(outcome["deep.nii.gz"])
    assert all(not isinstance(r, Exception) for s, r in results if s.study_id != "deep.nii.gz")
