"""Discover studies in a folder: one per NIfTI/NRRD/MHA file, DICOM series or picture.

The walk is recursive, follows symlinked folders once (a symlink loop is
reported, not followed forever), and never stops on a bad file: problems
found while walking become studies with a ``problem`` so that every
command can report them as one line and carry on.

Study ids follow :mod:`omnict_cli.study_ids`: the path relative to the
root, suffix kept (``chest/case_001.nii.gz``), so adding a file never
renames another study; a DICOM series is named by its folder, with
``#series<N>`` (or a short hash of its series key) added when one folder
holds several series; a one-file DICOM series (a single-frame slice) is
named like any single file. Paths are taken as given, symlinks unresolved,
so a pseudonymous link keeps its own name.
Pixel data is not read here; DICOM headers are (to group files into
series, by folder and SeriesInstanceUID: two copies of a series in two
folders are two studies). A file whose header is damaged is its own
problem study; its series loads without it. FIFOs, sockets and devices
are reported without being opened.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from omnict_cli.errors import StudyLoadError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NUMPY_SUFFIXES = (".npy",)
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
IGNORED_NAMES = {"DICOMDIR", ".DS_Store", "Thumbs.db"}
IGNORED_SUFFIXES = (
    ".raw",
    ".zraw",
    ".json",
    ".csv",
    ".txt",
    ".md",
    ".jsonl",
    ".xml",
    ".html",
    ".pdf",
    ".py",
    ".yaml",
    ".yml",
    ".log",
    ".gz.tmp",
)


@dataclass(frozen=True)
class Study:
    """One thing to load: a file, or the files of one DICOM series.

    Attributes:
        study_id: stable id from the relative path (see module docs).
        format: ``nifti``, ``dicom``, ``nrrd``, ``mha``, ``mhd``, ``png``, ``jpeg``, ...
        paths: the file(s); a DICOM series lists its files sorted by name.
        root: the folder discovery started from.
        problem: set when discovery already knows the study cannot load.
        notes: facts found while grouping (e.g. localizers left out).
        hint: what the user can do about ``problem``; kept apart from it so
            the error line reads ``<file>: <problem>. <hint>`` like every
            load error (a problem found while walking is reported later,
            when the study is loaded).
    """

    study_id: str
    format: str
    paths: tuple[Path, ...]
    root: Path
    problem: str | None = None
    notes: tuple[str, ...] = field(default=())
    hint: str = ""

    @property
    def input(self) -> str:
        """What the record's ``input`` shows: the file, or the series' folder."""
        target = self.paths[0].parent if self.format == "dicom" and len(self.paths) > 1 else self.paths[0]
        return _relative(target, self.root)


def discover_studies(root: str | Path) -> list[Study]:
    """Find every study under ``root`` (a folder or a single file), sorted by id."""
    root = Path(root)
    if not root.exists() and not root.is_symlink():
        raise StudyLoadError("no such file or folder", path=root, hint="Check the path")
    if root.is_file():
        return _single_file_studies(root)
    if not root.is_dir():
        special = _special_file_study(root, root.parent)
        return [special] if special else []
    files, problems = _walk(root)
    studies = list(problems)
    dicom_candidates = []
    for path in files:
        kind = _format_from_name(path)
        if kind == "ignored":
            continue
        if kind in ("dicom", "unknown"):
            dicom_candidates.append((path, kind == "dicom"))
            continue
        studies.append(Study(_relative(path, root), kind, (path,), root))
    studies.extend(_dicom_studies(dicom_candidates, root))
    return sorted(studies, key=lambda s: s.study_id)


def _single_file_studies(path: Path) -> list[Study]:
    kind = _format_from_name(path)
    if kind in ("ignored", "unknown"):
        from omnict_cli.studies.readers.base import PERMISSION_HINT
        from omnict_cli.studies.readers.dicom import has_dicom_preamble

        try:
            kind = "dicom" if has_dicom_preamble(path) else kind
        except PermissionError:
            return [
                Study(
                    path.name,
                    "unknown",
                    (path,),
                    path.parent,
                    problem="permission denied: cannot read the file to tell whether it is DICOM",
                    hint=PERMISSION_HINT,
                )
            ]
        except OSError:
            pass
    if kind in ("ignored", "unknown"):
        return [
            Study(
                path.name,
                "unknown",
                (path,),
                path.parent,
                problem="not a supported image format (NIfTI, DICOM, NRRD/MHA, PNG/JPEG/BMP/TIFF, .npy)",
            )
        ]
    return [Study(path.name, kind, (path,), path.parent)]


def _walk(root: Path):
    """All regular files under root; unreadable folders and link loops as problem studies."""
    files, problems, seen = [], [], set()

    def on_error(error: OSError):
        where = Path(error.filename) if error.filename else root
        problems.append(
            _problem_study(
                where,
                root,
                f"cannot list folder ({error.strerror or error})",
                "Make the folder readable for this user (chmod/chown); the rest was walked",
            )
        )

    for folder, subfolders, names in os.walk(root, onerror=on_error, followlinks=True):
        folder_path = Path(folder)
        try:
            identity = (os.stat(folder_path).st_dev, os.stat(folder_path).st_ino)
        except OSError as error:
            on_error(error)
            subfolders[:] = []
            continue
        if identity in seen:
            problems.append(
                _problem_study(
                    folder_path,
                    root,
                    "symlink loop: this folder was already visited, not followed again",
                    "Nothing is lost; remove the link if it should not be there",
                )
            )
            subfolders[:] = []
            continue
        seen.add(identity)
        followed = [name for name in subfolders if not _links_to_ancestor(folder_path / name, root, problems)]
        subfolders[:] = sorted(followed)
        for name in sorted(names):
            path = folder_path / name
            if name.startswith("._") or name in IGNORED_NAMES:
                continue
            if path.is_symlink() and not path.exists():
                problems.append(
                    _problem_study(path, root, "broken symlink: its target does not exist", "Fix or remove the link")
                )
                continue
            special = _special_file_study(path, root)
            if special:
                problems.append(special)
                continue
            files.append(path)
    return files, problems


def _problem_study(path: Path, root: Path, problem: str, hint: str = "") -> Study:
    """A study under ``root`` that cannot be loaded, named by its relative path, with what is wrong."""
    return Study(_relative(path, root), "unknown", (path,), root, problem=problem, hint=hint)


def _links_to_ancestor(subfolder: Path, root: Path, problems: list) -> bool:
    """True (with a problem study) for a symlinked folder whose target contains it: following it walks back up.

    ``up -> ..`` at the top of the walk would otherwise lead into the parent
    tree, outside the folder the user named, before the loop check saw it.
    """
    if not subfolder.is_symlink():
        return False
    target, here = os.path.realpath(subfolder), os.path.realpath(subfolder.parent)
    if here != target and not here.startswith(target.rstrip(os.sep) + os.sep):
        return False
    problems.append(
        _problem_study(
            subfolder,
            root,
            "symlink to a folder that contains it (a loop or an ancestor), not followed",
            "Nothing under the named folder is lost; remove the link if it should not be there",
        )
    )
    return True


_SPECIAL_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _special_file_study(path: Path, root: Path) -> Study | None:
    """A problem study for a FIFO, socket or device, found from ``stat`` alone.

    Such a file is never opened: reading a named pipe waits for a writer
    forever, and a device can be endless. None for regular files (and for
    anything ``stat`` cannot see, which the readers then report).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for is_kind, kind in _SPECIAL_FILE_KINDS:
        if is_kind(mode):
            return _problem_study(
                path,
                root,
                f"{kind}, not a regular file: skipped without opening it",
                "Only regular files are read; remove it from the folder or ignore this line",
            )
    return None


def _format_from_name(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(ITK_SUFFIXES):
        from omnict_cli.studies.readers.itk import FORMAT_BY_SUFFIX

        return FORMAT_BY_SUFFIX[path.suffix.lower()]
    if name.endswith(PICTURE_SUFFIXES):
        suffix = path.suffix.lower().lstrip(".")
        return {"jpg": "jpeg", "tif": "tiff"}.get(suffix, suffix)
    if name.endswith(NUMPY_SUFFIXES):
        return "npy"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(IGNORED_SUFFIXES) or name.startswith("."):
        return "ignored"
    return "unknown"


def _dicom_studies(candidates, root: Path) -> list[Study]:
    """Group DICOM files into series; files without a DICOM preamble are skipped silently
    unless their name says DICOM. A file that cannot be opened is reported, not skipped:
    it may be a slice of a series, and a silently shorter series is worse than a line."""
    from omnict_cli.studies.readers.base import PERMISSION_HINT
    from omnict_cli.studies.readers.dicom import has_dicom_preamble, read_header

    groups: dict[tuple, list] = defaultdict(list)
    studies, skipped = [], defaultdict(list)
    for path, named_dicom in candidates:
        study_id = _relative(path, root)
        try:
            if not named_dicom and not has_dicom_preamble(path):
                continue
        except PermissionError:
            studies.append(
                Study(
                    study_id,
                    "unknown",
                    (path,),
                    root,
                    problem="permission denied: cannot read the file to tell whether it is DICOM",
                    hint=PERMISSION_HINT,
                )
            )
            continue
        except OSError:
            continue
        try:
            if path.stat().st_size == 0:
                raise StudyLoadError("empty file (0 bytes)", path=path, hint="Re-export it or remove it")
            header = read_header(path)
        except StudyLoadError as error:
            studies.append(Study(study_id, "dicom", (path,), root, problem=error.message, hint=error.hint))
            continue
        if header.is_localizer:
            skipped[path.parent].append("localizer")
            continue
        if not header.has_pixels:
            studies.append(
                Study(
                    study_id,
                    "dicom",
                    (path,),
                    root,
                    problem=f"DICOM file has no pixel data ({header.sop_class or header.modality or 'no SOP class or modality given'})",
                    hint="It is not an image (report, structure set, ...), so there is nothing to "
                    "load; leave it out of the folder or ignore this line",
                )
            )
            continue
        groups[header.series_key(path.parent)].append(header)
    studies.extend(_name_series(groups, root, skipped))
    return studies


def _name_series(groups, root: Path, skipped) -> list[Study]:
    """A one-file series (a single-frame slice) is named like any single file;
    a multi-file series by its folder, plus ``#series<N>`` (or a hash of its
    series key) when the folder holds several."""
    by_folder = defaultdict(list)
    studies = []
    for key, headers in groups.items():
        headers = sorted(headers, key=lambda h: h.path.name)
        if len(headers) == 1:
            path = headers[0].path
            studies.append(Study(_relative(path, root), "dicom", (path,), root))
            continue
        folder = Path(os.path.commonpath([str(h.path.parent) for h in headers]))
        by_folder[folder].append((key, headers))
    for folder, series in by_folder.items():
        base = _relative(folder, root) if folder != root else _root_name(root)
        numbers = [headers[0].series_number for _, headers in series]
        for key, headers in series:
            study_id = base
            if len(series) > 1:
                number = headers[0].series_number
                suffix = (
                    f"series{number}"
                    if number and numbers.count(number) == 1
                    else hashlib.sha1(repr(key).encode()).hexdigest()[:8]
                )
                study_id = f"{base}#{suffix}"
            notes = (f"{len(skipped[folder])} localizer image(s) left out",) if skipped.get(folder) else ()
            studies.append(Study(study_id, "dicom", tuple(h.path for h in headers), root, notes=notes))
    return studies


def _relative(path: Path, root: Path) -> str:
    try:
        relative = path.relative_to(root)
    except ValueError:
        relative = Path(os.path.relpath(path, root))
    text = relative.as_posix()
    return text if text != "." else _root_name(root)


def _root_name(root: Path) -> str:
    """The name the user gave the root, not its target's: a pseudonymous symlink
    (``pseudo_017 -> /archive/MRN123456``) keeps its own name as the study id."""
    return Path(os.path.abspath(root)).name or str(root)


def single_study(path: str | Path) -> Study:
    """The one study at ``path`` (a file, or a folder holding one DICOM series), for a question or training row.

    Raises StudyLoadError when ``path`` holds no study or several.
    """
    studies = discover_studies(path)
    if len(studies) != 1:
        raise StudyLoadError(
            f"holds {len(studies)} studies; an image must be one file or one DICOM series",
            path=path,
            hint="Point it at one file or one DICOM series folder",
        )
    return studies[0]
