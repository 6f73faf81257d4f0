"""OmniCT modeling: Spatial Consistency Enhancement (paper Sec. 2.1, Eq. 1-4).

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
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import AutoModel
from transformers.activations import ACT2FN

from omnict_cli.model.configuration_omnict import OmniCTConfig

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
    return torch.cat([depth[:, None, None, :].expand(*shape, -1),
                      rows[None, :, None, :].expand(*shape, -1),
                      cols[None, None, :, :].expand(*shape, -1)], dim=-1)


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
        if config.freeze_vision_tower:
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
            raise ValueError(f"num_units {num_units} and {len(image_kinds)} kinds do not describe "
                             f"{pixel_values.shape[0]} units")
        dtype = self.multi_modal_projector.shared.weight.dtype
        features = self.encode_units(pixel_values.to(self.vision_tower.dtype)).to(dtype)
        grids = []
        for study_features, kind in zip(features.split(num_units), image_kinds):
            tokens = token_unshuffle(add_tri_axial_codes(study_features, self.config),
                                     self.config.unshuffle_factor(kind))
            grids.append(self.multi_modal_projector(tokens, kind))
        return grids
