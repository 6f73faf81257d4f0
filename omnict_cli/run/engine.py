"""The model side of ``report`` and ``ask``: find the model, load it once, turn a batch of prepared studies into text.

Model resolution: ``--model`` > ``$OMNICT_MODEL`` > the bundled demo model
(``models/omnict-demo`` beside the package in a source checkout or the
Docker image, or ``<prefix>/share/omnict/models/omnict-demo`` from a wheel).
A given value may be a directory, a hub id or a release checkpoint
(``omnict_cli.model.sources.resolve_model``).

Every record carries the model's identity, ``{"name", "revision", "source"}``
(``source``: the hub id and commit, or the path as given), so a resumed run
can refuse to mix two models in one file; only the revision decides that,
so the same weights reached two ways may share a file. The revision hashes
the weights' index (the safetensors headers: tensor names, shapes, dtypes)
and 64 KiB samples spread evenly through every weights file, so two
checkpoints of the same architecture get different revisions without
reading a 15 GB model end to end.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omnict_cli.errors import OmnictError

if TYPE_CHECKING:  # importing omnict_cli.model loads transformers: at call time only
    from omnict_cli.model.sources import ResolvedSource

MODEL_ENV = "OMNICT_MODEL"
DEMO_MODEL_NAME = "omnict-demo"
_SAMPLES_PER_FILE = 64
_SAMPLE_BYTES = 64 * 1024


class ModelError(OmnictError):
    """No usable model: none given, or the directory is not an OmniCT model."""


def bundled_model_dirs() -> list[Path]:
    """Where the bundled demo model can be: the source tree (editable install, Docker) or a wheel's data."""
    package_root = Path(__file__).resolve().parents[1]  # omnict_cli/
    return [
        package_root.parent / "models" / DEMO_MODEL_NAME,
        Path(sys.prefix) / "share" / "omnict" / "models" / DEMO_MODEL_NAME,
    ]


def resolve_model(model: str | Path | None, echo=print) -> ResolvedSource:
    """The model to use (see the module notes); raises ModelError saying where the bad value came from.

    ``--model`` and ``$OMNICT_MODEL`` take an omnict model directory, a hub id
    ``org/name[@revision]`` or a checkpoint in the authors' release layout
    (imported on first use into omnict's cache; ``echo`` says so).
    """
    if model:
        return _checked_source(str(model), "--model", echo)
    if os.environ.get(MODEL_ENV):
        return _checked_source(os.environ[MODEL_ENV], f"${MODEL_ENV}", echo)
    for candidate in bundled_model_dirs():
        if (candidate / "config.json").is_file():
            from omnict_cli.model.sources import ResolvedSource

            return ResolvedSource(path=candidate, given=str(candidate))
    raise ModelError(
        "no model to run: none was given and the bundled demo model is not installed",
        hint=f"pass --model or set {MODEL_ENV} to a model directory (from `omnict train`, `omnict train-demo` "
        "or `omnict build-model`), a hub id such as Alibaba-DAMO-Academy/OmniCT-3B, or a release checkpoint",
    )


def resolve_model_dir(model: str | Path | None) -> Path:
    """The local directory of ``resolve_model(model)``."""
    return resolve_model(model).path


def _checked_source(value: str, where: str, echo) -> ResolvedSource:
    from omnict_cli.model.sources import resolve_model as resolve_model_source

    try:
        return resolve_model_source(value, echo=echo)
    except OmnictError as error:
        raise ModelError(f"{error.message} (from {where})", path=error.path, hint=error.hint) from error


def _weight_files(model_dir: Path) -> list[Path]:
    return sorted(model_dir.glob("*.safetensors"))


def weights_revision(model_dir: str | Path) -> str:
    """``sha256:<hex>`` of the weights' index and evenly spread samples of every weights file."""
    digest = hashlib.sha256()
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        digest.update(index.read_bytes())
    for path in _weight_files(model_dir):
        digest.update(path.name.encode())
        _hash_safetensors_file(digest, path)
    return f"sha256:{digest.hexdigest()}"


def _hash_safetensors_file(digest, path: Path) -> None:
    size = path.stat().st_size
    digest.update(size.to_bytes(8, "little"))
    with open(path, "rb") as stream:
        header_length = int.from_bytes(stream.read(8), "little")
        digest.update(stream.read(min(header_length, size)))
        data_start = 8 + header_length
        span = max(size - data_start, 0)
        step = max(span // _SAMPLES_PER_FILE, 1)
        for offset in range(data_start, size, max(step, _SAMPLE_BYTES)):
            stream.seek(offset)
            digest.update(stream.read(_SAMPLE_BYTES))


@dataclass(frozen=True)
class ModelIdentity:
    """What records say about the model: ``name``, ``revision`` and, when known, ``source`` (where it came from)."""

    name: str
    revision: str
    source: dict | None = None

    def to_dict(self) -> dict:
        identity = {"name": self.name, "revision": self.revision}
        if self.source is not None:
            identity["source"] = dict(self.source)
        return identity


def model_identity(model_dir: str | Path, source: ResolvedSource | None = None) -> ModelIdentity:
    """Name from the hub repo or the directory as given (not the cache folder an import lives in)."""
    model_dir = Path(model_dir).resolve()
    if source is None:
        return ModelIdentity(name=model_dir.name, revision=weights_revision(model_dir))
    if source.hub_id:
        name = source.hub_id.rsplit("/", 1)[-1]
    else:
        name = Path(source.given or source.path).expanduser().resolve().name
    return ModelIdentity(name=name, revision=weights_revision(model_dir), source=source.to_dict())


def pick_device(device: str) -> str:
    """``auto`` -> ``cuda`` (``cuda:<LOCAL_RANK>`` under ``accelerate launch``) when a GPU is visible, else ``cpu``."""
    import torch

    if device != "auto":
        return device
    if not torch.cuda.is_available():
        return "cpu"
    local_rank = os.environ.get("LOCAL_RANK")
    return f"cuda:{local_rank}" if local_rank is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1 else "cuda"


def pick_dtype(dtype: str, device: str):
    """``auto`` -> bfloat16 on a GPU, float32 on the CPU (the paper infers in bf16)."""
    import torch

    from omnict_cli.model.build import DTYPES

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return DTYPES[dtype]


@dataclass(frozen=True)
class GenerationSettings:
    """How text is generated: greedy (``num_beams=1``) or beam search, at most ``max_new_tokens``."""

    max_new_tokens: int = 512
    num_beams: int = 1


class Engine:
    """A loaded OmniCT model and processor on one device: prompts + prepared studies in, texts out."""

    def __init__(self, model, processor, identity: ModelIdentity, device: str):
        self.model = model
        self.processor = processor
        self.identity = identity
        self.device = device
        self._sentence_ends = None
        self._phrase_ends = None

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "auto",
        dtype: str = "auto",
        source: ResolvedSource | None = None,
        identity: ModelIdentity | None = None,
    ) -> Engine:
        """Load from a local directory (safetensors only, no remote code); raises ModelError when it cannot.

        ``source`` (from ``resolve_model``) is where the directory came from, for the records;
        ``identity``, when the caller has already computed it, saves hashing the weights again.
        """
        from transformers.utils import logging as transformers_logging

        from omnict_cli.model import OmniCTForConditionalGeneration, OmniCTProcessor

        device = pick_device(device)
        transformers_logging.disable_progress_bar()  # the run has its own progress bar
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()
        try:
            model = OmniCTForConditionalGeneration.from_pretrained(
                model_dir, dtype=pick_dtype(dtype, device), local_files_only=True, use_safetensors=True
            )
            processor = OmniCTProcessor.from_pretrained(model_dir)
        except (OSError, ValueError, KeyError) as error:
            raise ModelError(f"cannot load the model ({type(error).__name__}: {error})", path=model_dir) from error
        finally:
            transformers_logging.set_verbosity(verbosity)
        try:
            model.to(device).eval()
        except (RuntimeError, AssertionError, ValueError) as error:  # no such device, CUDA not compiled in
            raise ModelError(
                f"cannot use device {device!r} ({error})",
                path=model_dir,
                hint="Pass --device cpu, or a device this machine has (cuda, cuda:1, ...)",
            ) from error
        return cls(model, processor, identity or model_identity(model_dir, source), device)

    @property
    def preprocess_config(self):
        """The preprocessing sizes this model was trained with."""
        return self.model.config.preprocess_config()

    def describe(self) -> str:
        """One line: name, parameters, device, dtype."""
        parameters = sum(p.numel() for p in self.model.parameters())
        dtype = str(self.model.dtype).replace("torch.", "")
        return f"model {self.identity.name}: {_count(parameters)} parameters on {self.device}, {dtype}"

    def generate(
        self,
        questions: list[str],
        model_inputs: list,
        organ_masks: list,
        settings: GenerationSettings = GenerationSettings(),
        open_answer: bool = False,
    ) -> list[str]:
        """One generated text per study (greedy or beam search); studies may mix slices and volumes.

        A row stops early once it has completed one sentence three times (a loop, :mod:`omnict_cli.run.repeats`).
        ``open_answer`` (open questions, :mod:`omnict_cli.run.answers`): the answer may not begin with
        "Yes" or "No", and a row stops at its first phrase end.
        """
        import torch

        batch = self.processor(questions, model_inputs, organ_masks=organ_masks)
        prompt_length = batch["input_ids"].shape[1]
        stops = [self._repeat_stop(prompt_length)]
        options = {}
        if open_answer:
            stops.append(self._phrase_stop(prompt_length))
            if self.answers_yes_no:
                options["begin_suppress_tokens"] = list(self._yes_no_ids)
        with torch.inference_mode():
            output = self.model.generate(
                **self._on_device(batch),
                max_new_tokens=settings.max_new_tokens,
                num_beams=settings.num_beams,
                do_sample=False,
                stopping_criteria=stops,
                **options,
            )
        return [text.strip() for text in self.processor.decode(output[:, prompt_length:])]

    @property
    def answers_yes_no(self) -> bool:
        """Whether :meth:`answer_yes_no` can work: the tokenizer has distinct first tokens for "Yes" and "No"."""
        from omnict_cli.run.answers import yes_no_token_ids

        if not hasattr(self, "_yes_no_ids"):
            self._yes_no_ids = yes_no_token_ids(self.processor.tokenizer)
        return self._yes_no_ids is not None

    def answer_yes_no(self, questions: list[str], model_inputs: list, organ_masks: list) -> list:
        """Per study, a :class:`~omnict_cli.run.answers.YesNoAnswer`: P("Yes") and P("No") as the answer's first token.

        One forward pass over the prompts, no generation. The prompts are left padded, so the last
        position of every row is where the answer starts; positions count from each row's first real
        token, as in ``generate()``.
        """
        import torch

        from omnict_cli.run.answers import YesNoAnswer

        if not self.answers_yes_no:
            raise ValueError("this model's tokenizer does not tell 'Yes' from 'No' by their first token")
        yes, no = self._yes_no_ids
        inputs = self._on_device(self.processor(questions, model_inputs, organ_masks=organ_masks))
        positions = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = self.model(**inputs, position_ids=positions, use_cache=False, logits_to_keep=1).logits[:, -1]
        probabilities = logits.float().softmax(dim=-1)
        return [YesNoAnswer(float(row[yes]), float(row[no])) for row in probabilities]

    def _on_device(self, batch) -> dict:
        """The processor's batch on the model's device, pixels in the model's dtype."""
        import torch

        inputs = {
            key: value.to(self.device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()
        }
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        if inputs.get("organ_masks") is not None:
            inputs["organ_masks"] = [None if m is None else m.to(self.device) for m in inputs["organ_masks"]]
        return inputs

    def _repeat_stop(self, prompt_length: int):
        """Stops a row that loops on one sentence (:mod:`omnict_cli.run.repeats`); the vocabulary is scanned once."""
        from omnict_cli.run.repeats import RepeatedSentenceStop, sentence_end_ids

        if self._sentence_ends is None:
            self._sentence_ends = sentence_end_ids(self.processor.tokenizer)
        return RepeatedSentenceStop(self.processor.tokenizer, self._sentence_ends, prompt_length)

    def _phrase_stop(self, prompt_length: int):
        """Stops a row at its first phrase end (:mod:`omnict_cli.run.answers`); the vocabulary is scanned once."""
        from omnict_cli.run.answers import PhraseEndStop, phrase_end_ids

        if self._phrase_ends is None:
            self._phrase_ends = phrase_end_ids(self.processor.tokenizer)
        return PhraseEndStop(self.processor.tokenizer, self._phrase_ends, prompt_length)


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def is_out_of_memory(error: BaseException) -> bool:
    """A GPU (or accelerator) out-of-memory error, which a smaller batch may avoid."""
    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
