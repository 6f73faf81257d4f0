"""Where each tensor of a released checkpoint goes in omnict: names for the LLM and SigLIP, shapes for the projector.

The authors' tensor names are not public, so nothing here trusts one spelling:

- LLM tensors are Qwen2 names (``model.layers.3.mlp.up_proj.weight``,
  ``lm_head.weight``) under one of the prefixes LLaVA-style code uses:
  none, ``model.``, ``language_model.``, ``llm.``, ``model.language_model.``
  (with or without Qwen2's own inner ``model.``).
- Vision tensors are SigLIP vision names (``embeddings.*``, ``encoder.*``,
  ``post_layernorm.*``, optionally under ``vision_model.``) below prefixes
  made of ``model.``, ``vision_tower.``, ``vision_encoder.``, ``visual.``;
  SigLIP's own layer names (``patch_embedding``, ``layer_norm1``, ``mlp.fc1``,
  ``out_proj``, ...) are recognised under any prefix. Two towers under two
  prefixes claim the same places and are refused. SigLIP's pooling
  ``head.*`` is dropped: OmniCT reads hidden states.
- Every other tensor is a projector candidate, placed by the paper's Eq. 4
  on SHAPE alone (:func:`match_projector`).

A ``--key-map`` (regex renames, applied first, in order; an empty
replacement drops the tensor) resolves whatever this cannot place.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from omnict_cli.errors import OmnictError

LLM_PREFIXES = ("", "model.", "language_model.", "llm.", "model.language_model.")
_QWEN2_BODY = re.compile(
    r"(embed_tokens\.weight|norm\.weight|layers\.\d+\.(self_attn\.[qkvo]_proj\.(weight|bias)"
    r"|mlp\.(gate|up|down)_proj\.weight|(input|post_attention)_layernorm\.weight))"
)
_ROTARY_BUFFER = re.compile(r"(^|\.)rotary_emb\.inv_freq$")
_VISION = re.compile(
    r"^(?P<prefix>(?:(?:model|vision_tower|vision_encoder|visual)\.)*)(?:vision_model\.)?"
    r"(?P<body>(?:embeddings|encoder|post_layernorm|head)\..+)$"
)
# SigLIP's own layer names are specific enough (patch_embedding, layer_norm1, mlp.fc1, out_proj, post_layernorm)
# to be recognised under any prefix a release may use (``image_encoder.``, ``mm_vision.backbone.``, ...);
# its pooling ``head.*`` is not, so it is only recognised under the prefixes above.
_SIGLIP_LAYER = re.compile(
    r"^(?:[A-Za-z_]\w*\.)*?(?:vision_model\.)?"
    r"(?P<body>embeddings\.(?:patch_embedding|position_embedding)\.(?:weight|bias)"
    r"|encoder\.layers\.\d+\.(?:layer_norm[12]|mlp\.fc[12]|self_attn\.(?:q|k|v|out)_proj)\.(?:weight|bias)"
    r"|post_layernorm\.(?:weight|bias))$"
)
SIGLIP_TEXT_TOWER = re.compile(r"^(text_model\.|logit_scale$|logit_bias$)")

PROJECTOR_ROLES = ("slice_expert", "volume_expert", "shared")
LISTED = 20  # tensors named one by one in a refusal; the rest are counted
ROLE_TITLES = {"slice_expert": "W_s (slice expert)", "volume_expert": "W_v (volume expert)", "shared": "W_share"}


class KeyMapError(OmnictError):
    """A ``--key-map`` file that is not a JSON list of [pattern, replacement] pairs or a JSON object."""


@dataclass
class SortedNames:
    """Source tensors by kind. Keys of ``llm`` are Qwen2ForCausalLM names, of ``vision`` SiglipVisionModel names.

    Each value lists every source name that claims that place (more than one is a refusal).
    """

    llm: dict[str, list[str]] = field(default_factory=dict)
    vision: dict[str, list[str]] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    """source name -> why it is not imported"""
    others: list[str] = field(default_factory=list)
    """projector candidates, and tensors with no place"""
    renamed: dict[str, str] = field(default_factory=dict)
    """source name -> its name after the key map, for the names the key map changed"""


def load_key_map(path) -> list[tuple[re.Pattern, str]]:
    """``[(pattern, replacement), ...]`` from a JSON list of pairs or an object (in file order)."""
    if path is None:
        return []
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise KeyMapError(f"cannot read the key map ({error})", path=path) from error
    pairs = list(data.items()) if isinstance(data, dict) else data
    try:
        return [(re.compile(pattern), str(replacement)) for pattern, replacement in pairs]
    except (TypeError, ValueError, re.error) as error:
        raise KeyMapError(
            f"not a list of [regex, replacement] pairs ({error})",
            path=path,
            hint='Write e.g. {"^backbone\\\\.": "model.", "^ema\\\\..*": ""} (an empty replacement drops the tensor)',
        ) from error


def rename(name: str, key_map) -> str:
    """``name`` after every rename of the key map, in order."""
    for pattern, replacement in key_map:
        name = pattern.sub(replacement, name)
    return name


def qwen2_name(name: str) -> str | None:
    """The Qwen2ForCausalLM name of a source tensor name, or None when it is no LLM tensor."""
    for prefix in LLM_PREFIXES:
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        if rest == "lm_head.weight":
            return rest
        if rest.startswith("model.") and _QWEN2_BODY.fullmatch(rest[len("model.") :]):
            return rest
        if _QWEN2_BODY.fullmatch(rest):
            return "model." + rest
    return None


def unknown_llm_prefix_hint(names) -> list[str]:
    """When the LLM was not found: the Qwen2 embedding under a prefix no known code uses, and the key map for it."""
    hints = []
    for name in names:
        for body in ("model.embed_tokens.weight", "embed_tokens.weight"):
            if name.endswith("." + body):
                prefix = name[: -len(body)]
                renamed = "" if body.startswith("model.") else "model."
                hints.append(
                    f"{name} looks like the LLM's embedding under the prefix {prefix!r}: "
                    f"a key map {json.dumps({'^' + re.escape(prefix): renamed})} places the LLM"
                )
                break
    return hints


def siglip_name(name: str) -> str | None:
    """The SiglipVisionModel name (``encoder.layers.0...``) of a source tensor name, or None."""
    match = _VISION.match(name) or _SIGLIP_LAYER.match(name)
    return match.group("body") if match else None


def sort_names(names, key_map=(), vision_only: bool = False) -> SortedNames:
    """Sort source tensor names into LLM, vision, dropped and the rest (see the module notes).

    ``vision_only`` reads a SigLIP directory given with ``--vision``: its text tower is dropped
    and nothing else is looked for.
    """
    result = SortedNames()
    for source in names:
        name = rename(source, key_map)
        if name != source:
            result.renamed[source] = name
        if name == "":
            result.dropped[source] = "dropped by the key map"
        elif vision_only and SIGLIP_TEXT_TOWER.match(name):
            result.dropped[source] = "SigLIP text tower, not used by OmniCT"
        elif not vision_only and _ROTARY_BUFFER.search(name):
            result.dropped[source] = "rotary-embedding buffer, recomputed from the config"
        elif not vision_only and (target := qwen2_name(name)) is not None:
            result.llm.setdefault(target, []).append(source)
        elif (target := siglip_name(name)) is not None:
            _sort_vision_name(result, source, target)
        else:
            result.others.append(source)
    _sort_beside_the_vision_tower(result, key_map)
    return result


def _sort_vision_name(result: SortedNames, source: str, target: str) -> None:
    if target == "embeddings.position_ids":
        result.dropped[source] = "position-id buffer, rebuilt by SigLIP's own code"
    elif target.startswith("head."):
        result.dropped[source] = "SigLIP pooling head, not used by OmniCT (it reads hidden states)"
    else:
        result.vision.setdefault(target, []).append(source)


def _sort_beside_the_vision_tower(result: SortedNames, key_map) -> None:
    """The pooling head and buffers of a tower found under an unlisted prefix are the tower's, not unplaced."""
    prefixes = set()
    for target, sources in result.vision.items():
        for source in sources:
            name = rename(source, key_map)
            prefixes.add(name[: len(name) - len(target)])
    for source in list(result.others):
        name = rename(source, key_map)
        prefix = next(
            (p for p in prefixes if name.startswith(p + "head.") or name == p + "embeddings.position_ids"), None
        )
        if prefix is not None:
            result.others.remove(source)
            _sort_vision_name(result, source, name[len(prefix) :])


@dataclass
class ProjectorMatch:
    """Eq. 4 found in the checkpoint: source names per omnict projector parameter, and what the shapes give."""

    sources: dict[str, str]
    """omnict parameter (``slice_expert.weight``, ...) -> source tensor name"""
    hidden_size: int
    slice_input: int
    volume_unshuffle: int
    unplaced: list[str]


def match_projector(shapes: dict[str, tuple], llm_width: int, vision_width: int) -> tuple[ProjectorMatch | None, list]:
    """Place the projector candidates on shape; returns ``(match or None, refusal reasons)``.

    Eq. 4 fixes the shapes: W_share is ``[d_llm, h]``; W_s ``[h, d_in]`` and W_v
    ``[h, d_in * m^2]`` with ``d_in = d_v + d_pos > d_v`` and ``m >= 2``. Every
    assignment of three 2-D candidates to (W_s, W_v, W_share) that fits is tried;
    exactly one must fit. Biases follow their weight's name (``X.weight`` -> ``X.bias``).
    """
    weights = [name for name, shape in shapes.items() if len(shape) == 2]
    fits = []
    for shared in (name for name in weights if shapes[name][0] == llm_width):
        experts = [name for name in weights if name != shared and shapes[name][0] == shapes[shared][1]]
        fits += [
            (slice_name, volume_name, shared)
            for slice_name, volume_name in itertools.permutations(experts, 2)
            if _expert_widths_fit(shapes[slice_name][1], shapes[volume_name][1], vision_width)
        ]
    if not fits:
        found = ", ".join(f"{name} {list(shapes[name])}" for name in weights[:LISTED]) or "no 2-D tensors"
        more = f" and {len(weights) - LISTED} more" if len(weights) > LISTED else ""
        return None, [
            f"no three tensors fit the projector of Eq. 4 (W_share [{llm_width}, h], W_s [h, d_in], "
            f"W_v [h, d_in*m^2] with d_in > the vision width {vision_width}); candidates: {found}{more}"
        ]
    if len(fits) > 1:
        return None, _ambiguities(fits, shapes)
    slice_name, volume_name, shared_name = fits[0]
    sources = {f"{role}.weight": name for role, name in zip(PROJECTOR_ROLES, fits[0])}
    for role, weight in zip(PROJECTOR_ROLES, fits[0]):
        bias = weight.removesuffix(".weight") + ".bias"
        if weight.endswith(".weight") and shapes.get(bias) == (shapes[weight][0],):
            sources[f"{role}.bias"] = bias
    hidden, slice_input = shapes[slice_name]
    volume_unshuffle = math.isqrt(shapes[volume_name][1] // slice_input)
    unplaced = [name for name in shapes if name not in sources.values()]
    return ProjectorMatch(sources, hidden, slice_input, volume_unshuffle, unplaced), []


def _expert_widths_fit(slice_input: int, volume_input: int, vision_width: int) -> bool:
    """W_s reads d_v + d_pos > d_v features, W_v m^2 times as many (m >= 2)."""
    if slice_input <= vision_width or volume_input % slice_input:
        return False
    ratio = volume_input // slice_input
    return ratio >= 4 and math.isqrt(ratio) ** 2 == ratio


def _ambiguities(fits, shapes) -> list[str]:
    reasons = []
    for index, role in enumerate(PROJECTOR_ROLES):
        names = sorted({roles[index] for roles in fits})
        if len(names) > 1:
            listed = ", ".join(f"{name} {list(shapes[name])}" for name in names)
            reasons.append(f"{len(names)} tensors could fill {ROLE_TITLES[role]}: {listed}")
    return reasons
