"""Training OmniCT the paper's way (Sec. 2.3, Table 6): rows, tensor cache, datasets and the two-stage trainer.

- :mod:`.config`: :class:`TrainConfig`, every setting of one run and the stage defaults.
- :mod:`.rows`: JSONL chat rows (the authors' format) and readers turning a CT-RATE
  layout or a phantom set into report rows.
- :mod:`.tensor_cache`: preprocessed units + model-grid label map per study, computed
  once and kept on disk, so later epochs and runs read no CT file.
- :mod:`.dataset`: rows -> cached studies -> processor batches, in a seeded order split
  across processes.
- :mod:`.trainer`: :func:`train`, the loop (accelerate), checkpoints, resume, metrics.

Imports stay light here: ``from omnict_cli.training.trainer import train`` pulls in torch.
"""
