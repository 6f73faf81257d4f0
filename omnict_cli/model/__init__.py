"""OmniCT as a transformers model: configuration, processor and modeling.

The names below are imported on first use (PEP 562), not with the package:
``omnict_cli.model.sources`` and the other light modules are read by every
command, and torch + transformers take seconds to import. Importing the
configuration (any of the names does) registers ``model_type="omnict"`` with
``AutoConfig``, so ``AutoConfig.from_pretrained(dir)`` reads an OmniCT
directory without remote code.
"""

import importlib

_EXPORTS = {
    "OmniCTConfig": "configuration_omnict",
    "OmniCTCausalLMOutputWithPast": "modeling_omnict",
    "OmniCTForConditionalGeneration": "modeling_omnict",
    "OmniCTPreTrainedModel": "modeling_omnict",
    "OmniCTSpatialEncoder": "modeling_omnict",
    "OmniCTProcessor": "processing_omnict",
    "add_special_tokens": "processing_omnict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from omnict_cli.model.dependencies import check_torchvision

    check_torchvision()  # before transformers, which fails on a broken torchvision without naming it
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
