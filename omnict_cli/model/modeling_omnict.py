"""OmniCT modeling: the SCE vision path (paper Sec. 2.1, Eq. 1-4) and the full model with generation.

Units from preprocessing (VSC: 3 slices as the channels of one unit, float32
``[N_s, 3, H, W]`` in [-1, 1]) pass through the SigLIP vision tower a batch
at a time (Eq. 1). Tri-axial positional embedding concatenates sinusoidal
codes for unit depth, token row and token column to every patch feature
(Eq. 2); token unshuffle folds m x m neighbouring tokens into one (Eq. 3);
the MoE hybrid projection sends slices through W_s and volumes through W_v
(their input widths differ because m differs), then GELU and the shared
W_share into the LLM width (Eq. 4).

The output stays a token grid per study, ``[N_s, H'/m, W'/m, d_llm]``, so
Organ-level Semantic Enhancement can later select an organ's tokens by
position; flattening it row-major gives the order of the prompt's
placeholders (unit, then row, then column).

:class:`OmniCTForConditionalGeneration` puts it together as transformers'
LLaVA does: the processor has already expanded every placeholder to the
exact feature count; the model embeds the prompt, checks the counts (a
``ValueError`` naming both numbers), ``masked_scatter``s image tokens and
OSE organ tokens (Sec. 2.2) into the placeholder positions and runs the
causal LM on ``inputs_embeds``. ``generate()`` comes from ``GenerationMixin``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import CausalLMOutputWithPast

from omnict_cli.model.configuration_omnict import OmniCTConfig
from omnict_cli.model.organ_pooling import organ_mask_to_token_grid, pool_organ_tokens

SINUSOID_BASE = 10000.0  # as in "Attention is all you need"


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal codes ``[n, dim]`` for integer ``positions`` ``[n]``: sines then cosines.

    Frequencies fall geometrically from 1 to 1/10000, so nearby positions get
    similar codes and every position up to thousands a distinct one.
    """
    half = dim // 2
    frequencies = SINUSOID_BASE ** (-torch.arange(half, dtype=torch.float32, device=positions.device) / max(half, 1))
    angles = positions.to(torch.float32)[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def tri_axial_codes(num_units: int, side: int, config: OmniCTConfig, device=None) -> torch.Tensor:
    """TPE codes ``[N_s, side, side, d_z + d_y + d_x]``: P^{N_s} (+) P^{H'} (+) P^{W'} of Eq. 2.

    The depth code follows the unit index, so a volume's units (and several
    slices of one study) are told apart; rows and columns follow the patch grid.
    """
    depth = sinusoid(torch.arange(num_units, device=device), config.tpe_depth_dim)
    rows = sinusoid(torch.arange(side, device=device), config.tpe_row_dim)
    cols = sinusoid(torch.arange(side, device=device), config.tpe_col_dim)
    shape = (num_units, side, side)
    return torch.cat(
        [
            depth[:, None, None, :].expand(*shape, -1),
            rows[None, :, None, :].expand(*shape, -1),
            cols[None, None, :, :].expand(*shape, -1),
        ],
        dim=-1,
    )


def add_tri_axial_codes(features: torch.Tensor, config: OmniCTConfig) -> torch.Tensor:
    """Eq. 2: ``[N_s, H', W', d_v] -> [N_s, H', W', d_v + d_z + d_y + d_x]`` (concatenation)."""
    num_units, side = features.shape[0], features.shape[1]
    codes = tri_axial_codes(num_units, side, config, device=features.device).to(features.dtype)
    return torch.cat([features, codes], dim=-1)


def token_unshuffle(tokens: torch.Tensor, factor: int) -> torch.Tensor:
    """Eq. 3: fold each m x m block of tokens into one, ``[N, S, S, C] -> [N, ceil(S/m), ceil(S/m), m*m*C]``.

    The grid is zero-padded at the bottom and right to a multiple of m (27 -> 27
    for m = 3, 27 -> 28 for m = 2). Within a folded token the features are
    ordered by row offset, then column offset, then channel.
    """
    if factor == 1:
        return tokens
    num_units, side, _, channels = tokens.shape
    padded = math.ceil(side / factor) * factor
    if padded != side:
        tokens = nn.functional.pad(tokens, (0, 0, 0, padded - side, 0, padded - side))
    blocks = padded // factor
    tokens = tokens.reshape(num_units, blocks, factor, blocks, factor, channels)
    return tokens.permute(0, 1, 3, 2, 4, 5).reshape(num_units, blocks, blocks, factor * factor * channels)


class OmniCTHybridProjector(nn.Module):
    """MoE hybrid projection (Eq. 4): ``W_share * GELU(W_s z)`` for slices, ``W_share * GELU(W_v z)`` for volumes.

    The experts are plain routing by input kind, not learnt gating: a slice
    study never touches W_v and a volume study never touches W_s.
    """

    def __init__(self, config: OmniCTConfig):
        super().__init__()
        self.slice_expert = nn.Linear(config.projector_input_dim("slice"), config.projector_hidden_size)
        self.volume_expert = nn.Linear(config.projector_input_dim("volume"), config.projector_hidden_size)
        self.act = ACT2FN[config.projector_hidden_act]
        self.shared = nn.Linear(config.projector_hidden_size, config.text_config.hidden_size)

    def forward(self, tokens: torch.Tensor, kind: str) -> torch.Tensor:
        """``[..., (d_v + d_tpe) * m^2] -> [..., d_llm]``, ``kind`` being "slice" or "volume"."""
        expert = self.slice_expert if kind == "slice" else self.volume_expert
        return self.shared(self.act(expert(tokens)))


class OmniCTSpatialEncoder(nn.Module):
    """SCE: units -> SigLIP patch features -> TPE -> token unshuffle -> hybrid projection.

    The vision tower is frozen by default (``config.freeze_vision_tower``, as in
    both training stages of the paper); it then runs without autograd so its
    activations are not kept.
    """

    def __init__(self, config: OmniCTConfig):
        super().__init__()
        self.config = config
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = OmniCTHybridProjector(config)
        self.apply_freeze()

    def apply_freeze(self) -> None:
        """Stop gradients to the vision tower when ``config.freeze_vision_tower`` (the paper's setting)."""
        if self.config.freeze_vision_tower:
            self.vision_tower.requires_grad_(False)

    def encode_units(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Eq. 1: ``[N, 3, H, W] -> [N, H', W', d_v]`` from ``config.vision_feature_layer``.

        Units go through the tower ``config.vision_units_per_batch`` at a time,
        which bounds activation memory for large batches of volumes.
        """
        side = self.config.patches_per_side
        frozen = not any(p.requires_grad for p in self.vision_tower.parameters())
        chunks = []
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            for batch in pixel_values.split(self.config.vision_units_per_batch):
                outputs = self.vision_tower(pixel_values=batch, output_hidden_states=True)
                chunks.append(outputs.hidden_states[self.config.vision_feature_layer])
        features = torch.cat(chunks)
        return features.reshape(features.shape[0], side, side, features.shape[-1])

    def forward(self, pixel_values: torch.Tensor, num_units, image_kinds) -> list[torch.Tensor]:
        """Project every study of a batch to LLM-width token grids.

        Args:
            pixel_values: float ``[sum N_s, 3, H, W]``, the units of all studies, study after study.
            num_units: ``[B]`` units per study (ints or a long tensor).
            image_kinds: ``B`` strings, "slice" or "volume".

        Returns:
            One ``[N_s, ceil(H'/m), ceil(W'/m), d_llm]`` tensor per study, m by its kind;
            ``config.num_image_tokens(kind, N_s)`` tokens each.
        """
        num_units = [int(n) for n in num_units]
        if sum(num_units) != pixel_values.shape[0] or len(num_units) != len(image_kinds):
            raise ValueError(
                f"num_units {num_units} and {len(image_kinds)} kinds do not describe {pixel_values.shape[0]} units"
            )
        dtype = self.multi_modal_projector.shared.weight.dtype
        features = self.encode_units(pixel_values.to(self.vision_tower.dtype)).to(dtype)
        grids = []
        for study_features, kind in zip(features.split(num_units), image_kinds):
            tokens = token_unshuffle(
                add_tri_axial_codes(study_features, self.config), self.config.unshuffle_factor(kind)
            )
            grids.append(self.multi_modal_projector(tokens, kind))
        return grids


# ---- the full model ---------------------------------------------------------------------


@dataclass
class OmniCTCausalLMOutputWithPast(CausalLMOutputWithPast):
    """Output of :class:`OmniCTForConditionalGeneration`: the causal LM's output plus OSE's report.

    Attributes:
        loss: ``[]`` next-token cross-entropy, when ``labels`` were given (-100 positions ignored).
        logits: ``[B, T, vocab]`` (``[B, k, vocab]`` with ``logits_to_keep=k``).
        past_key_values: the LM's KV cache (a ``Cache``), when ``use_cache``. Its name follows the
            installed transformers (``cache`` from the releases that renamed it), because the
            fields are inherited from ``CausalLMOutputWithPast``, the name ``generate()`` reads.
        hidden_states, attentions: the LM's, when requested.
        organ_status: one entry per study when pixel data was given: ``(status, message)`` with
            status "ok", "empty" or "missing" (see :mod:`omnict_cli.model.organ_pooling`);
            ``None`` on decoding steps without pixel data.
    """

    organ_status: list[tuple[str, str]] | None = None


class OmniCTPreTrainedModel(PreTrainedModel):
    """Weights init and the transformers capabilities (SDPA, device_map, gradient checkpointing) of OmniCT."""

    config_class = OmniCTConfig
    config: OmniCTConfig
    base_model_prefix = "model"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # Never split across devices; post_init adds the language model's own (any causal LM) as well.
    _no_split_modules = ["Qwen2DecoderLayer", "SiglipEncoderLayer", "OmniCTHybridProjector"]

    def _init_weights(self, module):
        """The projector (W_s, W_v, W_share) starts as LLaVA's does: N(0, LLM initializer_range), zero bias.

        The vision tower and the language model are ``PreTrainedModel``s with their own init.
        """
        if isinstance(module, OmniCTHybridProjector):
            std = getattr(self.config.text_config, "initializer_range", 0.02)
            for linear in (module.slice_expert, module.volume_expert, module.shared):
                init.normal_(linear.weight, mean=0.0, std=std)
                init.zeros_(linear.bias)
        else:
            super()._init_weights(module)


class OmniCTForConditionalGeneration(OmniCTPreTrainedModel, GenerationMixin):
    """OmniCT: SCE image tokens + OSE organ tokens scattered into a causal LM's prompt (paper Sec. 2).

    Submodules: ``spatial_encoder`` (:class:`OmniCTSpatialEncoder`: SigLIP tower, TPE, token
    unshuffle, hybrid projector) and ``language_model`` (any ``AutoModelForCausalLM`` from
    ``config.text_config``, Qwen2 by default).

    Loading and saving are ``PreTrainedModel``'s own ``from_pretrained`` / ``save_pretrained``
    (safetensors, no remote code). The authors' released checkpoints are not loaded through a
    key map here: their projector's names are unknown and it can only be placed by shape, so
    :mod:`omnict_cli.model.release_import` converts a release once into an omnict directory.
    """

    def __init__(self, config: OmniCTConfig):
        super().__init__(config)
        self.spatial_encoder = OmniCTSpatialEncoder(config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained``, then the vision tower frozen again per the config.

        Loading replaces parameters with fresh ones that require gradients; without
        this a loaded model would train (and keep activations of) its encoder.
        Weights come from safetensors only, whoever calls: a folder of pickled
        weights is refused (:mod:`omnict_cli.model.safetensors_only`).
        """
        from omnict_cli.model.safetensors_only import require_safetensors

        if args:
            require_safetensors(args[0], "OmniCT model")
        kwargs["use_safetensors"] = True
        model = super().from_pretrained(*args, **kwargs)
        if isinstance(model, tuple):  # output_loading_info=True
            model[0].spatial_encoder.apply_freeze()
        else:
            model.spatial_encoder.apply_freeze()
        return model

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    # ---- multimodal features --------------------------------------------------------------

    def get_study_features(self, pixel_values: torch.Tensor, num_units, image_kinds, organ_masks=None):
        """SCE image tokens and OSE organ tokens of every study in the batch.

        Args:
            pixel_values: float ``[sum N_s, 3, H, W]``, all units, study after study.
            num_units: ``[B]`` units per study.
            image_kinds: ``B`` strings, "slice" or "volume".
            organ_masks: ``None`` or ``B`` entries, each a bool ``[D, H, W]`` organ mask on the study's
                preprocessed grid (``D >= N_s`` for slices, ``>= N_s * slices_per_unit`` for volumes) or
                ``None`` (global fallback, status "missing").

        Returns:
            ``(image_features, organ_features, organ_status)``: ``B`` tensors
            ``[num_image_tokens(kind, N_s), d_llm]``, ``B`` tensors ``[num_organ_tokens(kind, N_s), d_llm]``
            and ``B`` ``(status, message)`` pairs.
        """
        grids = self.spatial_encoder(pixel_values, num_units, image_kinds)
        organ_masks = [None] * len(grids) if organ_masks is None else list(organ_masks)
        if len(organ_masks) != len(grids):
            raise ValueError(f"got {len(organ_masks)} organ masks for {len(grids)} studies; use None for none")
        image_features, organ_features, organ_status = [], [], []
        for grid, kind, mask in zip(grids, image_kinds, organ_masks):
            image_features.append(grid.reshape(-1, grid.shape[-1]))  # unit, row, column: the placeholder order
            pooled = pool_organ_tokens(grid, self._organ_coverage(mask, grid, kind), kind, self.config)
            organ_features.append(pooled.tokens)
            organ_status.append((pooled.status, pooled.message))
        return image_features, organ_features, organ_status

    def _organ_coverage(self, organ_mask, grid: torch.Tensor, kind: str) -> torch.Tensor | None:
        if organ_mask is None:
            return None
        slices_per_unit = 1 if kind == "slice" else self.config.slices_per_unit
        layout = (self.config.vision_config.patch_size, self.config.unshuffle_factor(kind))
        return organ_mask_to_token_grid(
            torch.as_tensor(organ_mask, device=grid.device).bool(),
            grid.shape[0],
            slices_per_unit,
            tuple(grid.shape[1:3]),
            patch_layout=layout,
        )

    def get_placeholder_masks(self, input_ids: torch.Tensor, image_features, organ_features):
        """Boolean ``[B, T]`` masks of the image and the organ placeholders, after checking their counts.

        Each row must hold exactly as many placeholders as its study has features (the processor
        expands them with the same config); a ``ValueError`` names both numbers otherwise.
        """
        masks = []
        for what, fields, features in (
            ("image", ("slice_image_token_id", "volume_image_token_id"), image_features),
            ("organ", ("slice_organ_token_id", "volume_organ_token_id"), organ_features),
        ):
            token_ids = [getattr(self.config, field) for field in fields if getattr(self.config, field) is not None]
            if not token_ids:
                raise ValueError(
                    f"the config has no {what} placeholder token ids; set them from "
                    "add_special_tokens(tokenizer) with config.update(...)"
                )
            mask = torch.isin(input_ids, torch.tensor(token_ids, device=input_ids.device))
            found, expected = mask.sum(1).tolist(), [len(f) for f in features]
            if len(found) != len(expected):
                raise ValueError(f"input_ids has {len(found)} rows but pixel data describes {len(expected)} studies")
            for row, (n_tokens, n_features) in enumerate(zip(found, expected)):
                if n_tokens != n_features:
                    raise ValueError(
                        f"{what} placeholder tokens and features do not match in row {row}: "
                        f"tokens: {n_tokens}, features: {n_features}"
                    )
            masks.append(mask)
        return masks

    # ---- forward and generation -------------------------------------------------------

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        num_units=None,
        image_kinds=None,
        organ_masks=None,
        labels: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> OmniCTCausalLMOutputWithPast:
        """Scatter image and organ tokens into the prompt and run the language model.

        Args:
            input_ids: long ``[B, T]`` from :class:`OmniCTProcessor` (placeholders already expanded).
            attention_mask: ``[B, T]``, 0 on the left padding.
            pixel_values, num_units, image_kinds, organ_masks: the processor's outputs (see
                :meth:`get_study_features`); given on the first step only, the cache holds them after.
            labels: long ``[B, T]``, -100 where no loss is taken (prompt, padding, placeholders).
            past_key_values: the LM's cache (generation passes it under the installed name).
            inputs_embeds: ``[B, T, d_llm]`` instead of ``input_ids`` (then no pixel data).
            logits_to_keep: keep logits of the last k positions only (0 = all), as ``generate()`` asks.

        Returns:
            :class:`OmniCTCausalLMOutputWithPast`.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        organ_status = None
        if pixel_values is not None:
            if input_ids is None:
                raise ValueError("pixel_values need input_ids to locate the image and organ placeholders")
            if num_units is None or image_kinds is None:
                raise ValueError("pixel_values come with num_units and image_kinds (the processor returns them)")
            image_features, organ_features, organ_status = self.get_study_features(
                pixel_values, num_units, image_kinds, organ_masks
            )
            image_mask, organ_mask = self.get_placeholder_masks(input_ids, image_features, organ_features)
            for mask, features in ((image_mask, image_features), (organ_mask, organ_features)):
                features = torch.cat(features).to(inputs_embeds.device, inputs_embeds.dtype)
                inputs_embeds = inputs_embeds.masked_scatter(mask.unsqueeze(-1).to(inputs_embeds.device), features)
        if past_key_values is not None:
            kwargs["past_key_values"] = past_key_values
        kwargs["return_dict"] = True  # the fields are copied by name below
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        return OmniCTCausalLMOutputWithPast(**outputs, organ_status=organ_status)

    def prepare_inputs_for_generation(
        self,
        input_ids,
        pixel_values=None,
        num_units=None,
        image_kinds=None,
        organ_masks=None,
        is_first_iteration=False,
        **kwargs,
    ):
        """``GenerationMixin``'s inputs, plus the pixel data on the first step only (as LLaVA).

        Later steps feed only new tokens; their prompt positions, image and organ tokens included,
        are in the cache. Without a cache every step re-reads the whole prompt, so the pixel data goes in
        every time.
        """
        model_inputs = super().prepare_inputs_for_generation(input_ids, is_first_iteration=is_first_iteration, **kwargs)
        if is_first_iteration or not kwargs.get("use_cache", True):
            model_inputs.update(
                pixel_values=pixel_values, num_units=num_units, image_kinds=image_kinds, organ_masks=organ_masks
            )
        return model_inputs

    def _expand_inputs_for_generation(
        self,
        expand_size: int = 1,
        is_encoder_decoder: bool = False,
        input_ids: torch.LongTensor | None = None,
        **model_kwargs,
    ):
        """Repeat every per-study input ``expand_size`` times for beam search / ``num_return_sequences``.

        ``GenerationMixin`` repeats tensors row by row along dim 0, which is right for ``input_ids``
        but not for ``pixel_values`` (``[sum N_s, ...]``: a study owns ``num_units[i]`` rows) and
        misses the lists ``image_kinds`` and ``organ_masks``; as Qwen2-VL does for its images,
        those are expanded here study by study so expanded row ``i * expand_size + j`` keeps study ``i``.
        """
        per_study = {
            key: model_kwargs.pop(key, None) for key in ("pixel_values", "num_units", "image_kinds", "organ_masks")
        }
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size=expand_size, is_encoder_decoder=is_encoder_decoder, input_ids=input_ids, **model_kwargs
        )
        if expand_size > 1:
            per_study = _expand_studies(per_study, expand_size)
        model_kwargs.update(per_study)
        return input_ids, model_kwargs


def _expand_studies(per_study: dict, expand_size: int) -> dict:
    """Each study's units, unit count, kind and organ mask repeated ``expand_size`` times, in study order."""
    expanded = dict(per_study)
    num_units, pixel_values = per_study["num_units"], per_study["pixel_values"]
    if pixel_values is not None and num_units is not None:
        counts = [int(n) for n in num_units]
        blocks = pixel_values.split(counts)
        expanded["pixel_values"] = torch.cat([block for block in blocks for _ in range(expand_size)])
        expanded["num_units"] = torch.as_tensor(num_units).repeat_interleave(expand_size)
    for key in ("image_kinds", "organ_masks"):
        if per_study[key] is not None:
            expanded[key] = [item for item in per_study[key] for _ in range(expand_size)]
    return expanded
