"""How studies are named, and how a name is matched to a reference: the one rule every command uses.

**Study id.** A study's id is its path relative to the folder the run was
given, in POSIX form, exactly as on disk (suffix kept):
``phantoms/volumes/case_0002.nii.gz``. A DICOM series is named by its
folder (``chest/series_a``), plus ``#series<N>`` when one folder holds
several series. A single file given on the command line is named by its file
name. Because no two files share a path, ids never have to be made unique
after the fact, so adding ``case.nii`` beside ``case.nii.gz`` leaves the
existing study's id (and its record in a resumed findings file) as it was.
``report``, ``ask --batch`` (the ``image`` path as the row gives it),
``segment`` and ``review`` all name studies this way.

**Join key.** ``score`` and ``review --references`` match a study to a
reference by its *join key*: the last path part without its image suffix
(``phantoms/volumes/case_0002.nii.gz`` -> ``case_0002``), case kept, so a
CT-RATE ``VolumeName`` (``case_0002.nii.gz`` or ``case_0002``) finds it.
When several studies share a key (``ct_chest_small.nii.gz`` and
``ct_chest_small.nrrd``), see :mod:`omnict_cli.metrics.score_files` for
how the join decides.
"""

from __future__ import annotations

IMAGE_SUFFIXES = (
    ".nii.gz",
    ".nii",
    ".nrrd",
    ".nhdr",
    ".mha",
    ".mhd",
    ".dcm",
    ".dicom",
    ".ima",
    ".npy",
    ".npz",
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
)
"""Suffixes the join key drops (longest first where one ends another: ``.nii.gz`` before ``.nii``)."""


def without_image_suffix(name: str) -> str:
    """``name`` without a trailing image suffix (any case); a name that is only a suffix is kept."""
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def join_key(name: str) -> str:
    """The key a study or reference name is joined by: last path part without its image suffix."""
    base = str(name).strip().replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return without_image_suffix(base)


def mask_file_name(study_id: str) -> str:
    """``<study id>.nii.gz`` for a label map written beside others, with no doubled suffix.

    An id that already ends in ``.nii.gz`` is used as is; any other id gets
    ``.nii.gz`` appended (``ct_chest_small.nrrd`` -> ``ct_chest_small.nrrd.nii.gz``),
    so two studies never share a mask file.
    """
    return study_id if study_id.lower().endswith(".nii.gz") else f"{study_id}.nii.gz"
