"""Organ-level Semantic Enhancement (OSE, paper Sec. 2.2): organ masks -> a fixed number of organ tokens.

Why: a lesion usually occupies a small region of a large CT image, and the
clinician reads the image organ by organ. OSE therefore selects the visual
tokens that lie on the question's organ (anatomical region localization) and
aggregates them to a FIXED count L_c (Eq. 5): small organs are *magnified*
(a 2-token organ is spread over all L_c tokens) and large organs *compressed*
(averaged), so an organ's detail gets the same share of the LLM's attention
whatever its size. Because L_c depends only on the kind and the number of
units (``OmniCTConfig.num_organ_tokens``: 9x9 = 81 for a slice, N_s x 3 x 3 =
90 for a 10-unit volume; Table 13), the processor can write the organ
placeholders before any mask is known, and the count always matches.

Pipeline:

1. :func:`organ_ids_mask` - a boolean ``[D, H, W]`` mask of one TotalSegmentator
   structure, a group or any union of ids, from a label map on the resampled grid.
2. :func:`organ_mask_to_token_grid` - the fraction of each token cell the organ
   covers, ``[N_s, h, w]``, following volumetric slice composition (unit i =
   slices i*k .. i*k+k-1) in depth and the patch/unshuffle layout in-plane.
3. :func:`pool_organ_tokens` - masked adaptive pooling of the SCE token grid
   ``[N_s, h, w, d]`` over the organ's bounding box to ``[L_c, d]``.

Aggregation rule (per unit, to a g x g grid):

* The box is the organ's bounding box in token space: per slice for ``"slice"``
  (independent images); for ``"volume"`` one in-plane box, the union over the
  units where the organ is present, used for every unit.
* Along each box axis of length n: if n >= g, output cell i pools tokens
  floor(i*n/g) .. ceil((i+1)*n/g)-1 (adaptive average pooling: compression);
  if n < g, cell i takes token floor((i+0.5)*n/g) (nearest-neighbour: magnification).
* Within a cell the pooling is *masked*: sum(token * coverage) / sum(coverage),
  so background tokens never enter and partly covered tokens count by their share.
* A cell with no organ token in it (the organ is not box-shaped, or is thin)
  copies the organ token nearest to the cell's centre. Every output token is
  thus a real organ token or a coverage-weighted mean of organ tokens.
* Volume units in which the organ is absent repeat the pooled tokens of the
  nearest unit where it is present (the earlier one on a tie). This keeps the
  count at N_s x g^2, keeps organ unit i aligned with image unit i where the
  organ is present, and keeps background out of the organ tokens.
* Empty or missing mask: status ``"empty"`` / ``"missing"`` with a message, and
  the tokens are the plain adaptive average of ALL tokens of each unit to g x g
  (a global fallback with the same L_c, so the prompt still matches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from omnict_cli.segmentation.classes import TOTALSEG_TOTAL_IDS

STATUSES = ("ok", "empty", "missing")


@dataclass
class OrganPooling:
    """Result of :func:`pool_organ_tokens`.

    Attributes:
        tokens: ``[L_c, d]`` organ tokens, unit after unit, each unit's g x g grid row-major.
        status: ``"ok"`` (pooled from the organ), ``"empty"`` (the mask covers no token) or
            ``"missing"`` (no mask given); the last two pooled the whole image instead.
        message: one line for the caller/user saying what was pooled.
    """

    tokens: torch.Tensor
    status: str
    message: str


# ---- masks ------------------------------------------------------------------------------


def organ_ids_mask(label_map, ids) -> torch.Tensor:
    """Boolean mask of the voxels whose label is in ``ids``.

    Args:
        label_map: ``[D, H, W]`` integer TotalSegmentator ids (numpy array or tensor),
            e.g. ``ModelInput.label_map``.
        ids: one id or structure name (``5`` or ``"liver"``), or an iterable of them
            (a group such as both kidneys, or any union).

    Returns:
        ``torch.bool`` tensor of the label map's shape.
    """
    labels = torch.as_tensor(np.asarray(label_map) if not torch.is_tensor(label_map) else label_map)
    wanted = torch.tensor(sorted(_resolve_ids(ids)), dtype=labels.dtype, device=labels.device)
    return torch.isin(labels, wanted)


def _resolve_ids(ids) -> set[int]:
    items = [ids] if isinstance(ids, (int, str, np.integer)) else list(ids)
    resolved = set()
    for item in items:
        if isinstance(item, str):
            if item not in TOTALSEG_TOTAL_IDS:
                raise ValueError(f"unknown TotalSegmentator structure {item!r}")
            resolved.add(TOTALSEG_TOTAL_IDS[item])
        else:
            resolved.add(int(item))
    return resolved


def organ_mask_to_token_grid(
    organ_mask: torch.Tensor,
    num_units: int,
    slices_per_unit: int,
    grid_hw: tuple[int, int],
    patch_layout: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Fraction of each token cell covered by the organ.

    Args:
        organ_mask: bool ``[D, H, W]`` on the preprocessed grid (``[1, H, W]`` for a slice).
        num_units: N_s; unit i covers slices ``i*k .. i*k+k-1`` (k = ``slices_per_unit``),
            slices beyond ``N_s * k`` are dropped as volumetric slice composition drops them.
        slices_per_unit: k (3 for volumes; 1 for slices, where D = N_s).
        grid_hw: (h, w), the token grid per unit after unshuffle (27x27 slices, 9x9 volume units).
        patch_layout: ``(patch_size, m)``, e.g. ``(config.vision_config.patch_size,
            config.unshuffle_factor(kind))``. When given, follow the encoder exactly: pixels ->
            ``H // patch_size`` patches (the patch convolution drops the remainder), zero-padded
            to a multiple of m and averaged m x m as the token unshuffle does. Otherwise adaptive
            average pooling maps ``H x W`` straight onto ``h x w`` (any sizes, cells of about
            H/h x W/w pixels; exact whenever patches tile the image and m divides them).

    Returns:
        float ``[N_s, h, w]`` in [0, 1], area/volume-weighted coverage.
    """
    if organ_mask.dim() != 3:
        raise ValueError(f"organ mask must be [D, H, W], got shape {tuple(organ_mask.shape)}")
    depth = num_units * slices_per_unit
    if num_units < 1 or slices_per_unit < 1 or organ_mask.shape[0] < depth:
        raise ValueError(
            f"a mask of {organ_mask.shape[0]} slices cannot give {num_units} units of {slices_per_unit} slices"
        )
    mask = organ_mask[:depth].float()
    units = mask.reshape(num_units, slices_per_unit, *mask.shape[1:]).mean(1)  # [N_s, H, W]
    if patch_layout is None:
        return F.adaptive_avg_pool2d(units[:, None], tuple(grid_hw))[:, 0]
    return _patch_layout_coverage(units, tuple(grid_hw), *patch_layout)


def _patch_layout_coverage(
    units: torch.Tensor, grid_hw: tuple[int, int], patch_size: int, unshuffle: int
) -> torch.Tensor:
    """``[N_s, H, W]`` -> ``[N_s, h, w]`` through the patch grid and the m x m unshuffle with padding."""
    patches = F.avg_pool2d(units[:, None], patch_size)  # [N_s, 1, P_h, P_w]
    p_h, p_w = patches.shape[-2:]
    if (math.ceil(p_h / unshuffle), math.ceil(p_w / unshuffle)) != grid_hw:
        raise ValueError(f"{p_h}x{p_w} patches unshuffled by {unshuffle} do not give a {grid_hw} token grid")
    padded = F.pad(patches, (0, grid_hw[1] * unshuffle - p_w, 0, grid_hw[0] * unshuffle - p_h))
    return F.avg_pool2d(padded, unshuffle)[:, 0]


# ---- pooling ----------------------------------------------------------------------------


def pool_organ_tokens(tokens: torch.Tensor, coverage: torch.Tensor | None, kind: str, config) -> OrganPooling:
    """Aggregate an organ's tokens to ``config.num_organ_tokens(kind, N_s)`` tokens (Eq. 5).

    Args:
        tokens: ``[N_s, h, w, d]``, one study's SCE token grid.
        coverage: ``[N_s, h, w]`` from :func:`organ_mask_to_token_grid`, or None (no mask).
        kind: "slice" or "volume".
        config: an :class:`OmniCTConfig` (only ``organ_grid`` is used).

    Returns:
        :class:`OrganPooling` with ``tokens`` ``[N_s * g * g, d]``; see the module docstring
        for the rule, the handling of absent units and the global fallback.
    """
    grid = config.organ_grid(kind)
    if tokens.dim() != 4:
        raise ValueError(f"tokens must be [N_s, h, w, d], got shape {tuple(tokens.shape)}")
    if coverage is None:
        return _global_fallback(tokens, grid, "missing", "no organ mask given")
    if tuple(coverage.shape) != tuple(tokens.shape[:3]):
        raise ValueError(f"coverage {tuple(coverage.shape)} does not match the token grid {tuple(tokens.shape[:3])}")
    coverage = coverage.to(device=tokens.device, dtype=tokens.dtype)
    present = (coverage > 0).flatten(1).any(1)
    if not bool(present.any()):
        return _global_fallback(tokens, grid, "empty", "organ mask is empty")
    boxes = _unit_boxes(coverage > 0, kind)
    pooled = {i: _pool_box(tokens[i], coverage[i], boxes[i], grid) for i in range(len(tokens)) if present[i]}
    units = [pooled[_nearest_present(i, sorted(pooled))] for i in range(len(tokens))]
    covered = int((coverage > 0).sum())
    message = (
        f"organ covers {covered} of {coverage.numel()} tokens in {len(pooled)} of {len(tokens)} units; "
        f"pooled to {len(tokens)} x {grid}x{grid}"
    )
    return OrganPooling(torch.cat(units), "ok", message)


def _global_fallback(tokens: torch.Tensor, grid: int, status: str, reason: str) -> OrganPooling:
    """Plain adaptive average of every unit's whole token grid to g x g (same L_c)."""
    whole = (0, tokens.shape[1], 0, tokens.shape[2])
    ones = tokens.new_ones(tokens.shape[1:3])
    pooled = torch.cat([_pool_box(unit, ones, whole, grid) for unit in tokens])
    return OrganPooling(pooled, status, f"{reason}: organ tokens pooled from the whole image (global fallback)")


def _unit_boxes(covered: torch.Tensor, kind: str) -> list[tuple[int, int, int, int] | None]:
    """Per unit ``(row0, row1, col0, col1)`` (end-exclusive) of the organ box; None where absent.

    Slices are independent images, each with its own box; the units of a volume share one
    in-plane box, the union over the units where the organ is present.
    """
    if kind == "volume":
        box = _bbox(covered.any(0))
        return [box if bool(unit.any()) else None for unit in covered]
    return [_bbox(unit) if bool(unit.any()) else None for unit in covered]


def _bbox(plane: torch.Tensor) -> tuple[int, int, int, int]:
    rows = plane.any(1).nonzero().flatten()
    cols = plane.any(0).nonzero().flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _nearest_present(index: int, present: list[int]) -> int:
    """The present unit closest to ``index`` (the earlier one on a tie)."""
    return min(present, key=lambda unit: (abs(unit - index), unit))


def _axis_bins(length: int, grid: int, like: torch.Tensor) -> torch.Tensor:
    """``[grid, length]`` 0/1 membership of box tokens in output cells along one axis.

    Adaptive-pooling bins when compressing (length >= grid), one nearest token per cell
    when magnifying (length < grid), so magnified cells never blend two tokens.
    """
    bins = like.new_zeros(grid, length)
    for cell in range(grid):
        if length >= grid:
            start, end = (cell * length) // grid, -((-(cell + 1) * length) // grid)
            bins[cell, start:end] = 1
        else:
            bins[cell, ((2 * cell + 1) * length) // (2 * grid)] = 1
    return bins


def _pool_box(unit: torch.Tensor, weight: torch.Tensor, box: tuple[int, int, int, int], grid: int) -> torch.Tensor:
    """Masked adaptive pooling of one unit's box: ``[h, w, d]``, ``[h, w]`` -> ``[grid * grid, d]``.

    Cell value = sum(token * weight) / sum(weight) over its bins; cells without weight copy
    the weighted token nearest to the cell centre.
    """
    r0, r1, c0, c1 = box
    tokens, weight = unit[r0:r1, c0:c1], weight[r0:r1, c0:c1]
    rows, cols = _axis_bins(r1 - r0, grid, weight), _axis_bins(c1 - c0, grid, weight)
    masked = torch.where((weight > 0)[..., None], tokens, torch.zeros_like(tokens))
    total = torch.einsum("ar,bc,rc,rcd->abd", rows, cols, weight, masked)
    mass = torch.einsum("ar,bc,rc->ab", rows, cols, weight)
    pooled = total / mass.clamp_min(torch.finfo(mass.dtype).tiny)[..., None]
    empty = mass <= 0
    if bool(empty.any()):
        pooled = torch.where(empty[..., None], _nearest_tokens(tokens, weight > 0, grid), pooled)
    return pooled.reshape(grid * grid, -1)


def _nearest_tokens(tokens: torch.Tensor, covered: torch.Tensor, grid: int) -> torch.Tensor:
    """``[grid, grid, d]``: for each output cell, the covered token nearest its centre in box coordinates."""
    n_r, n_c = covered.shape
    centre_r = (torch.arange(grid, dtype=torch.float32) + 0.5) * n_r / grid - 0.5
    centre_c = (torch.arange(grid, dtype=torch.float32) + 0.5) * n_c / grid - 0.5
    centres = torch.stack(torch.meshgrid(centre_r, centre_c, indexing="ij"), -1).reshape(-1, 2)
    positions = covered.nonzero().float().cpu()  # [K, 2], row-major order: ties go to the first
    nearest = torch.cdist(centres, positions).argmin(1)
    index = covered.nonzero()[nearest.to(covered.device)]
    return tokens[index[:, 0], index[:, 1]].reshape(grid, grid, -1)
