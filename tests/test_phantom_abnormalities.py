"""The 18 CT-RATE abnormalities are drawn where and how their Findings say."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy import ndimage

from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.phantom.abnormalities import (
    DEFAULT_PREVALENCE,
    LOBES,
    LUNG_IDS,
    cardiothoracic_ratio,
    draw_abnormalities,
    sample_abnormality_classes,
)
from omnict_cli.phantom.anatomy import draw_anatomy
from omnict_cli.phantom.findings import Finding, label_vector, slices_showing
from omnict_cli.segmentation.organ_groups import ORGAN_GROUPS

NONE = {name: 0.0 for name in CTRATE_ABNORMALITIES}


@pytest.fixture(scope="module")
def base_anatomy():
    """The normal phantom chest at its default geometry (5 mm slices, 1.4 mm pixels)."""
    return draw_anatomy(np.random.default_rng(0))


@pytest.fixture(scope="module")
def thick_slice_anatomy():
    """A coarser chest (9 mm slices, 1.8 mm pixels), where thin structures are hardest to place."""
    return draw_anatomy(np.random.default_rng(1), size=(36, 192, 192), spacing=(9.0, 1.8, 1.8))


def _draw(base, cls, seed=1):
    anatomy = copy.deepcopy(base)
    before_hu, before_labels = anatomy.hu.copy(), anatomy.labels.copy()
    findings = draw_abnormalities(np.random.default_rng(seed), anatomy, prevalence=NONE, force=(cls,))
    changed = anatomy.hu != before_hu
    return anatomy, before_hu, before_labels, findings, changed


def _dilate(mask, n):
    return ndimage.binary_dilation(mask, structure=np.ones((1, 3, 3), bool), iterations=n)


@pytest.mark.parametrize("geometry", ["base_anatomy", "thick_slice_anatomy"])
@pytest.mark.parametrize("cls", CTRATE_ABNORMALITIES)
def test_each_class_is_drawn_inside_the_body_and_reported(request, geometry, cls):
    base_anatomy = request.getfixturevalue(geometry)
    anatomy, _before_hu, _before_labels, findings, changed = _draw(base_anatomy, cls)
    assert [f.label for f in findings] == [cls]
    finding = findings[0]
    assert finding.organ in ORGAN_GROUPS
    assert changed.any()
    assert not changed[~base_anatomy.landmarks["body_mask"]].any()
    assert label_vector(findings) == {name: int(name == cls) for name in CTRATE_ABNORMALITIES}
    if finding.side in ("right", "left"):
        centroid_x = np.argwhere(changed)[:, 2].mean()
        midline = np.nonzero(base_anatomy.landmarks["body_mask"].any(axis=(0, 1)))[0].mean()
        assert (centroid_x < midline) == (finding.side == "right"), (finding.side, centroid_x, midline)
    z0, y0, x0, z1, y1, x1 = finding.details["bbox_zyx"]
    assert z0 <= z1 and y0 <= y1 and x0 <= x1
    if finding.centre_zyx is not None:
        assert all(type(c) is int and 0 <= c < n for c, n in zip(finding.centre_zyx, anatomy.hu.shape))
    assert finding.size_mm is None or finding.size_mm > 0
    assert finding.severity in (None, "mild", "moderate", "severe")
    assert finding.count >= 1
    assert changed[finding.centre_zyx[0]].any()  # the centre slice shows the finding
    box = tuple(slice(start, stop + 1) for start, stop in zip((z0, y0, x0), (z1, y1, x1)))
    assert np.array_equal(finding.details["footprint"], changed[box])  # exactly the changed voxels
    assert changed.sum() == changed[box].sum()
    assert slices_showing(finding) == set(np.flatnonzero(changed.any(axis=(1, 2))).tolist())


def test_a_finding_made_by_hand_has_no_footprint():
    finding = Finding("Lung nodule", "lungs", details={"bbox_zyx": (1, 2, 3, 4, 5, 6)})
    assert slices_showing(finding) is None


def test_drawing_is_deterministic_per_seed(base_anatomy):
    a, b = copy.deepcopy(base_anatomy), copy.deepcopy(base_anatomy)
    fa = draw_abnormalities(np.random.default_rng(7), a, force=tuple(CTRATE_ABNORMALITIES))
    fb = draw_abnormalities(np.random.default_rng(7), b, force=tuple(CTRATE_ABNORMALITIES))
    assert fa == fb
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.labels, b.labels)
    assert [f.label for f in fa] == list(CTRATE_ABNORMALITIES)
    assert not (a.hu != base_anatomy.hu)[~base_anatomy.landmarks["body_mask"]].any()


def test_sampler_respects_prevalence_and_force():
    rng = np.random.default_rng(3)
    draws = [sample_abnormality_classes(rng) for _ in range(400)]
    for name, p in DEFAULT_PREVALENCE.items():
        rate = sum(name in d for d in draws) / len(draws)
        assert abs(rate - p) < 0.08, (name, rate, p)
    forced = sample_abnormality_classes(rng, prevalence=NONE, force=("Emphysema",))
    assert forced == ("Emphysema",)
    with pytest.raises(ValueError):
        sample_abnormality_classes(rng, prevalence={"Not a class": 0.5})
    with pytest.raises(ValueError):
        sample_abnormality_classes(rng, force=("Not a class",))
    partial = [sample_abnormality_classes(rng, prevalence={"Lung nodule": 1.0}) for _ in range(50)]
    assert all("Lung nodule" in d for d in partial)  # named classes overridden ...
    assert any(len(d) > 1 for d in partial)  # ... the others keep their defaults


def test_pleural_effusion_is_fluid_in_the_pleural_space(base_anatomy):
    anatomy, _, before_labels, _findings, changed = _draw(base_anatomy, "Pleural effusion")
    values = anatomy.hu[changed]
    assert values.min() >= 0 and values.max() <= 30
    assert base_anatomy.landmarks["pleural_space"][changed].all()
    assert (anatomy.labels[changed] == 0).all()
    assert np.isin(before_labels[changed], LUNG_IDS).mean() > 0.5
    posterior = np.argwhere(changed)[:, 1].mean() > np.argwhere(np.isin(before_labels, LUNG_IDS))[:, 1].mean()
    assert posterior


def test_emphysema_is_below_minus_950_in_lung(base_anatomy):
    anatomy, _, before_labels, _findings, changed = _draw(base_anatomy, "Emphysema")
    assert (anatomy.hu[changed] < -950).all()
    assert np.isin(before_labels[changed], LUNG_IDS).all()


def test_medical_material_is_metal(base_anatomy):
    anatomy, *_, changed = _draw(base_anatomy, "Medical material")
    assert (anatomy.hu[changed] > 2000).sum() >= 5
    for seed in range(2, 6):  # every kind of material draws inside the body
        a, *_, ch = _draw(base_anatomy, "Medical material", seed=seed)
        assert (a.hu > 2000).any() and not ch[~base_anatomy.landmarks["body_mask"]].any()


def test_nodule_centre_is_solid_and_in_the_named_lobe(base_anatomy):
    for seed in range(1, 5):
        anatomy, *_, findings, _changed = _draw(base_anatomy, "Lung nodule", seed=seed)
        for nodule in findings[0].details["nodules"]:
            c = nodule["centre_zyx"]
            assert 0 <= anatomy.hu[c] <= 40
            assert LOBES[int(anatomy.labels[c])][0] == nodule["lobe"]
            assert 4 <= nodule["diameter_mm"] <= 30
        c = findings[0].centre_zyx
        assert LOBES[int(anatomy.labels[c])][0] == findings[0].location


def test_calcifications_sit_on_the_aorta_and_heart(base_anatomy):
    anatomy, _, before_labels, _, changed = _draw(base_anatomy, "Arterial wall calcification")
    assert (anatomy.hu[changed] > 300).all()
    assert _dilate(before_labels == 52, 2)[changed].all()
    anatomy, _, before_labels, findings, changed = _draw(base_anatomy, "Coronary artery wall calcification")
    assert (anatomy.hu[changed] > 300).all()
    assert _dilate(before_labels == 51, 3)[changed].all()
    assert set(findings[0].details["vessels"]) <= {
        "left anterior descending artery",
        "right coronary artery",
        "circumflex artery",
    }


def test_cardiomegaly_grows_the_heart_past_half_the_chest(base_anatomy):
    anatomy, _, before_labels, findings, _ = _draw(base_anatomy, "Cardiomegaly")
    assert (anatomy.labels == 51).sum() > (before_labels == 51).sum()
    pleural = base_anatomy.landmarks["pleural_space"]
    assert cardiothoracic_ratio(anatomy.labels, pleural) > 0.5
    assert cardiothoracic_ratio(anatomy.labels, pleural) > cardiothoracic_ratio(before_labels, pleural) + 0.05
    assert findings[0].details["cardiothoracic_ratio"] > 0.5


def test_pericardial_effusion_is_a_fluid_rim(base_anatomy):
    anatomy, _, before_labels, _, changed = _draw(base_anatomy, "Pericardial effusion")
    assert (anatomy.hu[changed] >= 0).all() and (anatomy.hu[changed] <= 20).all()
    assert (anatomy.labels[changed] == 0).all()
    near_heart = ndimage.binary_dilation(before_labels == 51, structure=np.ones((3, 3, 3), bool), iterations=12)
    assert near_heart[changed].all()


def test_lung_opacity_and_consolidation_values(base_anatomy):
    anatomy, _, before_labels, findings, changed = _draw(base_anatomy, "Lung opacity")
    values = anatomy.hu[changed]
    assert values.min() >= -750 and values.max() <= -350
    assert LOBES[int(anatomy.labels[findings[0].centre_zyx])][0] == findings[0].location
    anatomy, _, before_labels, findings, changed = _draw(base_anatomy, "Consolidation")
    values = anatomy.hu[changed]
    dense = values[values > -500]
    assert dense.min() >= 0 and dense.max() <= 60
    assert (values < -800).any()  # air bronchograms
    assert np.isin(before_labels[changed], LUNG_IDS).all()


def test_hiatal_hernia_puts_stomach_above_the_diaphragm(base_anatomy):
    anatomy, _, before_labels, _, changed = _draw(base_anatomy, "Hiatal hernia")
    dz = base_anatomy.landmarks["diaphragm_z"]
    assert (anatomy.labels[dz:] == 6).sum() > (before_labels[dz:] == 6).sum()
    assert (anatomy.hu[changed & (anatomy.labels == 6)] < -900).any()  # gas in the sac


def test_lymph_nodes_are_enlarged_soft_tissue(base_anatomy):
    anatomy, _, _, findings, changed = _draw(base_anatomy, "Lymphadenopathy")
    values = anatomy.hu[changed]
    assert values.min() > 20 and values.max() < 60
    assert all(n["short_axis_mm"] > 10 for n in findings[0].details["nodes"])
    assert (anatomy.labels[changed] == 0).all()


@pytest.mark.parametrize(
    "cls, low, high",
    [
        ("Atelectasis", 0, 40),
        ("Pulmonary fibrotic sequela", -300, 0),
        ("Mosaic attenuation pattern", -930, -720),
        ("Interlobular septal thickening", -300, -100),
    ],
)
def test_lung_pattern_values(base_anatomy, cls, low, high):
    anatomy, _, before_labels, _, changed = _draw(base_anatomy, cls)
    values = anatomy.hu[changed]
    assert values.min() >= low and values.max() <= high
    assert np.isin(before_labels[changed], LUNG_IDS).all()
    assert (anatomy.labels[changed] == before_labels[changed]).all()


@pytest.mark.parametrize("cls", ["Peribronchial thickening", "Bronchiectasis"])
def test_airways_have_air_lumen_and_walls(base_anatomy, cls):
    anatomy, _, before_labels, findings, changed = _draw(base_anatomy, cls)
    values = anatomy.hu[changed]
    assert (values < -940).any() and (values > 0).any()
    assert np.isin(before_labels[changed], LUNG_IDS).all()
    if cls == "Bronchiectasis":
        assert "lower lobe" in findings[0].location


def test_a_pericardial_effusion_too_thin_for_a_coarse_grid_is_left_out_not_a_crash():
    from omnict_cli.phantom.generate import PhantomConfig, generate_case

    # 20 mm slices, 5 mm pixels: case 93 of seed 1 draws an effusion thinner than one voxel
    for index in (93, 163):
        case = generate_case(1, index, PhantomConfig(size=(16, 64, 64), spacing=(20.0, 5.0, 5.0)))
        assert case.report.findings
        assert all(f.centre_zyx is None or min(f.centre_zyx) >= 0 for f in case.findings)
