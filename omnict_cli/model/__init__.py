"""OmniCT as a transformers model: configuration, processor and modeling.

Importing this package registers ``model_type="omnict"`` with ``AutoConfig``,
so ``AutoConfig.from_pretrained(dir)`` reads an OmniCT directory without
remote code.
"""

from transformers import AutoConfig

from omnict_cli.model.configuration_omnict import OmniCTConfig
from omnict_cli.model.modeling_omnict import (OmniCTCausalLMOutputWithPast, OmniCTForConditionalGeneration,
                                              OmniCTPreTrainedModel, OmniCTSpatialEncoder)
from omnict_cli.model.processing_omnict import OmniCTProcessor, add_special_tokens

AutoConfig.register(OmniCTConfig.model_type, OmniCTConfig, exist_ok=True)

__all__ = ["OmniCTCausalLMOutputWithPast", "OmniCTConfig", "OmniCTForConditionalGeneration", "OmniCTPreTrainedModel",
           "OmniCTProcessor", "OmniCTSpatialEncoder", "add_special_tokens"]
