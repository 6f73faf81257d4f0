"""Rows -> prepared studies -> batches: the data side of training.

:func:`prepare_examples` runs once before training: each distinct image of
the rows is prepared (load, preprocess, segment through the mask cache) and
stored in the :class:`TensorCache`, or found there. A study that cannot be
loaded leaves its rows out with one line saying why; the others train.

:class:`StudyDataset` then reads only the tensor cache: item ``i`` is row
``i``'s question, answer, units and the organ mask routing (or the row's
``organ``) picks on the model grid. :class:`BatchCollator` turns a list of
items into one processor batch with assistant-only labels.

:class:`StepPlan` fixes the data order: epoch ``e`` is a permutation seeded
by ``(seed, e)``, cut into global batches of ``per_device x processes x
accumulation`` rows (the last one filled up from the epoch's start, so every
process always runs the same number of passes). Within a global batch, pass
``m`` of process ``r`` takes the rows at ``(m * processes + r) * per_device``
after the step's rows are sorted by length (so a pass pads little); so 2
processes with accumulation 1 see exactly the rows 1 process with
accumulation 2 sees in each optimizer step.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from omnict_cli.errors import OmnictError
from omnict_cli.run.study_inputs import PreparedStudy, PrepareSetup, organ_selection_for, prepare_study
from omnict_cli.studies.discover import Study, single_study
from omnict_cli.training.rows import TrainingRow
from omnict_cli.training.tensor_cache import CachedStudy, TensorCache, entry_key, source_digest

ROUTING_TASK = "ask"
"""Rows are routed as questions: a report prompt names no organ, so it falls back to the scan's report organs."""


@dataclass(frozen=True)
class Example:
    """A usable row: the row, its study, the tensor cache key of that study and the study's kind and units."""

    row: TrainingRow
    study: Study
    key: str
    kind: str
    num_units: int


@dataclass
class PreparedExamples:
    """What :func:`prepare_examples` found: usable examples, problems, and counts for the summary."""

    examples: list[Example] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    studies: int = 0
    from_cache: int = 0


def prepare_examples(
    rows: list[TrainingRow],
    setup: PrepareSetup,
    cache: TensorCache,
    units_dtype: str = "float16",
    on_study: Callable[[], None] | None = None,
) -> PreparedExamples:
    """Make sure every distinct image of ``rows`` is in ``cache``; bad studies and organs become problems."""
    from omnict_cli.segmentation.organs import parse_organ_option

    result = PreparedExamples()
    by_image: dict = {}
    for row in rows:
        by_image.setdefault(row.image, []).append(row)
    for image, image_rows in by_image.items():
        try:
            study, key, record, cached = _prepare_one(image, setup, cache, units_dtype, result.problems)
        except OmnictError as error:
            result.problems.append(f"{error.one_line()}; {_rows_phrase(image_rows)} left out")
            continue
        finally:
            if on_study is not None:
                on_study()
        result.studies += 1
        result.from_cache += cached
        for row in image_rows:
            try:
                if row.organ:
                    parse_organ_option(row.organ)
            except OmnictError as error:
                result.problems.append(f'line {row.line}: its "organ" field: {error.one_line()}; row left out')
                continue
            result.examples.append(Example(row, study, key, record["kind"], record["units_shape"][0]))
    result.examples.sort(key=lambda example: example.row.line)
    return result


def _prepare_one(image, setup: PrepareSetup, cache: TensorCache, units_dtype: str, problems: list[str]):
    """``(study, key, entry record, found in cache)`` for one image, preparing and storing it on a miss.

    A hit reads only the entry's header; training verifies the whole entry when it reads it.
    """
    study = single_study(image)
    try:
        key = entry_key(source_digest(study.paths), setup, units_dtype)
    except OSError as error:
        raise OmnictError(f"cannot read the study's files ({error.strerror or error})", path=image) from error
    record = cache.peek(key)
    if record is not None:
        return study, key, record, True
    prepared = prepare_study(study, setup)
    try:
        cache.put(key, CachedStudy.from_prepared(prepared, units_dtype))
    except OSError as error:
        raise OmnictError(
            f"cannot write the tensor cache at {cache.root} ({error.strerror or error})",
            hint="Pass a writable --tensor-cache-dir",
        ) from error
    record = cache.peek(key)
    if record is None:
        raise OmnictError(
            f"the tensor cache entry just written to {cache.entry_path(key)} cannot be read back", path=image
        )
    return study, key, record, False


def fit_to_length(examples: list[Example], processor, max_length: int) -> tuple[list[Example], list[int], list[str]]:
    """``(kept examples, their token counts, problems)``.

    Rows whose prompt (chat template, image and organ tokens, question) has ``max_length``
    tokens or more are left out: no answer token would fit, and answers are cut, prompts
    never. A kept row's count is its prompt plus its answer (and end-of-turn), at most
    ``max_length``; :class:`StepPlan` groups rows of similar length into one pass.
    """
    prompt_lengths: dict = {}
    kept, lengths, problems = [], [], []
    if not examples:
        return kept, lengths, problems
    answers = processor.tokenizer([example.row.answer for example in examples], add_special_tokens=False)["input_ids"]
    for example, answer in zip(examples, answers):
        shape = (example.row.question, example.kind, example.num_units)
        if shape not in prompt_lengths:
            text = processor.prompt(*shape)
            prompt_lengths[shape] = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])
        prompt = prompt_lengths[shape]
        if prompt >= max_length:
            problems.append(
                f"line {example.row.line}: the prompt alone has {prompt} tokens, max length "
                f"is {max_length}; row left out"
            )
            continue
        kept.append(example)
        lengths.append(min(max_length, prompt + len(answer) + END_OF_TURN_TOKENS))
    return kept, lengths, problems


END_OF_TURN_TOKENS = 2
"""Tokens a chat template adds after an answer (Qwen: ``<|im_end|>`` and a newline); a length estimate only."""


def _rows_phrase(rows: list[TrainingRow]) -> str:
    lines = ", ".join(str(row.line) for row in rows[:5]) + (", ..." if len(rows) > 5 else "")
    return f"its {len(rows)} row{'s' if len(rows) != 1 else ''} (line {lines})"


class StudyDataset(torch.utils.data.Dataset):
    """Item ``i``: example ``i``'s question, answer, model input and organ mask, read from the tensor cache."""

    def __init__(self, examples: list[Example], cache: TensorCache):
        self.examples = examples
        self.cache = cache

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        found = self.cache.get(example.key)
        if found.entry is None:
            raise OmnictError(
                f"its tensor cache entry {self.cache.entry_path(example.key)} is gone or corrupt "
                f"({found.warning or 'missing'})",
                path=example.row.image,
                hint="Do not clear the tensor cache during a run; run again to prepare it anew",
            )
        prepared = prepared_from_cache(found.entry, example.study)
        selection = organ_selection_for(
            prepared, ROUTING_TASK, question=example.row.question, override=example.row.organ
        )
        return {
            "question": example.row.question,
            "answer": example.row.answer,
            "image": prepared.model_input,
            "organ_mask": selection.mask,
            "line": example.row.line,
        }


def prepared_from_cache(entry: CachedStudy, study: Study) -> PreparedStudy:
    """A :class:`PreparedStudy` rebuilt from a cache entry and the study it came from."""
    return PreparedStudy(
        study_id=study.study_id,
        input=study.input,
        format=study.format,
        kind=entry.kind,
        shape=entry.shape,
        spacing=entry.spacing,
        model_input=entry.model_input(),
        vocabulary=entry.vocabulary,
        segmenter=entry.segmenter,
        mask_from_cache=True,
        warnings=list(entry.warnings),
    )


class BatchCollator:
    """Items -> one processor batch with labels on the answers only."""

    def __init__(self, processor, max_length: int):
        self.processor = processor
        self.max_length = max_length

    def __call__(self, items: list[dict]):
        batch = self.processor(
            [item["question"] for item in items],
            [item["image"] for item in items],
            organ_masks=[item["organ_mask"] for item in items],
            answers=[item["answer"] for item in items],
            max_length=self.max_length,
        )
        return batch


@dataclass(frozen=True)
class StepPlan:
    """How many optimizer steps a run makes and which rows each pass of each process reads."""

    num_examples: int
    per_device_batch_size: int
    num_processes: int
    gradient_accumulation: int
    epochs: int
    seed: int
    max_steps: int | None = None
    lengths: tuple[int, ...] | None = None

    @property
    def global_batch_size(self) -> int:
        return self.per_device_batch_size * self.num_processes * self.gradient_accumulation

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_examples / self.global_batch_size)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the run: all epochs, or ``max_steps`` when that is fewer."""
        full = self.steps_per_epoch * self.epochs
        return full if self.max_steps is None else min(full, self.max_steps)

    @functools.cached_property
    def _length_array(self) -> np.ndarray:
        return np.asarray(self.lengths)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The seeded permutation of example indices for ``epoch`` (0-based)."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def step_rows(self, epoch: int, step_in_epoch: int, order: np.ndarray | None = None) -> np.ndarray:
        """Example indices of one optimizer step, ``[accumulation, processes, per_device]``.

        With ``lengths``, the step's rows are sorted longest first before they are dealt out,
        so each pass pads its rows to a similar length. The step's rows and its loss (a sum
        over the whole global batch) do not change, only which pass computes which row.
        """
        order = self.epoch_order(epoch) if order is None else order
        start = step_in_epoch * self.global_batch_size
        rows = order[np.arange(start, start + self.global_batch_size) % self.num_examples]
        if self.lengths is not None:
            rows = rows[np.argsort(-self._length_array[rows], kind="stable")]
        return rows.reshape(self.gradient_accumulation, self.num_processes, self.per_device_batch_size)

    def process_batches(self, epoch: int, first_step: int, last_step: int, rank: int):
        """Index lists of process ``rank`` for steps ``first_step..last_step - 1`` of ``epoch``, pass by pass."""
        order = self.epoch_order(epoch)
        for step in range(first_step, last_step):
            for micro in self.step_rows(epoch, step, order)[:, rank]:
                yield micro.tolist()


class PlannedBatches(torch.utils.data.Sampler):
    """A batch sampler over :meth:`StepPlan.process_batches` (a DataLoader's ``batch_sampler``)."""

    def __init__(self, plan: StepPlan, epoch: int, first_step: int, last_step: int, rank: int):
        self.plan, self.epoch, self.first_step, self.last_step, self.rank = plan, epoch, first_step, last_step, rank

    def __iter__(self):
        return self.plan.process_batches(self.epoch, self.first_step, self.last_step, self.rank)

    def __len__(self) -> int:
        return (self.last_step - self.first_step) * self.plan.gradient_accumulation
