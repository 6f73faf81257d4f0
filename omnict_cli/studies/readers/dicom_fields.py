"""Read DICOM files and their header fields defensively, so damaged bytes become one clear line.

pydicom parses lazily and raises many exception types on hostile bytes
(``struct.error`` for a file cut inside an element, ``BytesLengthException``,
``KeyError`` for an unknown VR, ``TypeError`` for a value with two numbers
where one is due, ...). Two functions stand between it and the rest of omnict:

* :func:`read_dataset` opens a file with pydicom's stop conditions
  (``stop_before_pixels``, deferred large values) and turns every failure
  into a :class:`~omnict_cli.errors.StudyLoadError` naming the file;
* :func:`field_value` converts one header field to text, whole numbers or
  finite floats, with the number of values checked, and raises a
  ``StudyLoadError`` naming the file and the field when the value is not
  what DICOM promises.

pydicom's own value validation (a warning plus a console log line per
invalid value) is turned off while omnict reads, by :func:`quiet_pydicom`:
each value omnict uses is either converted or reported by
:func:`field_value`, so pydicom's lines would only repeat it, without the
file name.
"""

from __future__ import annotations

import contextlib
import math
import struct
import warnings
from pathlib import Path

import pydicom
import pydicom.config

from omnict_cli.errors import StudyLoadError
from omnict_cli.studies.readers.base import permission_denied

DAMAGED_HINT = "The file is damaged or not DICOM; re-export the series, or remove the file"
FIELD_HINT = "The header value is damaged or non-standard; re-export the series, or remove the file"

HEADER_DEFER_SIZE = "2 KB"
"""Header scans leave values larger than this unread (pixels, overlays, private blobs)."""


@contextlib.contextmanager
def quiet_pydicom():
    """pydicom without value validation and its warnings, for the duration of a read."""
    with pydicom.config.disable_value_validation(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def read_dataset(path: Path, *, header_only: bool = False, force: bool = True):
    """``pydicom.dcmread`` that names the file on any failure.

    ``header_only`` reads without pixel data (values over
    :data:`HEADER_DEFER_SIZE` are deferred, so a flipped length field cannot
    make the scan read gigabytes). ``force`` reads files without the
    ``DICM`` preamble.
    """
    options = {"defer_size": HEADER_DEFER_SIZE} if header_only else {}
    try:
        with quiet_pydicom():
            return pydicom.dcmread(path, force=force, **options)
    except PermissionError as error:  # an OSError, but not damage: say what to do about it
        raise permission_denied(path) from error
    except (FileNotFoundError, MemoryError):
        raise  # not damage: the loader names a vanished file
    except Exception as error:  # pydicom raises a dozen types on damaged bytes; all mean "unreadable"
        raise StudyLoadError(f"cannot read DICOM ({describe_error(error)})", path=path, hint=DAMAGED_HINT) from error


def field_value(dataset, keyword: str, path: Path, kind: type = str, *, count: int = 1, default=None):
    """One header field as ``kind`` (``str``, ``int`` or ``float``), checked.

    Returns ``default`` when the field is absent or empty. ``count`` is the
    number of values DICOM defines for it: 1 gives a scalar, more give a
    tuple, ``0`` accepts any number of values (a tuple). Floats must be
    finite. Anything else raises ``StudyLoadError`` naming the file and
    the field.
    """
    try:
        with quiet_pydicom():
            raw = dataset.get(keyword)
            raw_value = None if raw is None else getattr(raw, "value", raw)
            values = _as_list(raw_value)
    except MemoryError:
        raise
    except Exception as error:  # pydicom converts lazily: a damaged element fails on first access
        raise StudyLoadError(
            f"header field {keyword} cannot be read ({describe_error(error)})", path=path, hint=FIELD_HINT
        ) from error
    if not values:
        return default
    if count and len(values) != count:
        raise StudyLoadError(
            f"header field {keyword} has {len(values)} values ({_shown(values)}), expected {count}",
            path=path,
            hint=FIELD_HINT,
        )
    converted = tuple(_convert(value, kind, keyword, path) for value in values)
    return converted[0] if count == 1 else converted


def uid_name(uid: str) -> str:
    """The registered name of a UID ("CT Image Storage"), the UID itself when unknown, "" for none."""
    if not uid:
        return ""
    with quiet_pydicom():
        return str(pydicom.uid.UID(uid).name)


def has_pixel_data(dataset) -> bool:
    """True when the dataset holds an image (integer, float or double pixel data)."""
    with quiet_pydicom():
        return any(keyword in dataset for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _as_list(value) -> list:
    """A pydicom value as a list of single values; bytes (unknown VR) are split like text."""
    if value is None:
        return []
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace").strip(" \0")
        return [part.strip() for part in value.split("\\")] if value else []
    if isinstance(value, str):
        value = value.strip(" \0")
        return [part.strip() for part in value.split("\\")] if value else []
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [v for v in value if not (isinstance(v, str) and not v.strip())]
    return [value]


def _convert(value, kind: type, keyword: str, path: Path):
    if kind is str:
        return str(value).strip()
    try:
        number = float(value) if kind is float else _whole_number(value)
    except (TypeError, ValueError, OverflowError):
        raise StudyLoadError(
            f"header field {keyword} is {_shown([value])}, not a number", path=path, hint=FIELD_HINT
        ) from None
    if kind is float and not math.isfinite(number):
        raise StudyLoadError(
            f"header field {keyword} is {_shown([value])}, not a finite number", path=path, hint=FIELD_HINT
        )
    return number


def _whole_number(value) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def _shown(values) -> str:
    """Values for a message: short, one line, no control characters."""
    text = "\\".join(str(v) for v in values)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def describe_error(error: Exception) -> str:
    """``Type: message`` on one line, cut to a readable length."""
    if isinstance(error, (struct.error, EOFError)):
        return "the file ends inside a header element, or a length field is wrong: it is truncated or damaged"
    message = " ".join(str(error).split())
    if len(message) > 160:
        message = message[:157] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
