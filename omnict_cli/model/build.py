"""Compose an untrained OmniCT from local component checkpoints: a SigLIP encoder and a causal LM.

This is what ``omnict build-model`` runs before stage-1 training (paper
Table 6: the projector is trained first). The components are read with
their own transformers classes (safetensors only, local files only, no
remote code), so sharded checkpoints, tied embeddings and dtypes are handled
by the library that wrote them. Then:

1. the authors' prompt tokens are added to the LLM's tokenizer and their ids
   written into the :class:`OmniCTConfig`;
2. the LLM's embeddings grow to the new vocabulary when needed, and the new
   tokens' rows start at the mean of the existing rows (so the untrained
   ``<|image3d_start|>`` etc. look like an average token, not noise);
3. the hybrid projector (W_s, W_v, W_share) is initialised as LLaVA's is;
4. model, tokenizer and a generation config are written to one directory
   that ``OmniCTForConditionalGeneration.from_pretrained`` and
   ``OmniCTProcessor.from_pretrained`` read.

The SigLIP directory may hold a full SigLIP model (vision + text towers, as
``google/siglip-so400m-patch14-384`` ships): its ``vision_config`` and
``vision_model.*`` weights are used and the text tower is left out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, GenerationConfig, logging

from omnict_cli.atomic import apply_umask, check_destination, output_error
from omnict_cli.errors import OmnictError
from omnict_cli.model.configuration_omnict import OmniCTConfig
from omnict_cli.model.modeling_omnict import OmniCTForConditionalGeneration
from omnict_cli.model.processing_omnict import add_special_tokens, special_tokens

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ComponentError(OmnictError):
    """A component directory cannot be used to build OmniCT."""


@dataclass
class BuildSummary:
    """What :func:`build_omnict` made, for the command's printout."""

    out_dir: Path
    vision_params: int
    language_params: int
    projector_params: int
    added_tokens: int
    vocab_size: int
    dtype: str


def build_omnict(vision_dir, llm_dir, dtype: torch.dtype = torch.float32, **config_overrides):
    """An untrained OmniCT from a SigLIP directory and a causal-LM directory.

    Args:
        vision_dir: local SigLIP checkpoint (a full SigLIP model or its vision model).
        llm_dir: local causal-LM checkpoint with its tokenizer (Qwen2.5 by default).
        dtype: dtype of every weight.
        config_overrides: other :class:`OmniCTConfig` fields (e.g. ``volume_unshuffle=3``).

    Returns:
        ``(model, tokenizer)``; the tokenizer has the prompt tokens and a pad token.
    """
    tokenizer = _load_tokenizer(llm_dir)
    token_ids = add_special_tokens(tokenizer)
    vision_tower = load_vision_tower(vision_dir, dtype)
    language_model = _load_component(AutoModelForCausalLM, llm_dir, "language model", dtype=dtype)
    config = _omnict_config(vision_tower.config, language_model.config, token_ids, config_overrides)
    with torch.device("meta"):  # no time or memory spent on weights replaced just below
        model = OmniCTForConditionalGeneration(config)
    model.spatial_encoder.vision_tower = vision_tower
    model.language_model = language_model
    projector = model.spatial_encoder.multi_modal_projector.to_empty(device="cpu").to(dtype)
    model._init_weights(projector)
    model.spatial_encoder.apply_freeze()
    _fit_embeddings(model, tokenizer)
    model.config.vision_config, model.config.text_config = vision_tower.config, language_model.config
    model.generation_config = _generation_config(language_model, tokenizer)
    return model, tokenizer


def _omnict_config(vision_config, text_config, token_ids: dict, overrides: dict) -> OmniCTConfig:
    """The OmniCT config of these components; in-plane sizes follow the encoder's image size.

    Volumes keep the paper's 32 slices (Appendix E) unless ``volume_size`` is given.
    """
    side, depth = vision_config.image_size, OmniCTConfig.volume_size[0]
    sizes = dict(volume_size=(depth, side, side), slice_size=(side, side))
    try:
        return OmniCTConfig(
            vision_config=vision_config.to_dict(),
            text_config=text_config.to_dict(),
            **token_ids,
            **{**sizes, **overrides},
        )
    except ValueError as error:
        raise ComponentError(f"these components and options do not make an OmniCT: {error}") from error


def build_model_dir(
    vision_dir, llm_dir, out_dir, dtype: str = "float32", overwrite: bool = False, **config_overrides
) -> BuildSummary:
    """Build with :func:`build_omnict` and write the model directory atomically.

    The directory is written next to ``out_dir`` under a temporary name and
    renamed when complete, so an interrupted build never leaves a directory
    that looks loadable. An existing ``out_dir`` is refused unless ``overwrite``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ComponentError("already exists", path=out_dir, hint="Choose another --out or pass --overwrite")
    if dtype not in DTYPES:
        raise ComponentError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}", path=out_dir)
    check_destination(out_dir, folder=True)  # before the minutes of loading and composing
    model, tokenizer = build_omnict(vision_dir, llm_dir, DTYPES[dtype], **config_overrides)
    # The components' folder names only: an absolute path would put the builder's machine in a shared model.
    model.config.vision_config._name_or_path = Path(vision_dir).name
    model.config.text_config._name_or_path = Path(llm_dir).name
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as error:
        raise output_error(out_dir, error) from error
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        apply_umask(staging)  # mkdtemp's 0700 would hide a shared model from the group
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except OSError as error:  # disk full: several GB of weights
        raise output_error(out_dir, error) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _summary(model, out_dir, len(special_tokens()), dtype)


def load_vision_tower(vision_dir, dtype: torch.dtype = torch.float32):
    """The vision model of a SigLIP-style checkpoint (a composite model's ``vision_config`` part)."""
    config = _load_config(vision_dir, "vision encoder")
    vision_config = getattr(config, "vision_config", None) or config
    if vision_config.model_type.startswith("siglip"):
        vision_config.vision_use_head = False  # unused by OmniCT (see OmniCTConfig); its weights are skipped
    return _load_component(AutoModel, vision_dir, "vision encoder", config=vision_config, dtype=dtype)


def _load_config(directory, what: str):
    _check_dir(directory, what)
    try:
        return AutoConfig.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ComponentError(
            f"cannot read the {what} config: {error}",
            path=directory,
            hint="Point at a Hugging Face model directory with config.json",
        ) from error


def _load_component(auto_class, directory, what: str, **kwargs):
    """``auto_class.from_pretrained`` restricted to local safetensors, with errors naming the directory."""
    from omnict_cli.model.safetensors_only import require_safetensors

    _check_dir(directory, what)
    require_safetensors(directory, what)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the library's key table; what matters is checked below
    try:
        model, info = auto_class.from_pretrained(
            directory, local_files_only=True, use_safetensors=True, output_loading_info=True, **kwargs
        )
    except (OSError, ValueError, KeyError) as error:
        raise ComponentError(f"cannot load the {what}: {error}", path=directory) from error
    finally:
        logging.set_verbosity(verbosity)
    missing = sorted(info.get("missing_keys") or [])
    if missing or info.get("mismatched_keys"):
        problem = f"missing weights {missing[:5]}" if missing else f"mismatched shapes {info['mismatched_keys'][:5]}"
        raise ComponentError(
            f"the {what} checkpoint does not fit its config: {problem}",
            path=directory,
            hint="Is this the right kind of model directory?",
        )
    return model


def _check_dir(directory, what: str) -> None:
    if not Path(directory).is_dir():
        raise ComponentError(
            f"{what} directory not found", path=directory, hint="Give a local model directory; omnict never downloads"
        )


def _load_tokenizer(llm_dir):
    """The LLM's tokenizer; a pad token is needed for batching (EOS stands in, as is usual for Qwen)."""
    _check_dir(llm_dir, "language model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(llm_dir, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ComponentError(
            f"cannot load the tokenizer: {error}", path=llm_dir, hint="The LLM directory must hold its tokenizer files"
        ) from error
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ComponentError("the tokenizer has neither a pad nor an EOS token", path=llm_dir)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _fit_embeddings(model: OmniCTForConditionalGeneration, tokenizer) -> None:
    """Grow the LLM's vocabulary to the tokenizer's and start the prompt tokens at the mean embedding.

    LLMs like Qwen2.5 reserve spare rows, so often no resize is needed; the rows
    of the added tokens were never trained either way.
    """
    language_model = model.language_model
    if len(tokenizer) > language_model.get_input_embeddings().num_embeddings:
        language_model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    new_ids = torch.tensor(tokenizer.convert_tokens_to_ids(special_tokens()))
    known = torch.ones(language_model.get_input_embeddings().num_embeddings, dtype=torch.bool)
    known[new_ids] = False
    known[len(tokenizer) :] = False
    with torch.no_grad():
        for embedding in {language_model.get_input_embeddings(), language_model.get_output_embeddings()}:
            if embedding is None:
                continue
            mean = embedding.weight[known].float().mean(0)
            embedding.weight[new_ids] = mean.to(embedding.weight.dtype)
    model.config.text_config.vocab_size = language_model.get_input_embeddings().num_embeddings


def _generation_config(language_model, tokenizer) -> GenerationConfig:
    """The LLM's own generation defaults (stop tokens, sampling) with the pad token set."""
    config = GenerationConfig.from_model_config(language_model.config)
    source = getattr(language_model, "generation_config", None)
    if source is not None:
        config.update(**{k: v for k, v in source.to_diff_dict().items() if not k.startswith("_")})
    config.pad_token_id = tokenizer.pad_token_id
    return config


def _summary(model, out_dir: Path, added_tokens: int, dtype: str) -> BuildSummary:
    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    return BuildSummary(
        out_dir=out_dir,
        vision_params=count(model.spatial_encoder.vision_tower),
        language_params=count(model.language_model),
        projector_params=count(model.spatial_encoder.multi_modal_projector),
        added_tokens=added_tokens,
        vocab_size=model.config.text_config.vocab_size,
        dtype=dtype,
    )
