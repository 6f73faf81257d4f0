"""From a study's label map and a task or question to the organ mask OSE pools (paper Sec. 2.2).

This is the one step between segmentation and the model that the ``report``
and ``ask`` pipeline and training share: what the scan covers (its organ
groups) -> which organs the task or question is about (routing, or the
user's ``--organ``) -> the label ids of those organs in the segmenter's
vocabulary -> a boolean mask on the same grid as the label map (usually the
preprocessed 32x384x384 grid, ``ModelInput.label_map``), ready for
``OmniCTProcessor(..., organ_masks=[...])``.

No organ chosen (nothing the question names is in the scan and no default
applies) gives ``mask=None``: the model then pools the whole image and
reports status "missing". An organ chosen but absent from the label map
gives an all-False mask: status "empty", also whole-image pooling. Both
reasons travel in :attr:`OrganSelection.reason` so the output record can say
what was assumed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from omnict_cli.segmentation.organ_groups import ORGAN_GROUPS
from omnict_cli.segmentation.organs import coverage, organ_label_ids
from omnict_cli.segmentation.routing import SegmenterScope, organs_for_task


@dataclass(frozen=True)
class OrganSelection:
    """The organs of one study's prompt and their mask.

    Attributes:
        groups: organ groups (or structure names from ``--organ``) in the prompt's organ tokens.
        label_ids: their ids in the segmenter's vocabulary.
        mask: bool array on the label map's grid, or None for "no organ: whole image".
        reason: one line for records and logs.
        fallback: True when a default replaced what the question asked for.
        warning: set when the segmenter has no class for an organ the question names (the record's
            warnings carry it: the answer then rests on the whole volume, not on that organ).
    """

    groups: tuple[str, ...]
    label_ids: tuple[int, ...]
    mask: np.ndarray | None
    reason: str
    fallback: bool
    warning: str | None = None

    @property
    def is_empty(self) -> bool:
        """An organ was chosen but none of its voxels is in the label map."""
        return self.mask is not None and not self.mask.any()


def select_organs(
    label_map: np.ndarray,
    vocabulary: Mapping[int, str],
    task: str,
    question: str | None = None,
    override: str | Sequence[str] | None = None,
    segmenter: str = "",
) -> OrganSelection:
    """Choose the organs for ``task`` ("report" or "ask") and build their mask on ``label_map``'s grid.

    Args:
        label_map: integer label map (any shape; ``[D, H, W]`` on the model grid for OSE).
        vocabulary: the segmenter's id -> name map (TotalSegmentator ``total`` or built-in).
        task: "report" (the scan's default organs) or "ask" (route ``question``).
        question: the question, for "ask".
        override: the user's ``--organ`` choice, which wins over routing.
        segmenter: the segmenter's ``describe()`` ("builtin 2", ...), for messages about missing classes.
    """
    label_map = np.asarray(label_map)
    shown = coverage(label_map, vocabulary)
    scope = segmenter_scope(vocabulary, segmenter)
    route = organs_for_task(task, question=question, override=override, available=shown, scope=scope)
    warning = f"{scope.lacking(route.unsegmentable)}; {_used(route)}" if route.unsegmentable else None
    if not route.groups:
        return OrganSelection((), (), None, route.reason, route.fallback, warning)
    ids = tuple(organ_label_ids(route.groups, vocabulary))
    mask = np.isin(label_map, ids) if ids else np.zeros(label_map.shape, dtype=bool)
    reason = route.reason
    if not mask.any():
        reason += f"; no voxel of {', '.join(route.groups)} in the label map: the whole image is pooled"
    return OrganSelection(route.groups, ids, mask, reason, route.fallback, warning)


def segmenter_scope(vocabulary: Mapping[int, str], segmenter: str = "") -> SegmenterScope:
    """The organ groups ``vocabulary`` has classes for, and how to name the segmenter in messages."""
    groups = frozenset(group for group in ORGAN_GROUPS if organ_label_ids([group], vocabulary))
    if segmenter.startswith("builtin"):
        return SegmenterScope(groups, "the built-in segmenter", "install TotalSegmentator for abdominal organs")
    return SegmenterScope(groups, f"the segmenter ({segmenter})" if segmenter else "the segmenter")


def _used(route) -> str:
    return f"using {', '.join(route.groups)}" if route.groups else "using the whole volume"
