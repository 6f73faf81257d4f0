"""Weights are read from safetensors only: a folder that offers pickled weights is refused, with how to convert them.

A ``pytorch_model.bin``, ``.pt``, ``.pth``, ``.ckpt`` or ``.pkl`` file is a
Python pickle: loading it can run any code its author put in it, and even a
restricted unpickler is one bug away from doing so. omnict never unpickles
anything (``shared/DESIGN.md``); every loader of model weights (``report``,
``ask``, ``train``, ``build-model``, the BERTScore model) calls
:func:`require_safetensors` first, so the user gets one line naming the
folder and the three lines of Python that convert the file, to be run where
the file's origin is trusted.
"""

from __future__ import annotations

from pathlib import Path

from omnict_cli.errors import OmnictError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

CONVERT_SNIPPET = (
    'python -c "import torch; from safetensors.torch import save_file; '
    "weights = torch.load('{name}', weights_only=True); "
    "save_file({{k: v.contiguous().clone() for k, v in weights.items()}}, 'model.safetensors', "
    "metadata={{'format': 'pt'}})\""
)
"""The conversion a user runs in the folder, in an environment where the pickle's origin is trusted."""


class PickledWeightsError(OmnictError):
    """A model folder whose weights exist only as pickles (or not at all)."""


def pickled_weight_files(directory: str | Path) -> list[Path]:
    """The pickle weight files in ``directory`` (not recursive), sorted."""
    return sorted(path for path in Path(directory).iterdir() if path.suffix.lower() in PICKLE_SUFFIXES)


def require_safetensors(directory: str | Path, what: str = "model") -> None:
    """Raise :class:`PickledWeightsError` unless ``directory`` holds ``*.safetensors`` weights.

    A folder with both keeps working: only the safetensors are read (every
    loader passes ``use_safetensors=True``).
    """
    directory = Path(directory)
    if not directory.is_dir() or any(directory.glob("*.safetensors")):
        return
    pickles = pickled_weight_files(directory)
    if pickles:
        raise PickledWeightsError(
            f"the {what} weights are pickles ({', '.join(p.name for p in pickles[:3])}), which omnict never "
            "loads (a pickle can run code)",
            path=directory,
            hint="Convert them to safetensors once, where the file's origin is trusted: "
            + CONVERT_SNIPPET.format(name=pickles[0].name),
        )
    raise PickledWeightsError(
        f"no *.safetensors weights for the {what}",
        path=directory,
        hint="Point at a Hugging Face model folder saved with safetensors (save_pretrained does by default)",
    )
