"""The LLM and vision configs of a released checkpoint: its config.json, checked against its tensors' shapes.

The release's config.json layout is not public: LLaVA-style code writes the
Qwen2 keys at the top level (with ``mm_*`` extras), transformers' LLaVA nests
them under ``text_config``/``vision_config``. Both are read; only keys the
stock config classes know are kept (``auto_map`` and other code hooks never
reach a config). Every size the tensors show (widths, layer counts,
vocabulary, key/value heads) is taken from the tensors and compared with
the file: a disagreement is a refusal naming the tensor, a size the file
leaves out is inferred and reported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import Qwen2Config, SiglipVisionConfig

from omnict_cli.model.configuration_omnict import SO400M_VISION_DEFAULTS

CODE_KEYS = ("auto_map", "trust_remote_code")
_NOT_CONFIG = {
    "architectures",
    "auto_map",
    "model_type",
    "_name_or_path",
    "transformers_version",
    "dtype",
    "torch_dtype",
}


def read_json_config(folder: Path) -> tuple[dict, list[str]]:
    """``(config.json as a dict, warnings)``; code hooks (``auto_map``, ``trust_remote_code``) are named and ignored."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return {}, [f"{path}: unreadable config.json ({error}); sizes come from the tensors alone"]
    if not isinstance(config, dict):
        return {}, [f"{path}: config.json is not a JSON object; sizes come from the tensors alone"]
    found = [key for key in CODE_KEYS if key in config or key in config.get("text_config", {})]
    warnings = [f"{path}: ignoring {', '.join(found)}: omnict never runs code from a checkpoint"] if found else []
    return config, warnings


def _known_keys(values: dict, config_class) -> dict:
    known = set(config_class().to_dict()) | {"rope_theta", "rope_scaling", "head_dim"}
    return {key: value for key, value in values.items() if key in known and key not in _NOT_CONFIG}


def text_config(release: dict, shapes: dict[str, tuple]) -> tuple[Qwen2Config | None, dict, list[str]]:
    """``(Qwen2Config, inferred sizes, refusal reasons)`` from config.json and the Qwen2-named shapes."""
    nested = next((release[k] for k in ("text_config", "llm_config") if isinstance(release.get(k), dict)), release)
    given = _known_keys(nested, Qwen2Config)
    embed = shapes.get("model.embed_tokens.weight")
    if embed is None:
        return None, {}, ["no embedding tensor (Qwen2's model.embed_tokens.weight) under any known prefix"]
    layers = 1 + max((int(name.split(".")[2]) for name in shapes if name.startswith("model.layers.")), default=-1)
    gate = shapes.get("model.layers.0.mlp.gate_proj.weight", (None,))
    from_tensors = {"vocab_size": embed[0], "hidden_size": embed[1], "num_hidden_layers": layers}
    from_tensors["intermediate_size"] = gate[0]
    inferred, reasons = {}, []
    if "num_attention_heads" not in given:
        if not given.get("head_dim"):  # no tensor shows how the width splits into heads
            return (
                None,
                {},
                [
                    "config.json gives neither num_attention_heads nor head_dim, and no tensor shape tells them; "
                    "add the LLM's num_attention_heads to config.json (Qwen2.5-3B: 16, Qwen2.5-7B: 28)"
                ],
            )
        given["num_attention_heads"] = embed[1] // given["head_dim"]
        inferred["num_attention_heads"] = f"{given['num_attention_heads']} (width / head_dim)"
    head_dim = given.get("head_dim") or embed[1] // given["num_attention_heads"]
    key_rows = shapes.get("model.layers.0.self_attn.k_proj.weight", (None,))[0]
    if key_rows is not None:
        from_tensors["num_key_value_heads"] = key_rows // head_dim
    for key, value in from_tensors.items():
        if not value:  # no such tensors: the parameters they would fill are reported as unfilled
            continue
        if key in given and given[key] != value:
            reasons.append(f"config.json says {key} {given[key]} but the tensors say {value}")
        elif key not in given:
            inferred[key] = value
        given[key] = value
    given["tie_word_embeddings"] = "lm_head.weight" not in shapes
    if reasons:
        return None, inferred, reasons
    return Qwen2Config(**given), inferred, []


def vision_config(given: dict | None, shapes: dict[str, tuple]) -> tuple[SiglipVisionConfig | None, dict, list[str]]:
    """``(SiglipVisionConfig, inferred sizes, refusal reasons)`` from a config dict (or so400m's) and the shapes."""
    values = {**SO400M_VISION_DEFAULTS, **_known_keys(given or {}, SiglipVisionConfig)}
    patch = shapes.get("embeddings.patch_embedding.weight")
    positions = shapes.get("embeddings.position_embedding.weight")
    if patch is None or positions is None:
        return None, {}, ["no SigLIP patch or position embedding among the vision tensors"]
    side = math.isqrt(positions[0])
    if values["image_size"] // patch[2] == side:  # 384 // 14 = 27 patches: image sizes are not multiples of patches
        side_pixels = values["image_size"]
    else:
        side_pixels = side * patch[2]
    from_tensors = {
        "hidden_size": patch[0],
        "patch_size": patch[2],
        "image_size": side_pixels,
        "num_hidden_layers": 1 + max(int(n.split(".")[2]) for n in shapes if n.startswith("encoder.layers.")),
        "intermediate_size": shapes.get("encoder.layers.0.mlp.fc1.weight", (values["intermediate_size"],))[0],
    }
    inferred, reasons = {}, []
    for key, value in from_tensors.items():
        if given is not None and key in given and given[key] != value:
            reasons.append(f"the vision config says {key} {given[key]} but the vision tensors say {value}")
        elif given is None or key not in given:
            inferred[f"vision {key}"] = value
        values[key] = value
    if given is None and values["hidden_size"] != SO400M_VISION_DEFAULTS["hidden_size"]:
        reasons.append(  # so400m's head count would be a guess, and verification would share it
            f"the vision tensors are {values['hidden_size']} wide, not SigLIP-so400m's "
            f"{SO400M_VISION_DEFAULTS['hidden_size']}, and config.json has no vision_config; "
            "give --vision DIR whose config.json describes this tower"
        )
    values["vision_use_head"] = False
    if reasons:
        return None, inferred, reasons
    return SiglipVisionConfig(**values), inferred, []


def split_positional_width(width: int) -> tuple[int, int, int] | None:
    """``(d_z, d_y, d_x)``: equal even thirds, a remainder of 2 or 4 going to depth then rows; None when odd."""
    if width % 2:
        return None
    base = (width // 6) * 2
    left = width - 3 * base
    return base + min(left, 2), base + max(left - 2, 0), base
