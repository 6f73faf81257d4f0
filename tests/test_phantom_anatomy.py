"""Normal phantom anatomy: determinism, valid TotalSegmentator ids, HU per organ, orientation, sizes."""

from __future__ import annotations

import numpy as np
import pytest

from omnict_cli.phantom.anatomy import LOBE_IDS, Anatomy, draw_anatomy, finish_image
from omnict_cli.segmentation.classes import TOTALSEG_TOTAL_CLASSES
from omnict_cli.segmentation.classes import TOTALSEG_TOTAL_IDS as IDS

SMALL = ((32, 128, 128), (10.0, 2.8, 2.8))
VERTEBRA_IDS = tuple(range(IDS["vertebrae_L5"], IDS["vertebrae_C1"] + 1))
RIB_IDS = tuple(range(IDS["rib_left_1"], IDS["rib_right_12"] + 1))


@pytest.fixture(scope="module")
def case() -> Anatomy:
    return draw_anatomy(np.random.default_rng(7), (48, 192, 192), (6.5, 1.85, 1.85))


def centroid(anatomy: Anatomy, ids) -> np.ndarray:
    """Mean (z, y, x) voxel index of the voxels carrying any of ids."""
    mask = np.isin(anatomy.labels, np.atleast_1d(ids))
    assert mask.any(), f"no voxels labelled {ids}"
    return np.array([idx.mean() for idx in np.nonzero(mask)])


def median_hu(anatomy: Anatomy, ids) -> float:
    return float(np.median(anatomy.hu[np.isin(anatomy.labels, np.atleast_1d(ids))]))


def test_same_seed_same_case_and_different_seed_different_case():
    a = draw_anatomy(np.random.default_rng(3), *SMALL)
    b = draw_anatomy(np.random.default_rng(3), *SMALL)
    c = draw_anatomy(np.random.default_rng(4), *SMALL)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.landmarks["pleural_space"], b.landmarks["pleural_space"])
    assert not np.array_equal(a.labels, c.labels)
    assert not np.array_equal(a.hu, c.hu)


def test_types_and_every_label_is_a_totalsegmentator_id(case):
    assert case.hu.dtype == np.float32 and case.labels.dtype == np.uint8
    assert case.hu.shape == case.labels.shape == (48, 192, 192)
    used = set(np.unique(case.labels).tolist()) - {0}
    assert used <= set(TOTALSEG_TOTAL_CLASSES)
    expected = {
        "liver",
        "spleen",
        "stomach",
        "heart",
        "aorta",
        "trachea",
        "esophagus",
        "spinal_cord",
        "superior_vena_cava",
        "inferior_vena_cava",
        "sternum",
        "vertebrae_T6",
        "rib_left_5",
        "rib_right_5",
        "autochthon_left",
        "autochthon_right",
        *(TOTALSEG_TOTAL_CLASSES[i] for i in LOBE_IDS),
    }
    assert {IDS[name] for name in expected} <= used


def test_hu_per_structure(case):
    assert median_hu(case, LOBE_IDS) < -700
    for name in ("heart", "aorta", "liver", "spleen", "kidney_left", "superior_vena_cava"):
        assert 20 <= median_hu(case, IDS[name]) <= 80, name
    assert median_hu(case, VERTEBRA_IDS) > 200
    assert median_hu(case, RIB_IDS) > 400
    assert median_hu(case, IDS["sternum"]) > 200
    assert case.hu[case.labels == 0].max() <= 90.0  # unlabelled: fat, muscle, discs, pericardium, CSF
    assert (case.hu[~case.landmarks["body_mask"]] == -1000).all()


def test_trachea_lumen_is_air_inside_a_soft_tissue_wall(case):
    trachea = case.hu[case.labels == IDS["trachea"]]
    assert (trachea < -900).mean() > 0.4
    assert (np.abs(trachea - 40) < 1).mean() > 0.2
    carina = case.landmarks["carina_z"]
    above = case.labels[carina + 3] == IDS["trachea"]
    assert np.median(case.hu[carina + 3][above]) < -900 or (case.hu[carina + 3][above] < -900).any()


def test_orientation(case):
    body_centre_x = np.nonzero(case.landmarks["body_mask"][0])[1].mean()
    liver, spleen = centroid(case, IDS["liver"]), centroid(case, IDS["spleen"])
    heart, vertebrae = centroid(case, IDS["heart"]), centroid(case, VERTEBRA_IDS)
    lungs = centroid(case, LOBE_IDS)
    assert liver[2] < spleen[2]
    assert heart[2] > body_centre_x
    assert vertebrae[1] > heart[1]
    assert centroid(case, IDS["spinal_cord"])[1] > centroid(case, IDS["aorta"])[1]
    assert lungs[0] > liver[0]
    left = centroid(case, (IDS["lung_upper_lobe_left"], IDS["lung_lower_lobe_left"]))
    right = centroid(case, (IDS["lung_upper_lobe_right"], IDS["lung_middle_lobe_right"], IDS["lung_lower_lobe_right"]))
    assert left[2] > right[2]
    assert centroid(case, IDS["lung_upper_lobe_left"])[0] > centroid(case, IDS["lung_lower_lobe_left"])[0]
    assert centroid(case, IDS["lung_upper_lobe_right"])[0] > centroid(case, IDS["lung_lower_lobe_right"])[0]
    assert centroid(case, IDS["rib_left_4"])[2] > centroid(case, IDS["rib_right_4"])[2]
    assert centroid(case, IDS["kidney_left"])[2] > centroid(case, IDS["kidney_right"])[2]
    assert centroid(case, IDS["vertebrae_T2"])[0] > centroid(case, IDS["vertebrae_T10"])[0]
    assert centroid(case, IDS["sternum"])[1] < heart[1]


def test_landmarks(case):
    marks = case.landmarks
    nz = case.hu.shape[0]
    assert 0 <= marks["diaphragm_z"] < marks["carina_z"] < marks["lung_apex_z"] < nz
    assert (case.labels[marks["diaphragm_z"]] == IDS["liver"]).any()
    assert not (case.labels[marks["diaphragm_z"] + 1] == IDS["liver"]).any()
    assert case.labels[tuple(marks["heart_centre_zyx"])] == IDS["heart"]
    assert marks["body_mask"].dtype == bool and marks["body_mask"].shape == case.hu.shape
    pleural = marks["pleural_space"]
    lungs = np.isin(case.labels, LOBE_IDS)
    assert pleural.shape == case.hu.shape and (pleural | ~lungs).all()
    rim = pleural & ~lungs
    assert rim.sum() > 0.03 * lungs.sum()
    assert (case.labels[rim] == 0).all()


def test_lung_volume_varies_with_seed():
    volumes = [np.isin(draw_anatomy(np.random.default_rng(seed), *SMALL).labels, LOBE_IDS).sum() for seed in range(5)]
    assert max(volumes) > 1.1 * min(volumes)


@pytest.mark.parametrize(
    "size, spacing",
    [((32, 384, 384), (9.4, 0.9, 0.9)), ((64, 256, 256), (5.0, 1.4, 1.4)), ((20, 100, 140), (15.0, 3.5, 2.5))],
)
def test_other_sizes_and_spacings(size, spacing):
    anatomy = draw_anatomy(np.random.default_rng(1), size, spacing)
    assert anatomy.hu.shape == size and anatomy.spacing == spacing
    assert median_hu(anatomy, LOBE_IDS) < -700
    assert centroid(anatomy, IDS["liver"])[2] < centroid(anatomy, IDS["spleen"])[2]
    assert centroid(anatomy, LOBE_IDS)[0] > centroid(anatomy, IDS["liver"])[0]


def test_realistic_thin_slice_volume_300x512x512():
    """The one large case (1.5 x 0.7 x 0.7 mm, 79 M voxels): a few seconds."""
    anatomy = draw_anatomy(np.random.default_rng(2), (300, 512, 512), (1.5, 0.7, 0.7))
    labels = anatomy.labels[::3, ::4, ::4]
    used = set(np.unique(anatomy.labels).tolist()) - {0}
    assert used <= set(TOTALSEG_TOTAL_CLASSES)
    assert IDS["heart"] in used and IDS["kidney_right"] in used and IDS["vertebrae_T12"] in used
    assert np.median(anatomy.hu[::3, ::4, ::4][np.isin(labels, LOBE_IDS)]) < -700
    assert 0 < anatomy.landmarks["diaphragm_z"] < anatomy.landmarks["carina_z"] < 300


def test_finish_image_blur_noise_and_range(case):
    image = finish_image(np.random.default_rng(0), case.hu, case.spacing, noise_hu=12.0)
    assert image.dtype == np.int16 and image.shape == case.hu.shape
    assert image.min() >= -1024 and image.max() <= 3071
    lung_core = np.isin(case.labels, LOBE_IDS) & (np.abs(case.hu + 845) < 20)
    lung_core &= np.roll(lung_core, 2, axis=1) & np.roll(lung_core, -2, axis=1)
    residual = image[lung_core] - case.hu[lung_core]
    assert 9 < residual.std() < 16
    corner_air = image[:, :8, :8]
    assert 6 < corner_air.std() < 14
    noiseless = finish_image(np.random.default_rng(0), case.hu, case.spacing, noise_hu=0.0, blur_mm=0.0)
    assert np.array_equal(noiseless, np.rint(case.hu).astype(np.int16))
    again = finish_image(np.random.default_rng(0), case.hu, case.spacing)
    assert np.array_equal(image, again)


ALLOWED_HU = {  # label id -> HU values (or an inclusive range) its voxels may hold before blur
    **{lobe: ((-865, -825), 40) for lobe in LOBE_IDS},
    IDS["trachea"]: (40, -1000),
    IDS["esophagus"]: (40, -1000),
    IDS["stomach"]: (30, -1000),
    IDS["heart"]: (40,),
    IDS["aorta"]: (40,),
    IDS["liver"]: (60,),
    IDS["spleen"]: (50,),
    IDS["kidney_left"]: (35,),
    IDS["kidney_right"]: (35,),
    IDS["gallbladder"]: (10,),
    IDS["superior_vena_cava"]: (40,),
    IDS["inferior_vena_cava"]: (40,),
    IDS["spinal_cord"]: (35,),
    IDS["sternum"]: (450,),
    IDS["costal_cartilages"]: (150,),
    IDS["autochthon_left"]: (50,),
    IDS["autochthon_right"]: (50,),
    **{rib: (600,) for rib in RIB_IDS},
    **{vertebra: (250, 750) for vertebra in VERTEBRA_IDS},
}


def test_labels_and_hu_agree_voxel_by_voxel(case):
    for label in np.unique(case.labels):
        if label == 0:
            continue
        values = np.unique(case.hu[case.labels == label])
        ok = np.zeros(values.shape, bool)
        for allowed in ALLOWED_HU[int(label)]:
            ok |= (values >= allowed[0]) & (values <= allowed[1]) if isinstance(allowed, tuple) else values == allowed
        assert ok.all(), (TOTALSEG_TOTAL_CLASSES[int(label)], values[~ok][:5])
