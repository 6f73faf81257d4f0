"""Paper-exact preprocessing: window, resample, scale, compose 3-slice units.

OmniCT (Appendix E) windows CT to [-1000, 1000] HU, resamples volumes to
32x384x384 and feeds SigLIP values in [-1, 1] (HU / 1000). Volumetric Slice
Composition (Sec. 2.1) stacks slices (3i, 3i+1, 3i+2) as the three colour
channels of unit i, so a 32-slice volume gives N_s = floor(32 / 3) = 10
units; a 2D slice is copied into all three channels (one unit). Training and
inference both call :func:`preprocess_volume`; every size comes from one
:class:`PreprocessConfig`, which the model configuration builds.

Interpolation: linear along each axis with pixel centres aligned
(``align_corners=False``), i.e. trilinear for volumes and bilinear for
slices, with **anti-aliasing** when shrinking: the linear (triangle) kernel
is widened by the shrink factor, as PIL and ``torch`` ``antialias=True`` do.
Why: plain trilinear from 300 slices to 32 reads only the two slices next
to each of 32 sample points, about 2 of every 9 slices, so a small lesion
between sample points disappears. ``benchmarks/research/nodule_aliasing.py``
measures it on a phantom: a 5 mm nodule (0 HU in -850 HU lung, 850 HU of
contrast, 1.5 mm slices) swept over 40 sub-slice positions. Plain
trilinear keeps between 0 and 850 HU of contrast (median 60): at the
worst positions the nodule is gone. The anti-aliased kernel keeps 148 to
286 HU (median 220) at every position; partial-volume dilution is the
honest price of 14 mm output slices. A 10 mm nodule can vanish too under
plain trilinear (minimum 0 HU) and keeps at least 307 HU here. Hence
anti-aliasing is the default; ``antialias=False`` reproduces plain
trilinear resizing (e.g. to match a checkpoint trained
that way). Label maps always use nearest neighbour.

The HU window is applied before resampling, so metal (>3000 HU) does not
bleed into neighbouring tissue through the anti-aliasing kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # imported lazily: the model config builds PreprocessConfig on GPU hosts without nibabel
    from omnict_cli.studies.volume import Volume

_SLAB_BYTES = 8 * 2**20  # float32 input slices converted at once by the slice-axis pass


@dataclass(frozen=True)
class PreprocessConfig:
    """Every preprocessing size and choice, in one place.

    Attributes:
        hu_window: HU range kept; values outside are clipped, the range maps to [-1, 1].
        volume_size: ``(D, H, W)`` every volume is resampled to.
        slice_size: ``(H, W)`` every 2D slice is resized to.
        slices_per_unit: slices stacked as channels of one unit (VSC).
        antialias: widen the linear kernel when shrinking (see module docs).
    """

    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    volume_size: tuple[int, int, int] = (32, 384, 384)
    slice_size: tuple[int, int] = (384, 384)
    slices_per_unit: int = 3
    antialias: bool = True

    def __post_init__(self):
        if len(self.hu_window) != 2:
            raise ValueError(f"hu_window must be (low, high), got {self.hu_window}")
        low, high = self.hu_window
        if not high > low:
            raise ValueError(f"hu_window must be (low, high) with high > low, got {self.hu_window}")
        if len(self.volume_size) != 3 or min(self.volume_size) < 1:
            raise ValueError(f"volume_size must be three positive sizes (D, H, W), got {self.volume_size}")
        if len(self.slice_size) != 2 or min(self.slice_size) < 1:
            raise ValueError(f"slice_size must be two positive sizes (H, W), got {self.slice_size}")
        if not 1 <= self.slices_per_unit <= self.volume_size[0]:
            raise ValueError(f"slices_per_unit must be in 1..{self.volume_size[0]}, got {self.slices_per_unit}")

    @property
    def units_per_volume(self) -> int:
        """N_s = floor(D / slices_per_unit): 10 for the paper's D = 32."""
        return self.volume_size[0] // self.slices_per_unit


@dataclass
class ModelInput:
    """A study ready for the vision encoder.

    Attributes:
        units: float32 ``[N_s, 3, H, W]`` in [-1, 1]; N_s = 1 for a slice.
        kind: ``"volume"`` or ``"slice"``.
        grid_spacing: mm per voxel of the resampled ``(D, H, W)`` grid.
        label_map: organ labels on the same grid, ``[D, H, W]`` (``[1, H, W]``
            for a slice), when one was given.
    """

    units: np.ndarray
    kind: str
    grid_spacing: tuple[float, float, float]
    label_map: np.ndarray | None = None


def preprocess_volume(
    volume: Volume, config: PreprocessConfig = PreprocessConfig(), label_map: np.ndarray | None = None
) -> ModelInput:
    """Turn a loaded study (and optionally its label map) into encoder units."""
    if label_map is not None and tuple(label_map.shape) != volume.shape:
        raise ValueError(
            f"label map shape {tuple(label_map.shape)} does not match the volume's "
            f"{volume.shape}; resample it onto the volume's grid first"
        )
    low, high = intensity_range(volume, config)
    grid = resample_linear(volume.voxels, target_size(volume, config), clip=(low, high), antialias=config.antialias)
    return volume_model_input(volume, scale_to_unit_range(grid, volume, config), config, label_map)


def target_size(volume: Volume, config: PreprocessConfig) -> tuple[int, int, int]:
    """The grid a study is resampled to: ``volume_size``, or ``(1, *slice_size)`` for a slice."""
    return (1, *config.slice_size) if volume.kind == "slice" else tuple(config.volume_size)


def intensity_range(volume: Volume, config: PreprocessConfig) -> tuple[float, float]:
    """Values mapped to [-1, 1]: the HU window, or [0, 1] for display grey values."""
    from omnict_cli.studies.volume import INTENSITY_HU

    return tuple(config.hu_window) if volume.intensity == INTENSITY_HU else (0.0, 1.0)


def scale_to_unit_range(grid: np.ndarray, volume: Volume, config: PreprocessConfig) -> np.ndarray:
    """Map the clipped, resampled values to SigLIP's [-1, 1], in place."""
    low, high = intensity_range(volume, config)
    grid -= (low + high) / 2.0
    grid *= 2.0 / (high - low)
    return np.clip(grid, -1.0, 1.0, out=grid)  # float rounding can step a hair outside


def volume_model_input(
    volume: Volume, grid: np.ndarray, config: PreprocessConfig, label_map: np.ndarray | None = None
) -> ModelInput:
    """Package a scaled ``[D, H, W]`` grid as encoder units (3 channels per unit)."""
    size = grid.shape
    if volume.kind == "slice":
        units = np.repeat(grid[:, None], 3, axis=1)
    else:
        units = compose_units(grid, config.slices_per_unit)
    resampled_labels = None if label_map is None else resample_labels(label_map, size)
    return ModelInput(
        units=units, kind=volume.kind, grid_spacing=output_spacing(volume, size), label_map=resampled_labels
    )


def compose_units(grid: np.ndarray, slices_per_unit: int) -> np.ndarray:
    """Stack slices (k*i, ..., k*i + k-1) as channels: ``[D, H, W] -> [D // k, k, H, W]``.

    Trailing slices that do not fill a unit are dropped, as in the paper.
    """
    n_units = grid.shape[0] // slices_per_unit
    used = grid[: n_units * slices_per_unit]
    return np.ascontiguousarray(used.reshape(n_units, slices_per_unit, *grid.shape[1:]))


def linear_resize_weights(n_in: int, n_out: int, antialias: bool = True):
    """Banded weights of 1D linear resizing with pixel centres aligned.

    Returns ``(first, weights)``: output ``i`` is
    ``sum_t weights[i, t] * input[first[i] + t]``. When shrinking with
    ``antialias``, the triangle kernel is ``n_in / n_out`` inputs wide on
    each side (PIL's and torch's anti-aliased bilinear); otherwise it is
    plain linear interpolation between the two nearest inputs. Inputs past
    the edges are left out and each row renormalised (edge clamping).
    """
    scale = n_in / n_out
    width = max(scale, 1.0) if antialias else 1.0
    centres = (np.arange(n_out) + 0.5) * scale
    first = np.clip(np.floor(centres - width + 0.5).astype(np.int64), 0, n_in - 1)
    last = np.clip(np.ceil(centres + width - 0.5).astype(np.int64), 1, n_in)
    taps = int((last - first).max())
    first = np.minimum(first, n_in - taps)
    positions = first[:, None] + np.arange(taps)[None, :]
    weights = np.clip(1.0 - np.abs((positions + 0.5 - centres[:, None]) / width), 0.0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    return first, weights.astype(np.float32)


def resample_linear(voxels: np.ndarray, size, clip=None, antialias: bool = True) -> np.ndarray:
    """Resize a ``[D, H, W]`` array to ``size`` as float32, clipping first.

    The slice axis is reduced first, a few input slices at a time (see
    :class:`SliceAxisResampler`), so the full-size input is never copied to
    float: peak extra memory is tens of MB whatever the input size.
    """
    resampler = SliceAxisResampler(voxels.shape, size, clip=clip, antialias=antialias)
    for start in range(0, voxels.shape[0], resampler.slab_slices):
        resampler.add(start, voxels[start : start + resampler.slab_slices])
    return resampler.finish()


class SliceAxisResampler:
    """Linear resizing fed with input slices in any order, a slab at a time.

    Each input slice adds its weighted, clipped values into the few output
    slices whose kernel covers it (``out[k] += w[k, j] * clip(in[j])``), so
    slices can be consumed as they are decoded from disk and the order does
    not matter. :meth:`finish` resizes the reduced stack in-plane (torch's
    bilinear, anti-aliased when shrinking: the same kernel).
    """

    def __init__(self, in_shape, size, clip=None, antialias: bool = True):
        n_in, height, width = (int(n) for n in in_shape)
        self.size = tuple(int(n) for n in size)
        self.clip = clip
        self.antialias = antialias
        first, banded = linear_resize_weights(n_in, self.size[0], antialias)
        dense = np.zeros((self.size[0], n_in), dtype=np.float32)
        for index, start in enumerate(first):
            dense[index, start : start + banded.shape[1]] = banded[index]
        self._weights = torch.from_numpy(dense)
        self._plane = (height, width)
        self.slab_slices = max(1, _SLAB_BYTES // (4 * height * width))
        self._slab = torch.empty((self.slab_slices, height * width), dtype=torch.float32)
        self._reduced = torch.zeros((self.size[0], height * width), dtype=torch.float32)

    def add(self, start: int, slices: np.ndarray) -> None:
        """Accumulate input slices ``start .. start + len(slices) - 1`` (any dtype, any strides)."""
        for offset in range(0, len(slices), self.slab_slices):
            part = slices[offset : offset + self.slab_slices]
            count = len(part)
            slab = self._slab[:count]
            np.copyto(slab.numpy().reshape(count, *self._plane), part, casting="unsafe")
            if self.clip is not None:
                slab.clamp_(*self.clip)
            columns = self._weights[:, start + offset : start + offset + count]
            touched = torch.nonzero(columns.any(dim=1)).flatten()
            if len(touched):
                low, high = int(touched[0]), int(touched[-1]) + 1
                self._reduced[low:high].addmm_(columns[low:high], slab)

    def finish(self) -> np.ndarray:
        """The resampled ``size`` array (float32)."""
        stacked = self._reduced.view(self.size[0], *self._plane)
        if self._plane == self.size[1:]:
            return stacked.numpy()
        resized = F.interpolate(
            stacked[:, None], size=self.size[1:], mode="bilinear", antialias=self.antialias, align_corners=False
        )
        return resized[:, 0].numpy()


def resample_labels(labels: np.ndarray, size) -> np.ndarray:
    """Nearest-neighbour resize of a label map (ids never blend), centres aligned."""
    indices = [
        np.minimum(np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)
        for n_in, n_out in zip(labels.shape, size)
    ]
    return np.ascontiguousarray(labels[np.ix_(*indices)])


def output_spacing(volume: Volume, size) -> tuple[float, float, float]:
    """Physical voxel size of ``volume`` once resampled to ``size``."""
    return tuple(float(s * n / m) for s, n, m in zip(volume.spacing, volume.shape, size))


__all__ = [
    "PreprocessConfig",
    "ModelInput",
    "preprocess_volume",
    "target_size",
    "intensity_range",
    "scale_to_unit_range",
    "volume_model_input",
    "compose_units",
    "SliceAxisResampler",
    "linear_resize_weights",
    "resample_linear",
    "resample_labels",
    "output_spacing",
]
