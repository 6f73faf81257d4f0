"""2D pictures (PNG, JPEG, BMP, TIFF) as slice studies, via Pillow.

A picture from a paper or a VQA set is assumed to be an axial slice shown
the way a radiologist reads it (patient right on the image left, anterior
at the top), with unknown pixel size (1 mm is recorded). 8- and 16-bit
pictures hold display grey values, not HU: they are scaled to [0, 1] by
their bit depth. 32-bit integer or float TIFFs are taken to hold HU.
Colour pictures are converted to grey (luminance) with a warning.
"""

from __future__ import annotations

import contextlib
import warnings as warnings_module
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from omnict_cli.errors import StudyLoadError
from omnict_cli.studies.readers.base import LoadOptions, RawImage, check_study_size
from omnict_cli.studies.volume import INTENSITY_DISPLAY, INTENSITY_HU, canonical_affine


def read_picture(path: Path, options: LoadOptions) -> RawImage:
    """Read a 2D picture as a ``(1, H, W)`` slice."""
    warnings = []
    try:
        with _bomb_warnings_as_errors(), Image.open(path) as picture:
            check_study_size((1, picture.height, picture.width), _decoded_dtype(picture), path, options)
            if getattr(picture, "n_frames", 1) > 1:
                warnings.append(f"{picture.n_frames} pages/frames: used the first")
            picture.load()
            pixels, intensity = _grey_pixels(picture, warnings)
    except (PermissionError, FileNotFoundError):
        raise  # OSErrors, but not damage: the loader reports it as "permission denied"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise StudyLoadError(
            f"picture is over Pillow's decompression-bomb limit ({' '.join(str(error).split())})",
            path=path,
            hint="A CT slice is about 512x512 pixels; downscale the picture, or save "
            "it as .npy or NIfTI if it really holds this many",
        ) from error
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise StudyLoadError(
            f"cannot read image ({type(error).__name__}: {error})",
            path=path,
            hint="The file is damaged or not a picture; re-export it",
        ) from error
    warnings.append("2D picture: assumed an axial slice in radiological view, pixel size unknown (1 mm recorded)")
    return RawImage(
        array=pixels[None],
        affine=canonical_affine(),
        source_format=_format(path),
        intensity=intensity,
        meta={"mode": picture.mode},
        warnings=warnings,
    )


@contextlib.contextmanager
def _bomb_warnings_as_errors():
    """Pillow warns for pictures of more than ``Image.MAX_IMAGE_PIXELS`` (about 89 million pixels)
    and refuses them only over twice that; both are refused here, with one message, as no CT slice
    is that big. So the limit is about 89 million pixels (9459 x 9459)."""
    with warnings_module.catch_warnings():
        warnings_module.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _decoded_dtype(picture) -> np.dtype:
    """Pixels are converted to float32 per band before they become grey: the size check counts that."""
    bands = len(picture.getbands())
    return np.dtype(np.float32) if bands == 1 else np.dtype((np.float32, (bands,)))


def _grey_pixels(picture, warnings):
    if picture.mode in ("I", "F"):
        return np.asarray(picture, dtype=np.float32), INTENSITY_HU
    if picture.mode.startswith("I;16"):
        return np.asarray(picture, dtype=np.float32) / 65535.0, INTENSITY_DISPLAY
    if picture.mode in ("1", "L"):
        return np.asarray(picture.convert("L"), dtype=np.float32) / 255.0, INTENSITY_DISPLAY
    rgb = np.asarray(picture.convert("RGB"), dtype=np.float32)
    if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
        warnings.append("colour picture: converted to grey (luminance)")
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return grey / 255.0, INTENSITY_DISPLAY


def _format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"jpg": "jpeg", "tif": "tiff"}.get(suffix, suffix)
