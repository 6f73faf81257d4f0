"""Refuse, with one clear line, an installed torchvision that cannot load with this torch.

Why: transformers imports torchvision whenever it is installed, and a
torchvision built for another torch (the usual case after
``pip install .[seg]`` on a CPU-only torch: TotalSegmentator pulls timm,
timm pulls the CUDA torchvision wheel from PyPI) fails inside that import
with ``operator torchvision::nms does not exist``, which transformers turns
into "Could not import module 'PreTrainedModel'". Nothing in that message
names torchvision, so we check it first and say what to do.
"""

from __future__ import annotations

import importlib.util

from omnict_cli.errors import OmnictError


class BrokenDependencyError(OmnictError):
    """An installed package cannot be imported, so the model code cannot load."""


def installed_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def check_torchvision() -> None:
    """Raise :class:`BrokenDependencyError` when torchvision is installed but does not import.

    Nothing happens when torchvision is absent (omnict does not need it) or imports fine.
    """
    if importlib.util.find_spec("torchvision") is None:
        return
    try:
        import torchvision  # noqa: F401  (the import itself is the check)
    except Exception as error:  # noqa: BLE001  (any failure here breaks transformers' model imports)
        import torch

        problem = " ".join(str(error).split()) or type(error).__name__
        raise BrokenDependencyError(
            f"torchvision {installed_version('torchvision')} is installed but cannot be imported with torch "
            f"{torch.__version__} ({problem}), and transformers imports it whenever it is installed",
            hint="Install the torchvision build made for this torch, or remove it: pip uninstall torchvision "
            "(omnict does not need it; on a CPU-only torch the [seg] extra's timm pulls a CUDA torchvision)",
        ) from error
