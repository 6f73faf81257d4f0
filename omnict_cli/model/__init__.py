"""OmniCT as a transformers model: configuration, processor and modeling.

Importing this package registers ``model_type="omnict"`` with ``AutoConfig``,
so ``AutoConfig.from_pretrained(dir)`` reads an OmniCT directory without
remote code.
"""

from omnict_cli.model.dependencies import check_torchvision

check_torchvision()

from transformers import AutoConfig  # noqa: E402  (after the check, which names the broken package)

from omnict_cli.model.configuration_omnict import OmniCTConfig  # noqa: E402
from omnict_cli.model.modeling_omnict import (  # noqa: E402
    OmniCTCausalLMOutputWithPast,
    OmniCTForConditionalGeneration,
    OmniCTPreTrainedModel,
    OmniCTSpatialEncoder,
)
from omnict_cli.model.processing_omnict import OmniCTProcessor, add_special_tokens  # noqa: E402

AutoConfig.register(OmniCTConfig.model_type, OmniCTConfig, exist_ok=True)

__all__ = [
    "OmniCTCausalLMOutputWithPast",
    "OmniCTConfig",
    "OmniCTForConditionalGeneration",
    "OmniCTPreTrainedModel",
    "OmniCTProcessor",
    "OmniCTSpatialEncoder",
    "add_special_tokens",
]
