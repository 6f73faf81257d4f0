"""The paper's 13 organ groups as segmenter label ids, what a scan covers, and the ``--organ`` option.

Why: OSE (paper Sec. 2.2) pools the vision tokens of the organ a question is
about. Questions, reports and MedEval-CT speak of 13 organ groups (lungs,
heart, ..., others; ``omnict_cli.segmentation.organ_groups.ORGAN_GROUPS``, the
single source of truth for their names and order), while segmenters speak of label
ids. This module is the one place that translates between the two:

* :data:`TOTALSEG_GROUP_STRUCTURES` splits TotalSegmentator's 117 ``total``
  structures into the 13 groups, every structure in exactly one group;
* :data:`BUILTIN_GROUP_STAND_INS` says which coarse classes of the built-in
  segmenter stand in for a group (its ``mediastinum`` 204 is one blob for
  heart, great vessels and oesophagus, its ``bone`` 203 one for the spine and
  the other bones), so a question still pools a sensible region without
  TotalSegmentator;
* :func:`organ_label_ids` turns groups (or single structures) into the ids of
  a segmenter's vocabulary, ready for ``omnict_cli.model.organ_pooling.organ_ids_mask``;
* :func:`coverage` and :func:`scan_regions` say which groups and body regions
  (chest, abdomen) a label map shows, for defaults and routing;
* :func:`parse_organ_option` reads the user's ``--organ lungs,kidney_left``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

import numpy as np

from omnict_cli.errors import OmnictError
from omnict_cli.segmentation.classes import (
    BUILTIN_EXTRA_IDS,
    TOTALSEG_TOTAL_CLASSES,
    TOTALSEG_TOTAL_IDS,
)
from omnict_cli.segmentation.organ_groups import ORGAN_GROUPS


def _names(*names: str, vertebrae: str = "", ribs: bool = False) -> tuple[str, ...]:
    """Structure names, plus the vertebrae of the given levels ("C7 T1 ...") and the 24 ribs."""
    extra = tuple(f"vertebrae_{level}" for level in vertebrae.split())
    if ribs:
        extra += tuple(f"rib_{side}_{number}" for side in ("left", "right") for number in range(1, 13))
    return names + extra


TOTALSEG_GROUP_STRUCTURES: dict[str, tuple[str, ...]] = {
    "lungs": _names(
        "lung_upper_lobe_left",
        "lung_lower_lobe_left",
        "lung_upper_lobe_right",
        "lung_middle_lobe_right",
        "lung_lower_lobe_right",
    ),
    "heart": _names("heart", "atrial_appendage_left"),
    "liver": _names("liver"),
    "spleen": _names("spleen"),
    "kidneys": _names("kidney_right", "kidney_left", "kidney_cyst_left", "kidney_cyst_right"),
    "pancreas": _names("pancreas"),
    "stomach": _names("stomach"),
    "bowel": _names("small_bowel", "duodenum", "colon"),
    "esophagus": _names("esophagus"),
    "trachea": _names("trachea"),
    "vessels": _names(
        "aorta",
        "pulmonary_vein",
        "brachiocephalic_trunk",
        "subclavian_artery_right",
        "subclavian_artery_left",
        "common_carotid_artery_right",
        "common_carotid_artery_left",
        "brachiocephalic_vein_left",
        "brachiocephalic_vein_right",
        "superior_vena_cava",
        "inferior_vena_cava",
        "portal_vein_and_splenic_vein",
        "iliac_artery_left",
        "iliac_artery_right",
        "iliac_vena_left",
        "iliac_vena_right",
    ),
    "spine": _names(
        "sacrum",
        "spinal_cord",
        vertebrae="S1 L5 L4 L3 L2 L1 T12 T11 T10 T9 T8 T7 T6 T5 T4 T3 T2 T1 C7 C6 C5 C4 C3 C2 C1",
    ),
    "others": _names(
        "gallbladder",
        "adrenal_gland_right",
        "adrenal_gland_left",
        "thyroid_gland",
        "urinary_bladder",
        "prostate",
        "humerus_left",
        "humerus_right",
        "scapula_left",
        "scapula_right",
        "clavicula_left",
        "clavicula_right",
        "femur_left",
        "femur_right",
        "hip_left",
        "hip_right",
        "gluteus_maximus_left",
        "gluteus_maximus_right",
        "gluteus_medius_left",
        "gluteus_medius_right",
        "gluteus_minimus_left",
        "gluteus_minimus_right",
        "autochthon_left",
        "autochthon_right",
        "iliopsoas_left",
        "iliopsoas_right",
        "brain",
        "skull",
        "sternum",
        "costal_cartilages",
        ribs=True,
    ),
}
"""Organ group -> TotalSegmentator ``total`` structures. A partition: each of the 117 structures
is in exactly one group. Choices worth knowing: the kidney cysts count as kidneys; small bowel,
duodenum and colon are "bowel"; the sacrum and spinal cord are "spine"; gallbladder, adrenals,
thyroid, bladder, prostate, all other bones and the muscles are "others". TotalSegmentator has no
lymph-node, pleura or pulmonary-artery class, so those are not in any mask (see the routing docs)."""

BUILTIN_GROUP_STAND_INS: dict[str, tuple[str, ...]] = {
    "lungs": ("lung_left", "lung_right"),
    "heart": ("mediastinum",),
    "esophagus": ("mediastinum",),
    "vessels": ("mediastinum",),
    "spine": ("bone",),
    "others": ("bone",),
}
"""Organ group -> coarse built-in classes that stand in for it. A coarse class may stand in for
several groups: ``mediastinum`` (204) is everything between the lungs (heart, great vessels,
oesophagus), so heart, vessels and esophagus questions pool that whole region; ``bone`` (203) is
every bone, standing in for the spine and for the other bones. ``body`` (200) stands in for
nothing: pooling it would be the whole image, which the global tokens already are. The built-in
segmenter's trachea uses TotalSegmentator's id 16, so it needs no stand-in."""


def _group_ids(group: str) -> tuple[int, ...]:
    exact = [TOTALSEG_TOTAL_IDS[name] for name in TOTALSEG_GROUP_STRUCTURES[group]]
    coarse = [BUILTIN_EXTRA_IDS[name] for name in BUILTIN_GROUP_STAND_INS.get(group, ())]
    return tuple(sorted(exact + coarse))


ORGAN_GROUP_LABELS: dict[str, tuple[int, ...]] = {group: _group_ids(group) for group in ORGAN_GROUPS}
"""Organ group -> label ids in either vocabulary (TotalSegmentator 1..117, built-in 200..204);
e.g. lungs = 10..14 + 201, 202. Use :func:`organ_label_ids` to keep only a segmenter's own ids."""

_KNOWN_NAMES = {**TOTALSEG_TOTAL_CLASSES, **{label_id: name for name, label_id in BUILTIN_EXTRA_IDS.items()}}

STRUCTURE_GROUP: dict[str, str] = {name: group for group, names in TOTALSEG_GROUP_STRUCTURES.items() for name in names}
"""TotalSegmentator structure name -> its organ group."""

REGION_GROUPS: dict[str, tuple[str, ...]] = {
    "chest": ("lungs", "heart", "esophagus", "trachea"),
    "abdomen": ("liver", "spleen", "kidneys", "pancreas", "stomach", "bowel"),
}
"""Body region -> the groups that show a scan covers it. Vessels, spine and others run through
both regions, so they say nothing about which one a scan is."""

MIN_REGION_SHARE = 0.25
"""A region counts as covered when its groups hold at least this share of the chest + abdomen
voxels. A chest CT shows the liver dome and an abdominal CT the lung bases; neither glimpse
should make the scan count as the other region. Measured: the real abdominal test CT
(``ct_chest_small``, TotalSegmentator labels) is 5% chest, phantom chest CTs are 15-23% abdomen
(a chest CT read as chest + abdomen still gets the chest defaults)."""


_OPTION_NAMES = {name.lower(): name for name in (*ORGAN_GROUPS, *TOTALSEG_TOTAL_IDS)}
"""Lower-case ``--organ`` spelling -> canonical group or structure name."""


class OrganOptionError(OmnictError, ValueError):
    """An ``--organ`` value names no organ group or TotalSegmentator structure."""


def structure_group(name: str) -> str:
    """The organ group of a TotalSegmentator structure (``"kidney_left"`` -> ``"kidneys"``)."""
    if name not in STRUCTURE_GROUP:
        raise ValueError(f"unknown TotalSegmentator structure {name!r}")
    return STRUCTURE_GROUP[name]


def organ_label_ids(groups: Iterable[str], vocabulary: Mapping[int, str]) -> list[int]:
    """Sorted label ids of a segmenter's vocabulary that make up a union of organs.

    Why: the same question must pool the lungs whether TotalSegmentator (lobes 10..14) or the
    built-in segmenter (201, 202) made the label map; the result feeds ``organ_ids_mask``.

    Args:
        groups: organ group names (``ORGAN_GROUPS``) and/or TotalSegmentator structure names
            (``"kidney_left"``, as :func:`parse_organ_option` returns them).
        vocabulary: the segmenter's label id -> structure name (``Segmenter.vocabulary``).
            An id is used only when the vocabulary gives it the expected name, so a segmenter
            with other ids for other things never pools the wrong region.

    Returns:
        Ids in ascending order; empty when the vocabulary has none of them (e.g. "liver" with the
        built-in segmenter), which the caller treats as "no organ mask".
    """
    wanted: set[int] = set()
    for item in groups:
        if item in ORGAN_GROUP_LABELS:
            wanted.update(ORGAN_GROUP_LABELS[item])
        elif item in TOTALSEG_TOTAL_IDS:
            wanted.add(TOTALSEG_TOTAL_IDS[item])
        else:
            raise ValueError(f"unknown organ group or structure {item!r}; groups are {', '.join(ORGAN_GROUPS)}")
    return sorted(i for i in wanted if vocabulary.get(i) == _KNOWN_NAMES[i])


def coverage(label_map, vocabulary: Mapping[int, str], min_voxels: int = 1) -> dict[str, int]:
    """Voxel count of every organ group a label map shows, in ``ORGAN_GROUPS`` order.

    Why: routing must not pool an organ the scan does not contain, and the default report
    organs depend on whether the scan is a chest or an abdominal CT.

    Args:
        label_map: integer label map (any shape) made by a segmenter with ``vocabulary``.
        vocabulary: that segmenter's label id -> structure name.
        min_voxels: groups with fewer voxels are left out (stray segmentation specks).

    Returns:
        ``{group: voxels}`` for the groups with at least ``min_voxels``; ``set(result)`` is the
        ``available`` set routing takes. A coarse built-in class counts for every group it
        stands in for. Raises ValueError for a non-integer map or ids outside the vocabulary.
    """
    labels = np.asarray(label_map)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label map must hold integer label ids, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"label map holds negative label id {int(labels.min())}")
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=1)
    present = np.nonzero(counts)[0]
    unknown = sorted(set(present.tolist()) - set(vocabulary) - {0})
    if unknown:
        raise ValueError(f"label map holds ids {unknown[:10]} that are not in the segmenter's vocabulary")
    result = {}
    for group in ORGAN_GROUPS:
        ids = [i for i in organ_label_ids([group], vocabulary) if i < counts.size]
        voxels = int(counts[ids].sum()) if ids else 0
        if voxels >= max(min_voxels, 1):
            result[group] = voxels
    return result


def scan_regions(coverage_groups: Mapping[str, int] | Iterable[str]) -> tuple[str, ...]:
    """Body regions a scan covers: a subset of ``("chest", "abdomen")``, in that order.

    With :func:`coverage`'s voxel counts, a region counts only when it holds at least
    :data:`MIN_REGION_SHARE` of the chest + abdomen voxels (so the lung bases of an abdominal
    CT do not make it a chest CT); with plain group names, any group of a region counts.
    """
    if isinstance(coverage_groups, Mapping):
        region_voxels = {
            region: sum(coverage_groups.get(g, 0) for g in groups) for region, groups in REGION_GROUPS.items()
        }
        total = sum(region_voxels.values())
        return tuple(
            region for region, voxels in region_voxels.items() if voxels > 0 and voxels >= MIN_REGION_SHARE * total
        )
    shown = set(coverage_groups)
    return tuple(region for region, groups in REGION_GROUPS.items() if shown.intersection(groups))


def parse_organ_option(text: str) -> list[str]:
    """Organ names from ``--organ``: ``"Lungs, kidney-left, vertebrae l1"`` -> ``lungs, kidney_left, vertebrae_L1``.

    Accepts the 13 group names and the 117 TotalSegmentator structure names, comma-separated,
    case-insensitive, with ``-`` or spaces for ``_``; returns the canonical spelling (as
    :func:`organ_label_ids` and ``organ_ids_mask`` take it), in the user's order, without repeats.
    Raises :class:`OrganOptionError` (a ValueError) naming the bad value, the valid groups and
    the closest structure names.
    """
    names: list[str] = []
    for raw in str(text).split(","):
        key = "_".join(raw.strip().lower().replace("-", " ").replace("_", " ").split())
        if not key:
            continue
        if key not in _OPTION_NAMES:
            raise _unknown_organ(raw.strip(), key)
        name = _OPTION_NAMES[key]
        if name not in names:
            names.append(name)
    if not names:
        raise OrganOptionError(
            f"--organ {text!r} names no organ", hint=f"Give one or more of: {', '.join(ORGAN_GROUPS)}."
        )
    return names


def _unknown_organ(raw: str, name: str) -> OrganOptionError:
    """The error for one unknown ``--organ`` item, with the closest valid names as suggestions."""
    close = [_OPTION_NAMES[key] for key in difflib.get_close_matches(name, list(_OPTION_NAMES), n=3, cutoff=0.6)]
    suggestion = f" Did you mean {' or '.join(close)}?" if close else ""
    return OrganOptionError(
        f"--organ: unknown organ {raw!r}",
        hint=f"Valid groups: {', '.join(ORGAN_GROUPS)}; or a TotalSegmentator structure name "
        f"such as liver, kidney_left, vertebrae_L1 (117 in all, see docs/organs-and-routing.md).{suggestion}",
    )
