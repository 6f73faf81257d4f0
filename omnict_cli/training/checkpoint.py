"""Checkpoints a run can resume from exactly, written without pickle.

``<out>/checkpoints/step-<N>/`` holds:

- the model as an HF directory (``config.json``, ``model.safetensors``,
  ``generation_config.json``, tokenizer files): loadable on its own with
  ``OmniCTForConditionalGeneration.from_pretrained``;
- ``optimizer.safetensors``: AdamW's moments and step counts, one tensor per
  parameter name and field (``language_model.model.norm.weight/exp_avg``), with
  the parameter groups' hyperparameters as JSON in the metadata;
- ``rng-rank<k>.safetensors``: each process's torch (CPU and CUDA), numpy and
  Python random states;
- ``trainer_state.json``: optimizer steps done, the plan's sizes, elapsed time
  and the run's settings. The learning-rate schedule is a function of the
  step and the data order a function of (seed, epoch, step), so this is the
  whole scheduler and data position.

A checkpoint is built in ``.step-<N>.partial`` and renamed into place when
complete, so a run killed while saving leaves the previous checkpoint as the
latest one. Under DeepSpeed or FSDP the optimizer is sharded across
processes; there accelerate's own ``save_state`` writes it (``accelerate_state/``,
which uses torch's pickle-based format for the optimizer shards).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from omnict_cli.atomic import write_text_atomically
from omnict_cli.errors import OmnictError

CHECKPOINT_FORMAT = "omnict-train-checkpoint/1"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
SHARDED_STATE_DIR = "accelerate_state"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(OmnictError):
    """A checkpoint cannot be resumed from."""


def checkpoints_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "checkpoints"


def list_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every complete checkpoint under ``out_dir``, oldest first."""
    found = []
    folder = checkpoints_dir(out_dir)
    if folder.is_dir():
        for path in folder.iterdir():
            match = _STEP_DIR.match(path.name)
            if match and (path / STATE_FILE).is_file():
                found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(out_dir)
    return checkpoints[-1][1] if checkpoints else None


def is_sharded(accelerator) -> bool:
    """DeepSpeed and FSDP shard the optimizer; plain and DDP runs hold it whole on every process."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)


def save_model_dir(folder: Path, accelerator, model, processor, dtype: torch.dtype) -> None:
    """The model (weights cast to ``dtype``) and tokenizer as an HF directory; every process must call it."""
    state_dict = accelerator.get_state_dict(model)  # gathers shards under DeepSpeed ZeRO-3 / FSDP
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(
            folder, state_dict=_cast(state_dict, dtype), safe_serialization=True
        )
        _record_dtype(Path(folder) / "config.json", dtype)
        processor.save_pretrained(folder)


def _cast(state_dict: dict, dtype: torch.dtype) -> dict:
    """Floating tensors cast to ``dtype`` on the CPU; tensors that shared memory (tied embeddings) still do,
    so ``save_pretrained`` keeps writing them once."""
    cast: dict = {}
    result = {}
    for name, tensor in state_dict.items():
        identity = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.device)
        if identity not in cast:
            cast[identity] = tensor.detach().to("cpu", dtype if tensor.is_floating_point() else tensor.dtype)
        result[name] = cast[identity]
    return result


def _record_dtype(config_file: Path, dtype: torch.dtype) -> None:
    """``save_pretrained`` writes the dtype of the model in memory (float32 master weights); write the stored one,
    which ``from_pretrained(dtype="auto")`` and omnict's loaders read."""
    config = json.loads(config_file.read_text())
    config["dtype"] = str(dtype).removeprefix("torch.")
    write_text_atomically(config_file, json.dumps(config, indent=2, sort_keys=True) + "\n")


def save_checkpoint(
    out_dir: Path,
    step: int,
    accelerator,
    model,
    processor,
    optimizer,
    parameter_names,
    state: dict,
    model_dtype: torch.dtype,
    keep: int | None = None,
) -> Path:
    """Write ``checkpoints/step-<step>`` (every process calls this); returns its folder."""
    folder = checkpoints_dir(out_dir)
    final, staging = folder / f"step-{step}", folder / f".step-{step}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    save_model_dir(staging, accelerator, model, processor, model_dtype)
    if is_sharded(accelerator):
        accelerator.save_state(str(staging / SHARDED_STATE_DIR))
    elif accelerator.is_main_process:
        _save_optimizer(staging / OPTIMIZER_FILE, optimizer, parameter_names)
    _save_rng(staging / f"rng-rank{accelerator.process_index}.safetensors")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_text_atomically(staging / STATE_FILE, json.dumps({"format": CHECKPOINT_FORMAT, **state}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        if keep is not None:
            for _, old in list_checkpoints(out_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def read_state(checkpoint: Path) -> dict:
    """``trainer_state.json`` of a checkpoint, checked for its format."""
    try:
        state = json.loads((checkpoint / STATE_FILE).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {STATE_FILE} ({error})", path=checkpoint) from error
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"not an omnict training checkpoint (format {state.get('format')!r})", path=checkpoint)
    return state


def load_checkpoint(checkpoint: Path, accelerator, optimizer, parameter_names) -> dict:
    """Restore the optimizer and this process's RNGs from ``checkpoint``; returns its trainer state.

    The model weights are not read here: the trainer loads the checkpoint folder as its model.
    """
    state = read_state(checkpoint)
    if is_sharded(accelerator):
        accelerator.load_state(str(checkpoint / SHARDED_STATE_DIR))
    else:
        _load_optimizer(checkpoint / OPTIMIZER_FILE, optimizer, parameter_names)
    rng_file = checkpoint / f"rng-rank{accelerator.process_index}.safetensors"
    if rng_file.is_file():
        _load_rng(rng_file)
    return state


# ---- optimizer state by parameter name --------------------------------------------------


def _save_optimizer(path: Path, optimizer, parameter_names: list[str]) -> None:
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors = {}
    for index, name in enumerate(parameter_names):
        for field, value in state["state"].get(index, {}).items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{name}/{field}"] = value.detach().to("cpu").contiguous().clone()
    groups = [
        {key: list(value) if isinstance(value, tuple) else value for key, value in group.items()}
        for group in state["param_groups"]
    ]
    save_file(
        tensors,
        str(path),
        metadata={"param_groups": json.dumps(groups), "parameter_names": json.dumps(parameter_names)},
    )


def _load_optimizer(path: Path, optimizer, parameter_names: list[str]) -> None:
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError("has no optimizer state", path=path.parent)
    with safe_open(str(path), framework="pt") as stream:
        metadata = stream.metadata() or {}
        saved_names = json.loads(metadata.get("parameter_names", "[]"))
        if saved_names != parameter_names:
            raise CheckpointError(
                "its optimizer trained other parameters than this run does "
                f"({len(saved_names)} saved, {len(parameter_names)} now)",
                path=path.parent,
                hint="Resume with the same --stage and --train-vision",
            )
        per_parameter: dict[int, dict] = {}
        index_of = {name: index for index, name in enumerate(parameter_names)}
        for key in stream.keys():
            name, _, field = key.rpartition("/")
            per_parameter.setdefault(index_of[name], {})[field] = stream.get_tensor(key)
    groups = json.loads(metadata["param_groups"])
    for group in groups:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": per_parameter, "param_groups": groups})


# ---- random number generators ----------------------------------------------------------


def _save_rng(path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{index}"] = cuda_state
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss = random.getstate()
    metadata = {
        "numpy": json.dumps([name, int(position), int(has_gauss), float(cached_gaussian)]),
        "python": json.dumps([version, list(internal), gauss]),
    }
    save_file(tensors, str(path), metadata=metadata)


def _load_rng(path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as stream:
        metadata = stream.metadata() or {}
        torch.set_rng_state(stream.get_tensor("torch_cpu"))
        cuda_keys = sorted(key for key in stream.keys() if key.startswith("torch_cuda_"))
        if cuda_keys and torch.cuda.is_available() and len(cuda_keys) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([stream.get_tensor(key) for key in cuda_keys])
        keys = stream.get_tensor("numpy_keys").numpy().astype(np.uint32)
    name, position, has_gauss, cached_gaussian = json.loads(metadata["numpy"])
    np.random.set_state((name, keys, position, has_gauss, cached_gaussian))
    version, internal, gauss = json.loads(metadata["python"])
    random.setstate((version, tuple(internal), gauss))
