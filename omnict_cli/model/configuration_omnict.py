"""OmniCT model configuration: every size of the vision path, the LLM and preprocessing.

One :class:`OmniCTConfig` holds the nested SigLIP ``vision_config``, the
causal-LM ``text_config`` (Qwen2 by default) and the sizes of Spatial
Consistency Enhancement (TPE widths, token unshuffle, MoE hybrid projection)
and Organ-level Semantic Enhancement (pooled organ grid), plus the
preprocessing sizes. Token counts are computed here, in pure integer math,
so the processor (which writes placeholders) and the model (which produces
features) can never disagree. Like transformers' ``configuration_*.py``
files, this module imports no torch itself. The preprocessing sizes are
checked by building the :class:`~omnict_cli.studies.preprocess.PreprocessConfig`
they describe, so the rules live in one place.
"""

from __future__ import annotations

import math

from omnict_cli.model.dependencies import check_torchvision

check_torchvision()  # before transformers, which fails on a broken torchvision without naming it

from transformers import PretrainedConfig  # noqa: E402
from transformers.models.auto.configuration_auto import CONFIG_MAPPING, AutoConfig  # noqa: E402

KINDS = ("slice", "volume")

# siglip-so400m-patch14-384, the paper's encoder (Appendix E): 27x27 patches of width 1152.
SO400M_VISION_DEFAULTS = dict(
    hidden_size=1152,
    intermediate_size=4304,
    num_hidden_layers=27,
    num_attention_heads=16,
    patch_size=14,
    image_size=384,
)


class OmniCTConfig(PretrainedConfig):
    """Configuration of :class:`OmniCTForConditionalGeneration`.

    Args:
        vision_config: SigLIP vision config (or its dict); defaults to so400m-patch14-384.
        text_config: any causal-LM config (or its dict with ``model_type``); defaults to
            ``Qwen2Config()``. ``omnict build-model`` takes the real one from the LLM directory.
        vision_feature_layer: index into the vision tower's ``hidden_states``. Default -2, the
            penultimate layer, without the post-layernorm: the features LLaVA and
            LLaVA-OneVision (SigLIP-so400m + Qwen2, OmniCT's lineage) feed their projectors;
            the last layer is trained only to feed SigLIP's contrastive pooling head.
        freeze_vision_tower: keep the encoder's weights fixed (the paper never trains it).
        vision_units_per_batch: units sent through the encoder at once (memory knob only).
        tpe_depth_dim, tpe_row_dim, tpe_col_dim: widths d_z, d_y, d_x of the sinusoidal
            tri-axial codes concatenated to each patch feature (Eq. 2). Even; 0 disables one axis.
        slice_unshuffle, volume_unshuffle: m of the m x m token unshuffle (Eq. 3): 1 keeps a
            slice's 27x27 tokens, 3 turns a volume unit's 27x27 into 9x9 (Sec. 4.3: 81 per unit).
        projector_hidden_size: output width of W_s and W_v, input of W_share (Eq. 4);
            defaults to the LLM width.
        projector_hidden_act: the activation sigma of Eq. 4 (GELU in the paper).
        ose_slice_grid: a slice's organ tokens are pooled to this g x g grid (9 -> L_c = 81).
        ose_volume_grid: each volume unit's organ tokens are pooled to g x g (3 -> N_s x 9 = 90).
        slice_image_token_id, volume_image_token_id, slice_organ_token_id, volume_organ_token_id:
            ids of ``<|image2d|>``, ``<|image3d|>``, ``<|mask2d|>``, ``<|mask3d|>`` once added to
            the tokenizer; ``None`` until a tokenizer is attached.
        hu_window, volume_size, slice_size, slices_per_unit, antialias: preprocessing sizes
            (Appendix E: [-1000, 1000] HU, 32x384x384); see :meth:`preprocess_config`.
    """

    model_type = "omnict"
    sub_configs = {"vision_config": AutoConfig, "text_config": AutoConfig}

    vision_config: dict | PretrainedConfig | None = None
    text_config: dict | PretrainedConfig | None = None
    vision_feature_layer: int = -2
    freeze_vision_tower: bool = True
    vision_units_per_batch: int = 32
    tpe_depth_dim: int = 64
    tpe_row_dim: int = 64
    tpe_col_dim: int = 64
    slice_unshuffle: int = 1
    volume_unshuffle: int = 3
    projector_hidden_size: int | None = None
    projector_hidden_act: str = "gelu"
    ose_slice_grid: int = 9
    ose_volume_grid: int = 3
    slice_image_token_id: int | None = None
    volume_image_token_id: int | None = None
    slice_organ_token_id: int | None = None
    volume_organ_token_id: int | None = None
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    volume_size: tuple[int, int, int] = (32, 384, 384)
    slice_size: tuple[int, int] = (384, 384)
    slices_per_unit: int = 3
    antialias: bool = True
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        self.vision_config = _sub_config(self.vision_config, "siglip_vision_model", SO400M_VISION_DEFAULTS)
        self.text_config = _sub_config(self.text_config, "qwen2", {})
        if self.vision_config.model_type.startswith("siglip"):
            # SigLIP's attention-pooling head feeds its contrastive loss; OmniCT reads hidden states,
            # so the head is not built (fewer weights, and no nn.MultiheadAttention, which
            # accelerate cannot offload under device_map).
            self.vision_config.vision_use_head = False
        # JSON turns tuples into lists; keep them tuples so equality and hashing behave.
        self.hu_window = tuple(float(v) for v in self.hu_window)
        self.volume_size = tuple(int(v) for v in self.volume_size)
        self.slice_size = tuple(int(v) for v in self.slice_size)
        if self.projector_hidden_size is None:
            self.projector_hidden_size = self.text_config.hidden_size
        super().__post_init__(**kwargs)
        self._validate()

    # ---- validation -------------------------------------------------------------------

    def _validate(self):
        """Raise ``ValueError`` for values the model or preprocessing could not honour."""
        self._validate_vision()
        self._validate_sizes()
        self._validate_token_ids()
        self._validate_preprocessing()

    def _validate_vision(self):
        layers = self.vision_config.num_hidden_layers
        if not -(layers + 1) <= self.vision_feature_layer <= layers:
            raise ValueError(
                f"vision_feature_layer must index the encoder's {layers + 1} hidden states "
                f"(-{layers + 1}..{layers}), got {self.vision_feature_layer}"
            )
        if self.patches_per_side < 1:
            raise ValueError(
                f"vision image_size {self.vision_config.image_size} is smaller than one "
                f"patch of {self.vision_config.patch_size}"
            )
        if self.vision_units_per_batch < 1:
            raise ValueError(f"vision_units_per_batch must be >= 1, got {self.vision_units_per_batch}")

    def _validate_sizes(self):
        for name in ("tpe_depth_dim", "tpe_row_dim", "tpe_col_dim"):
            width = getattr(self, name)
            if width < 0 or width % 2:
                raise ValueError(f"{name} must be an even width >= 0 (sine and cosine halves), got {width}")
        for name in ("slice_unshuffle", "volume_unshuffle"):
            factor = getattr(self, name)
            if not 1 <= factor <= self.patches_per_side:
                raise ValueError(f"{name} must be in 1..{self.patches_per_side} (patches per side), got {factor}")
        for name in ("projector_hidden_size", "ose_slice_grid", "ose_volume_grid"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def _validate_token_ids(self):
        ids = {name: getattr(self, name) for name in TOKEN_ID_FIELDS}
        for name, token_id in ids.items():
            if token_id is not None and token_id < 0:
                raise ValueError(f"{name} must be a token id >= 0 or None, got {token_id}")
        set_ids = [token_id for token_id in ids.values() if token_id is not None]
        if len(set(set_ids)) != len(set_ids):
            raise ValueError(f"image and organ placeholder token ids must differ, got {ids}")

    def _validate_preprocessing(self):
        self.preprocess_config()  # PreprocessConfig owns the rules for window and grid sizes
        side = self.vision_config.image_size
        # SigLIP's position embeddings are learnt for one image size; units must arrive at that size.
        for name, size in (("volume_size", self.volume_size[1:]), ("slice_size", self.slice_size)):
            if tuple(size) != (side, side):
                raise ValueError(
                    f"{name} in-plane {tuple(size)} must equal the vision encoder's image_size ({side}, {side})"
                )

    # ---- sizes shared by processor and model -------------------------------------------

    @property
    def patches_per_side(self) -> int:
        """H' = W': patch tokens per side of one unit (27 for so400m-patch14-384)."""
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def tpe_dim(self) -> int:
        """d_z + d_y + d_x, the width TPE appends to each patch feature (Eq. 2)."""
        return self.tpe_depth_dim + self.tpe_row_dim + self.tpe_col_dim

    @property
    def units_per_volume(self) -> int:
        """N_s = floor(D / slices_per_unit): 10 for 32 slices of 3."""
        return self.volume_size[0] // self.slices_per_unit

    def unshuffle_factor(self, kind: str) -> int:
        """m of Eq. 3 for ``kind`` ("slice" or "volume")."""
        return self.slice_unshuffle if _check_kind(kind) == "slice" else self.volume_unshuffle

    def tokens_per_side(self, kind: str) -> int:
        """Token grid side after unshuffle: ceil(H' / m), the grid being zero-padded to a multiple of m."""
        return math.ceil(self.patches_per_side / self.unshuffle_factor(kind))

    def projector_input_dim(self, kind: str) -> int:
        """Input width of W_s or W_v: (d_v + d_z + d_y + d_x) * m^2 (Eq. 3-4)."""
        return (self.vision_config.hidden_size + self.tpe_dim) * self.unshuffle_factor(kind) ** 2

    def organ_grid(self, kind: str) -> int:
        """Side g of the g x g grid each unit's organ tokens are pooled to."""
        return self.ose_slice_grid if _check_kind(kind) == "slice" else self.ose_volume_grid

    def num_image_tokens(self, kind: str, num_units: int) -> int:
        """L = N_s * ceil(H'/m)^2: 729 for one slice, 810 for a 10-unit volume (m = 3)."""
        return _check_units(num_units) * self.tokens_per_side(kind) ** 2

    def num_organ_tokens(self, kind: str, num_units: int) -> int:
        """L_c = N_s * g^2: 81 for one slice (9x9), 90 for a 10-unit volume (10 x 3 x 3).

        Several independent slices are several units, each pooled to its own 9x9 grid.
        """
        return _check_units(num_units) * self.organ_grid(kind) ** 2

    def preprocess_config(self):
        """The :class:`omnict_cli.studies.preprocess.PreprocessConfig` these sizes describe (and validates).

        Imported here, not at module level: preprocessing is not needed to read a config.
        """
        from omnict_cli.studies.preprocess import PreprocessConfig

        return PreprocessConfig(
            hu_window=self.hu_window,
            volume_size=self.volume_size,
            slice_size=self.slice_size,
            slices_per_unit=self.slices_per_unit,
            antialias=self.antialias,
        )


TOKEN_ID_FIELDS = ("slice_image_token_id", "volume_image_token_id", "slice_organ_token_id", "volume_organ_token_id")


def _sub_config(value, default_type: str, defaults: dict) -> PretrainedConfig:
    """Build a nested config from a config object, a dict with ``model_type``, or ``None`` (defaults)."""
    if value is None:
        return CONFIG_MAPPING[default_type](**defaults)
    if isinstance(value, dict):
        model_type = value.get("model_type", default_type)
        if model_type not in CONFIG_MAPPING:
            raise ValueError(f"unknown model_type {model_type!r} in a nested OmniCT config")
        return CONFIG_MAPPING[model_type](**{k: v for k, v in value.items() if k != "model_type"})
    return value


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


def _check_units(num_units: int) -> int:
    if num_units < 1:
        raise ValueError(f"num_units must be >= 1, got {num_units}")
    return num_units


AutoConfig.register(OmniCTConfig.model_type, OmniCTConfig, exist_ok=True)
