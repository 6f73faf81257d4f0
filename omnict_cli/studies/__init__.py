"""How a study comes in: find it, read it, put it in the canonical orientation, preprocess it.

``discover`` walks a folder into ``Study`` objects with stable ids; ``load``
reads one with the format's reader in ``readers/`` into a ``Volume`` (HU,
canonical ``[z, y, x]`` orientation, PHI-free metadata); ``preprocess`` windows
and resamples it for the model; ``prepare`` chains the two; ``inspection``
reports what loads. Nothing here knows of the model, the segmenters or the run.
"""
