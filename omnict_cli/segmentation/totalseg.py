"""TotalSegmentator as omnict's primary organ segmenter (``total`` task, 117 classes).

TotalSegmentator is an optional extra (``pip install -e ".[seg]"``), so this
module never imports it at import time: :func:`totalsegmentator_status` finds
the package and the ``total`` weights on disk without importing torch-heavy
code or touching the network, and :class:`TotalSegmentatorSegmenter` imports
it only inside :func:`_run_totalsegmentator`, the single call into it.

Three habits of TotalSegmentator shape the code here:

* its home folder is ``$TOTALSEG_HOME_DIR`` (default ``~/.totalsegmentator``)
  and its weights live in ``<home>/nnunet/results`` unless
  ``$TOTALSEG_WEIGHTS_PATH`` says otherwise;
* it downloads missing weights on first use, which fails offline with a
  ``requests`` ``ConnectionError``;
* it posts usage statistics unless ``send_usage_stats`` is false in
  ``<home>/config.json``. omnict turns that off before every call unless the
  user opts in with ``OMNICT_TOTALSEG_USAGE_STATS=1`` (DESIGN.md: nothing
  phones home).

The segmenter hands TotalSegmentator the study at its original resolution,
as an in-memory NIfTI image built from the canonical voxels and their RAS
affine, and maps the label map it returns back to omnict's canonical
``[z, y, x]`` layout on exactly the volume's grid.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

from omnict_cli.atomic import write_text_atomically
from omnict_cli.errors import OmnictError
from omnict_cli.segmentation.base import Segmenter, check_label_map
from omnict_cli.segmentation.classes import TOTALSEG_TOTAL_CLASSES
from omnict_cli.studies.volume import INTENSITY_HU, canonicalize

HOME_ENV = "TOTALSEG_HOME_DIR"
WEIGHTS_ENV = "TOTALSEG_WEIGHTS_PATH"
USAGE_STATS_ENV = "OMNICT_TOTALSEG_USAGE_STATS"
"""Set to 1 to let TotalSegmentator send its usage statistics (off by default)."""

TOTAL_WEIGHT_FOLDERS = {
    False: (
        "Dataset291_TotalSegmentator_part1_organs_1559subj",
        "Dataset292_TotalSegmentator_part2_vertebrae_1532subj",
        "Dataset293_TotalSegmentator_part3_cardiac_1559subj",
        "Dataset294_TotalSegmentator_part4_muscles_1559subj",
        "Dataset295_TotalSegmentator_part5_ribs_1559subj",
    ),
    True: ("Dataset297_TotalSegmentator_total_3mm_1559subj",),
}
"""Weights folders the ``total`` task needs, by ``fast``: five 1.5 mm part models, or one 3 mm model.

A copy of TotalSegmentator's ``map_tasks_config.TASK_ID_WEIGHTS_CONFIGS``
(task ids 291-295 and 297), kept here so the check needs no import of the
package; the test suite compares the two when TotalSegmentator is installed.
"""

_AFFINE_TOLERANCE_MM = 1e-3
"""TotalSegmentator's output affine passes through a float32 NIfTI header."""


class SegmenterUnavailable(OmnictError):
    """TotalSegmentator cannot run here: package or weights missing, offline, or an unusable input.

    The segmenter selection catches it to fall back to the built-in segmenter.
    """


def totalseg_home_dir(home_dir: str | Path | None = None) -> Path:
    """TotalSegmentator's home folder: ``home_dir``, else ``$TOTALSEG_HOME_DIR``, else ``~/.totalsegmentator``.

    Mirrors ``totalsegmentator.config.get_totalseg_dir`` (including its use of
    ``/tmp`` when the home directory is ``/``, as in some containers).
    """
    if home_dir is not None:
        return Path(home_dir).expanduser()
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    user_home = Path("/tmp") if str(Path.home()) == "/" else Path.home()
    return user_home / ".totalsegmentator"


def totalseg_weights_dir(home_dir: str | Path | None = None) -> Path:
    """Where TotalSegmentator keeps its nnU-Net weights: ``$TOTALSEG_WEIGHTS_PATH`` or ``<home>/nnunet/results``."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV]).expanduser()
    return totalseg_home_dir(home_dir) / "nnunet" / "results"


def _installed_version() -> str | None:
    """TotalSegmentator's version when it is importable, else None; imports nothing from it."""
    if importlib.util.find_spec("totalsegmentator") is None:
        return None
    try:
        return importlib.metadata.version("TotalSegmentator")
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_weight_folders(fast: bool = False, home_dir: str | Path | None = None) -> list[str]:
    """Names of the ``total`` (or ``total --fast``) weights folders not present in the weights folder.

    A folder counts as present when it holds a ``checkpoint_final.pth``
    somewhere inside, so a half-copied folder is reported as missing.
    """
    weights_dir = totalseg_weights_dir(home_dir)
    return [
        name
        for name in TOTAL_WEIGHT_FOLDERS[bool(fast)]
        if next((weights_dir / name).rglob("checkpoint_final.pth"), None) is None
    ]


def _install_hint() -> str:
    """How to get TotalSegmentator, for the not-installed messages."""
    return (
        'Install it with pip install -e ".[seg]" in the omnict folder (see docs/segmentation-totalseg.md '
        "to keep your torch), or use the built-in segmenter"
    )


def _offline_hint(fast: bool, home_dir: str | Path | None) -> str:
    """What to do without internet; names the folders and the env variables TotalSegmentator reads."""
    task = "total_fast" if fast else "total"
    return (
        f"Set {HOME_ENV} (now {totalseg_home_dir(home_dir)}) to a folder holding the weights: "
        f"copy the weights folder ({totalseg_weights_dir(home_dir)}) from a machine with internet, "
        f"or run `totalseg_download_weights -t {task}` there or here when online "
        f"({WEIGHTS_ENV} overrides the weights folder)"
    )


def totalsegmentator_status(fast: bool = False, home_dir: str | Path | None = None) -> tuple[bool, str]:
    """Whether TotalSegmentator can segment here without a download, and a message saying why (not).

    Checks that the package is importable and the ``total`` weights folders
    exist; imports no torch code and makes no network call, so the segmenter
    selection can ask it cheaply for every run.
    """
    version = _installed_version()
    if version is None:
        return False, f"TotalSegmentator is not installed. {_install_hint()}"
    missing = missing_weight_folders(fast, home_dir)
    mode = "total --fast" if fast else "total"
    if missing:
        return False, (
            f"TotalSegmentator {version} has no '{mode}' weights in {totalseg_weights_dir(home_dir)} "
            f"(missing {', '.join(missing)}). {_offline_hint(fast, home_dir)}"
        )
    return True, f"TotalSegmentator {version} with '{mode}' weights in {totalseg_weights_dir(home_dir)}"


def usage_stats_opted_in() -> bool:
    """True when the user asked, through ``OMNICT_TOTALSEG_USAGE_STATS``, to let TotalSegmentator send statistics."""
    return os.environ.get(USAGE_STATS_ENV, "").strip().lower() in ("1", "true", "yes")


def disable_usage_stats(home_dir: str | Path | None = None) -> Path:
    """Make sure ``<home>/config.json`` says ``send_usage_stats: false``; returns the config path.

    Keeps every other key. A new config gets the keys TotalSegmentator's own
    ``setup_totalseg`` would write, so its tools keep working, and marks its
    statistics disclaimer as shown (it would claim statistics are sent).
    Raises SegmenterUnavailable naming the file when it is not valid JSON
    or cannot be written.
    """
    home = totalseg_home_dir(home_dir)
    config_path = home / "config.json"
    config = _read_config(config_path)
    if config.get("send_usage_stats") is False:
        return config_path
    if not config:
        config = {"totalseg_id": "totalseg_" + os.urandom(4).hex().upper(), "prediction_counter": 0}
        config["statistics_disclaimer_shown"] = True
    config["send_usage_stats"] = False
    try:
        home.mkdir(parents=True, exist_ok=True)
        _write_json_atomically(config_path, config)
    except OSError as error:
        raise SegmenterUnavailable(
            f"cannot write TotalSegmentator's config ({error.strerror or error})",
            path=config_path,
            hint=f"Set {HOME_ENV} to a writable folder",
        ) from error
    return config_path


def _read_config(config_path: Path) -> dict:
    """The config as a dict; empty when the file does not exist yet."""
    if not config_path.exists():
        return {}
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SegmenterUnavailable(
            f"TotalSegmentator's config cannot be read ({error})",
            path=config_path,
            hint="Fix the JSON or delete the file; it is recreated",
        ) from error
    if not isinstance(config, dict):
        raise SegmenterUnavailable(
            "TotalSegmentator's config is not a JSON object",
            path=config_path,
            hint="Fix the JSON or delete the file; it is recreated",
        )
    return config


def _write_json_atomically(path: Path, data: dict) -> None:
    """Rename a complete file over ``path``, so a crash never leaves half a config."""
    write_text_atomically(path, json.dumps(data, indent=4))


def totalseg_device(device: str = "auto") -> str:
    """Translate a device name into one TotalSegmentator accepts (``cpu``, ``gpu``, ``gpu:N``, ``mps``).

    ``auto`` picks ``gpu`` when torch sees CUDA, else ``cpu``; torch-style
    ``cuda`` and ``cuda:N`` become ``gpu`` and ``gpu:N``.
    """
    name = str(device).strip().lower()
    if name == "auto":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if name in ("cpu", "gpu", "mps"):
        return name
    if name == "cuda":
        return "gpu"
    match = re.fullmatch(r"(?:gpu|cuda):(\d+)", name)
    if match:
        return f"gpu:{int(match.group(1))}"
    raise OmnictError(
        f"unknown device {device!r} for TotalSegmentator", hint="Use auto, cpu, gpu, gpu:N, cuda, cuda:N or mps"
    )


@contextlib.contextmanager
def _totalseg_home_environment(home_dir: str | Path | None):
    """Point ``$TOTALSEG_HOME_DIR`` at ``home_dir`` for the duration of one call, then restore it.

    TotalSegmentator reads its home only from the environment, at call time.
    """
    if home_dir is None:
        yield
        return
    previous = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(totalseg_home_dir(home_dir))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = previous


def _run_totalsegmentator(image: nib.Nifti1Image, *, fast: bool, device: str, quiet: bool) -> nib.Nifti1Image:
    """The one call into TotalSegmentator: ``total`` task, multilabel, returns a label image on ``image``'s grid.

    This is the weights and network boundary (tests replace it). Its prints
    go to stderr so they never mix with omnict's ``--json`` output on stdout.
    """
    from totalsegmentator.python_api import totalsegmentator

    with contextlib.redirect_stdout(sys.stderr):
        return totalsegmentator(image, None, ml=True, fast=fast, task="total", device=device, quiet=quiet)


def volume_to_nifti(volume) -> nib.Nifti1Image:
    """An in-memory NIfTI image of the canonical HU voxels; their affine already maps indices to RAS mm."""
    image = nib.Nifti1Image(volume.hu, np.asarray(volume.affine, dtype=np.float64))
    image.header.set_xyzt_units(xyz="mm")
    return image


def canonical_labels(result: nib.Nifti1Image, volume, segmenter: Segmenter) -> np.ndarray:
    """TotalSegmentator's label image reoriented to canonical, checked to sit exactly on ``volume``'s grid."""
    labels, affine = canonicalize(np.asanyarray(result.dataobj), result.affine)
    if labels.shape != volume.shape or not np.allclose(affine, volume.affine, rtol=0, atol=_AFFINE_TOLERANCE_MM):
        raise ValueError(
            f"{segmenter.describe()} returned a label map on another grid "
            f"(shape {labels.shape}, affine {np.round(affine, 3).tolist()}) "
            f"than its input (shape {volume.shape}, affine {np.round(volume.affine, 3).tolist()})"
        )
    return np.ascontiguousarray(check_label_map(labels, volume, segmenter))


class TotalSegmentatorSegmenter(Segmenter):
    """Organ label maps from TotalSegmentator's ``total`` task, on the study's own grid.

    Args:
        fast: use the single 3 mm model (``--fast``) instead of the five 1.5 mm
            models; coarser masks, several times faster, different weights.
        device: ``auto`` (GPU when torch sees CUDA, else CPU), ``cpu``,
            ``gpu``, ``gpu:N``, ``cuda``, ``cuda:N`` or ``mps``. Not part of
            :meth:`options`: it does not change the masks meant to be cached.
        home_dir: TotalSegmentator's home folder (config and weights); default
            ``$TOTALSEG_HOME_DIR`` or ``~/.totalsegmentator``.
        quiet: silence TotalSegmentator's progress messages.
        allow_download: let TotalSegmentator download missing weights from
            GitHub; off by default, as nothing in omnict downloads unless asked.

    Nothing here needs TotalSegmentator until :attr:`version` or
    :meth:`segment` is used; both raise :class:`SegmenterUnavailable` with
    the fix when it is missing.
    """

    name = "totalsegmentator"

    def __init__(
        self,
        fast: bool = False,
        device: str = "auto",
        home_dir: str | Path | None = None,
        quiet: bool = True,
        allow_download: bool = False,
    ):
        self.fast = bool(fast)
        self.device = totalseg_device(device)
        self.home_dir = None if home_dir is None else Path(home_dir).expanduser()
        self.quiet = bool(quiet)
        self.allow_download = bool(allow_download)

    @property
    def version(self) -> str:
        """The installed TotalSegmentator version; it goes into the mask cache key."""
        version = _installed_version()
        if version is None:
            raise SegmenterUnavailable("TotalSegmentator is not installed", hint=_install_hint())
        return version

    @property
    def vocabulary(self) -> dict[int, str]:
        return TOTALSEG_TOTAL_CLASSES

    def options(self) -> dict:
        return {"fast": self.fast}

    def segment(self, volume) -> np.ndarray:
        """Label map of ``volume`` (canonical ``[z, y, x]``, uint8, TotalSegmentator ``total`` ids).

        Raises SegmenterUnavailable when the package or weights are missing
        (and downloads are not allowed), when a download fails offline, or
        when the volume is not a 3D CT in HU.
        """
        _check_segmentable(volume)
        needs_download = self._check_ready()
        if not usage_stats_opted_in():
            disable_usage_stats(self.home_dir)
        try:
            with _totalseg_home_environment(self.home_dir):
                result = _run_totalsegmentator(
                    volume_to_nifti(volume), fast=self.fast, device=self.device, quiet=self.quiet
                )
        except (OSError, zipfile.BadZipFile) as error:
            if not needs_download:
                raise
            raise SegmenterUnavailable(
                f"TotalSegmentator could not download its weights ({error})",
                hint=_offline_hint(self.fast, self.home_dir),
            ) from error
        return canonical_labels(result, volume, self)

    def _check_ready(self) -> bool:
        """Raise unless TotalSegmentator can run; returns whether it will have to download weights."""
        available, message = totalsegmentator_status(self.fast, self.home_dir)
        if available:
            return False
        if self.allow_download and _installed_version() is not None:
            return True
        raise SegmenterUnavailable(message)


def _check_segmentable(volume) -> None:
    """TotalSegmentator segments 3D CT in Hounsfield units; say so for slices and display images."""
    if volume.intensity != INTENSITY_HU:
        raise SegmenterUnavailable(
            f"TotalSegmentator needs CT in Hounsfield units; this {volume.source_format} "
            "image holds display grey values",
            hint="Use the built-in segmenter",
        )
    if volume.kind != "volume":
        raise SegmenterUnavailable(
            f"TotalSegmentator segments 3D volumes; this {volume.source_format} input is a single {volume.kind}",
            hint="Use the built-in segmenter",
        )
