"""The bundled demo model's recipe: phantoms -> BPE tokenizer -> small components -> OmniCT -> two stages.

Why a recipe in the library: ``models/omnict-demo/`` must be reproducible by
one command (``omnict train-demo OUT``) on a laptop, so every size and step
lives here, in one place, with the numbers the model card quotes. The steps:

1. phantoms for training (:func:`write_training_phantoms`), from seeds that
   the evaluation never uses (:data:`TRAIN_SEEDS` vs. ``benchmarks/demo_model_eval.py``);
2. a byte-level BPE tokenizer trained with ``tokenizers`` on the phantom texts,
   with the authors' prompt tokens and a Qwen-style chat template
   (:func:`train_tokenizer`);
3. a SigLIP-style encoder (larger patches, few layers) and a small Qwen2
   decoder, both random, saved as component directories
   (:func:`build_demo_components`);
4. the encoder pretrained on the training phantoms' 18 CT-RATE labels with a
   temporary linear head (:func:`pretrain_vision_encoder`): the stand-in for
   SigLIP's own pretraining, which the paper starts from;
5. the composition with :func:`omnict_cli.model.build.build_model_dir`, as
   ``omnict build-model`` does (:func:`build_untrained_model`);
6. the projector's output scaled to word-embedding size (:func:`calibrate_projector`);
7. stage 1 (projector) and stage 2 (projector and LLM; the encoder stays frozen)
   with ``omnict train`` (:func:`train_demo`), on structured reports
   (:mod:`omnict_cli.training.structured_reports`) and balanced closed questions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import jsonlines

from omnict_cli.atomic import write_text_atomically
from omnict_cli.errors import OmnictError
from omnict_cli.model.processing_omnict import special_tokens
from omnict_cli.prompt_format import REPORT_QUESTION

# ---- sizes (the model card quotes these) ---------------------------------------------------

PHANTOM_SIZE = (32, 128, 128)
"""Training phantoms, canonical [z, y, x]: the size of ``examples/phantoms``."""
PHANTOM_SPACING = (9.4, 2.8, 2.8)
"""mm per voxel; 32 x 9.4 mm and 128 x 2.8 mm cover the field of view of ``demo-data``'s default set."""

BOS, EOS_TURN, PAD = "<|endoftext|>", "<|im_end|>", "<|endoftext|>"
TURN_START = "<|im_start|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""Qwen2.5's turn format without its default system message (saves tokens; the demo has one task family)."""


@dataclass(frozen=True)
class DemoSizes:
    """Every size of the demo model's components (see the model card).

    ``image_size`` is the in-plane size of a unit and the encoder's image size;
    ``volume_depth`` slices make ``volume_depth // 3`` units (VSC; 30 -> 10, as the paper's 32).
    """

    image_size: int = 96
    volume_depth: int = 30
    vocab_size: int = 2048
    vision_width: int = 96
    vision_layers: int = 3
    vision_heads: int = 4
    patch_size: int = 16
    text_width: int = 192
    text_layers: int = 3
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 512
    volume_unshuffle: int = 2
    ose_volume_grid: int = 1
    tpe_dim: int = 16
    max_positions: int = 1024


def training_texts(phantom_dirs) -> list[str]:
    """Every report, question and answer of the training phantoms, image tokens removed."""
    markers = special_tokens()
    texts = []
    for folder in phantom_dirs:
        with jsonlines.open(Path(folder) / "qa.jsonl") as rows:
            for row in rows.iter(type=dict, skip_empty=True):
                for message in row["messages"]:
                    content = message["content"]
                    for marker in markers:
                        content = content.replace(marker, "")
                    texts.append(content.strip())
    return texts


def train_tokenizer(texts, out_dir, vocab_size: int):
    """A byte-level BPE tokenizer in Qwen2's format, saved to ``out_dir`` and returned.

    Byte-level, like Qwen2's: any text (a user's question with words never
    seen in the phantoms) still tokenizes. The authors' prompt tokens are
    trained in as special tokens so they stay single ids.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, TURN_START, EOS_TURN, *special_tokens()],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS_TURN,
        pad_token=PAD,
        additional_special_tokens=[TURN_START],
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def build_demo_components(tokenizer, out_root, sizes: DemoSizes = DemoSizes(), seed: int = 0) -> tuple[Path, Path]:
    """Random SigLIP-style and Qwen2 components saved as ``vision/`` and ``llm/`` under ``out_root``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out_root = Path(out_root)
    build_vision_encoder(sizes, seed).save_pretrained(out_root / "vision")
    text_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=sizes.text_width,
        intermediate_size=sizes.text_intermediate,
        num_hidden_layers=sizes.text_layers,
        num_attention_heads=sizes.text_heads,
        num_key_value_heads=sizes.text_kv_heads,
        max_position_embeddings=sizes.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS_TURN),
        pad_token_id=tokenizer.pad_token_id,
    )
    language_model = Qwen2ForCausalLM(text_config)
    language_model.generation_config.eos_token_id = text_config.eos_token_id
    language_model.generation_config.pad_token_id = text_config.pad_token_id
    language_model.save_pretrained(out_root / "llm")
    tokenizer.save_pretrained(out_root / "llm")
    return out_root / "vision", out_root / "llm"


def build_vision_encoder(sizes: DemoSizes = DemoSizes(), seed: int = 0):
    """A random SigLIP-style vision encoder of the demo's sizes (no pooling head), seeded."""
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed)
    return SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=sizes.vision_width,
            intermediate_size=4 * sizes.vision_width,
            num_hidden_layers=sizes.vision_layers,
            num_attention_heads=sizes.vision_heads,
            patch_size=sizes.patch_size,
            image_size=sizes.image_size,
            vision_use_head=False,
        )
    )


def build_untrained_model(vision_dir, llm_dir, out_dir, sizes: DemoSizes = DemoSizes()):
    """Compose the components with ``build_model_dir`` (what ``omnict build-model`` runs).

    The encoder's LAST layer feeds the projector (``vision_feature_layer=-1``):
    the paper's penultimate-layer choice protects a pretrained encoder's
    contrastive head, which a from-scratch encoder does not have, and a layer
    that feeds nothing would get no gradient.
    """
    from omnict_cli.model.build import build_model_dir

    volume_size = (sizes.volume_depth, sizes.image_size, sizes.image_size)
    return build_model_dir(
        vision_dir,
        llm_dir,
        out_dir,
        overwrite=True,
        volume_size=volume_size,
        volume_unshuffle=sizes.volume_unshuffle,
        ose_volume_grid=sizes.ose_volume_grid,
        tpe_depth_dim=sizes.tpe_dim,
        tpe_row_dim=sizes.tpe_dim,
        tpe_col_dim=sizes.tpe_dim,
        vision_feature_layer=-1,
    )


# ---- the recipe ------------------------------------------------------------------------------

TRAIN_SEEDS = (101, 102)
"""Phantom seeds of the training set; ``benchmarks/demo_model_eval.py`` uses other seeds only."""
VISION_SEED = 103
"""Phantom seed of the encoder's label pretraining (cases drawn in memory, with where each finding lies)."""

MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
"""What the shipped model directory holds (besides its README model card)."""


@dataclass(frozen=True)
class StageSettings:
    """One ``omnict train`` run of the recipe (see :class:`omnict_cli.training.config.TrainConfig`)."""

    epochs: int
    learning_rate: float
    batch_size: int = 1
    gradient_accumulation: int = 8
    train_vision: bool = False


@dataclass(frozen=True)
class DemoRecipe:
    """Everything ``omnict train-demo`` does, with the values the model card quotes.

    The defaults are the shipped recipe: encoder pretrained on unit labels
    (30 epochs), projector calibrated, stage 1 on structured reports, stage 2
    (encoder frozen) on structured reports (five times per volume, twice per
    2D slice) plus the balanced closed questions. Learning rates are above the paper's
    (2e-4 / 5e-5): the paper fine-tunes pretrained components, the demo
    trains random ones on a few hundred phantoms in under an hour of CPU.
    """

    seed: int = 0
    cases_per_seed: int = 250
    report_repeats: int = 5
    sizes: DemoSizes = DemoSizes()
    stage1: StageSettings = StageSettings(epochs=1, learning_rate=1e-3)
    closed_stage: StageSettings = StageSettings(epochs=0, learning_rate=1e-3)
    """Stage 2 first on the closed questions alone; 0 epochs skips it."""
    stage2: StageSettings = StageSettings(epochs=2, learning_rate=3e-4)
    balance_closed: bool = True
    """Cut the closed questions with :func:`balanced_closed_rows` (no answer prior per question text)."""
    segmenter: str = "builtin"
    vision_pretrain: StageSettings = StageSettings(epochs=30, learning_rate=1e-3, batch_size=16)
    """Unit-label pretraining of the encoder (:func:`pretrain_vision_encoder`); 0 epochs skips it."""
    vision_pretrain_cases: int = 1200
    """Phantoms (seed :data:`VISION_SEED`, made in memory, never written) the encoder pretrains on."""
    calibration_cases: int = 32
    """Phantoms (seed :data:`VISION_SEED`) the projector's output scale is set on
    (:func:`calibrate_projector`); 0 skips the calibration."""
    report_style: str = "structured"
    """"phantom": the phantoms' own reports (every class, random order); "structured": the present
    classes only, in CT-RATE order (:mod:`omnict_cli.training.structured_reports`)."""
    slice_report_repeats: int = 2
    """Structured reports of the phantoms' 2D slices, this many times each (``report_style`` "structured" only)."""


FIRST_DEMO = DemoRecipe(
    cases_per_seed=80,
    report_repeats=1,
    stage2=StageSettings(epochs=4, learning_rate=1e-3, train_vision=True),
    balance_closed=False,
    vision_pretrain=StageSettings(epochs=0, learning_rate=1e-3, batch_size=16),
    calibration_cases=0,
    report_style="phantom",
    slice_report_repeats=0,
)
"""The first bundled model's recipe (until 2026-12-01): the phantoms' own reports, a random encoder
trained only through the LLM. It learnt the text prior and nothing from the pixels (docs/demo-model.md)."""

READING_EXPERIMENT = replace(
    FIRST_DEMO,
    cases_per_seed=250,
    vision_pretrain=StageSettings(epochs=10, learning_rate=1e-3, batch_size=16),
    calibration_cases=32,
    balance_closed=True,
    closed_stage=StageSettings(epochs=3, learning_rate=1e-3),
    stage2=StageSettings(epochs=2, learning_rate=1e-3),
)
"""The session-3 attempt at a model that reads the image (docs/demo-model.md, "What was tried"):
unit-label encoder pretraining, projector calibration, balanced closed questions first. It did not
read the image either; kept so the next attempt starts from it (``omnict train-demo --recipe reading-experiment``)."""

RECIPES = {"shipped": DemoRecipe(), "reading-experiment": READING_EXPERIMENT, "first-demo": FIRST_DEMO}
"""Named recipes ``omnict train-demo --recipe`` accepts; "shipped" made ``models/omnict-demo``."""


@dataclass
class DemoSummary:
    """What :func:`train_demo` made and how long each step took (seconds)."""

    out_dir: Path
    rows: dict = field(default_factory=dict)
    timing_s: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)


def write_training_phantoms(work_dir, recipe: DemoRecipe, on_case=None) -> list[Path]:
    """``cases_per_seed`` phantoms for each of :data:`TRAIN_SEEDS`, one ``demo-data`` folder per seed.

    A folder that already holds a complete set (its ``slices/labels.csv`` and its
    ``qa.jsonl``, written last) is reused, so a rerun after an interruption does not generate it again.
    """
    from omnict_cli.phantom.generate import PhantomConfig
    from omnict_cli.phantom.writer import write_phantom_set

    config = PhantomConfig(size=PHANTOM_SIZE, spacing=PHANTOM_SPACING)
    folders = []
    for seed in TRAIN_SEEDS:
        folder = Path(work_dir) / f"phantoms-seed{seed}"
        if not ((folder / "qa.jsonl").is_file() and (folder / "slices" / "labels.csv").is_file()):
            write_phantom_set(folder, recipe.cases_per_seed, seed, config, on_case=on_case)
        folders.append(folder)
    return folders


def phantom_rows(phantom_dir, report_repeats: int) -> list[dict]:
    """Training rows of one phantom set: its report rows ``report_repeats`` times, then its closed questions.

    Closed questions are the volume yes/no and multiple-choice rows: the ones
    that say per class whether the image shows it, cheap (a one-word answer)
    and what the evaluation asks. The open rows (location, size, organ
    descriptions) and the 2D slice rows are left out to fit the CPU budget.
    Image paths are made absolute so the rows file can live anywhere.
    """
    phantom_dir = Path(phantom_dir).resolve()
    reports, questions = [], []
    with jsonlines.open(phantom_dir / "qa.jsonl") as lines:
        for row in lines.iter(type=dict, skip_empty=True):
            if not row["image"].startswith("volumes/"):
                continue
            row["image"] = str(phantom_dir / row["image"])
            if _is_report(row):
                reports.append(row)
            elif _is_closed(row):
                questions.append(row)
    return reports * report_repeats + questions


def _is_closed(row: dict) -> bool:
    answer = row["messages"][1]["content"]
    return answer in ("Yes", "No") or answer[:3] in ("A. ", "B. ", "C. ", "D. ")


def balanced_closed_rows(rows: list[dict], seed: int) -> list[dict]:
    """Closed-question rows with no answer prior left: each yes/no question text cut to as many "Yes" as "No".

    Why: phantom questions about rare classes are mostly answered "No" and
    about common ones mostly "Yes", so a model can score well above chance
    from the question alone, and then never learns to look (the first demo
    model did exactly that: 62% for every image). With every question
    balanced, the image is the only way below the 50/50 loss. A question
    text asked with one answer only is dropped; multiple-choice rows are
    kept as they are (their options already name other classes).
    """
    import random

    by_question: dict[str, dict[str, list[dict]]] = {}
    kept = []
    for row in rows:
        answer = row["messages"][1]["content"]
        if answer in ("Yes", "No"):
            by_question.setdefault(row["messages"][0]["content"], {"Yes": [], "No": []})[answer].append(row)
        else:
            kept.append(row)
    chooser = random.Random(seed)
    for question in sorted(by_question):
        answers = by_question[question]
        count = min(len(answers["Yes"]), len(answers["No"]))
        for answer in ("Yes", "No"):
            kept.extend(chooser.sample(answers[answer], count))
    return kept


def recipe_rows(phantom_dirs, recipe: DemoRecipe) -> tuple[list[dict], list[dict], list[dict]]:
    """``(report rows, closed-question rows, stage-2 rows)`` of the training phantoms, as the recipe asks.

    Report rows are the phantoms' own reports or structured ones (``recipe.report_style``),
    each ``recipe.report_repeats`` times; closed rows are cut by :func:`balanced_closed_rows`
    when ``recipe.balance_closed``. Stage 2 reads both; the first recipe's rows keep their
    file order (each phantom set's reports, then its questions), so it still makes the same model.
    """
    if recipe.report_style not in ("phantom", "structured"):
        raise ValueError(f"report_style must be 'phantom' or 'structured', not {recipe.report_style!r}")
    all_rows = [row for folder in phantom_dirs for row in phantom_rows(folder, recipe.report_repeats)]
    closed = [row for row in all_rows if not _is_report(row)]
    if recipe.report_style == "structured":
        reports = [
            row
            for folder in phantom_dirs
            for row in structured_training_rows(folder, recipe.report_repeats, recipe.slice_report_repeats)
        ]
    else:
        reports = [row for row in all_rows if _is_report(row)]
    if recipe.balance_closed:
        closed = balanced_closed_rows(closed, recipe.seed)
    unchanged = recipe.report_style == "phantom" and not recipe.balance_closed
    return reports, closed, all_rows if unchanged else reports + closed


def structured_training_rows(phantom_dir, repeats: int, slice_repeats: int = 0) -> list[dict]:
    """Structured report rows of one phantom set: each volume ``repeats`` times, each slice ``slice_repeats`` times.

    Slices are the set's 2D images (``slices/*.png``, one per case with a finding), labelled
    with the findings on that slice (``slices/labels.csv``); training on them is what lets the
    model write a report for a 2D picture at all.
    """
    from omnict_cli.phantom.reports import IMAGE_TOKENS
    from omnict_cli.training.structured_reports import structured_report_rows

    phantom_dir = Path(phantom_dir)
    rows = (
        structured_report_rows(
            phantom_dir / "labels.csv", phantom_dir / "volumes", f"{IMAGE_TOKENS['3d']}\n{REPORT_QUESTION}"
        )
        * repeats
    )
    if slice_repeats:
        rows += (
            structured_report_rows(
                phantom_dir / "slices" / "labels.csv",
                phantom_dir / "slices",
                f"{IMAGE_TOKENS['2d']}\n{REPORT_QUESTION}",
            )
            * slice_repeats
        )
    return rows


def _is_report(row: dict) -> bool:
    return row["messages"][0]["content"].endswith(REPORT_QUESTION)


def write_rows_file(path, rows: list[dict]) -> Path:
    """Write rows as JSONL (the authors' chat format); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, "".join(json.dumps(row) + "\n" for row in rows))
    return path


def stage_config(stage: str, settings: StageSettings, rows_path, model_dir, out_dir, recipe: DemoRecipe, cache_dir):
    """The :class:`TrainConfig` of one stage of the recipe."""
    from omnict_cli.training.config import TrainConfig

    cache_dir = Path(cache_dir)
    return TrainConfig(
        stage=stage,
        data=Path(rows_path),
        model=Path(model_dir),
        out=Path(out_dir),
        epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        per_device_batch_size=settings.batch_size,
        gradient_accumulation=settings.gradient_accumulation,
        train_vision=settings.train_vision,
        seed=recipe.seed,
        max_length=recipe.sizes.max_positions,
        segmenter=recipe.segmenter,
        tensor_cache_dir=cache_dir / "tensors",
        mask_cache_dir=cache_dir / "masks",
        log_every_steps=10,
        keep_checkpoints=1,
        resume=True,
    )


def copy_model_files(trained_dir, out_dir) -> Path:
    """The model files of a training output (no checkpoints or logs) into ``out_dir``, atomically."""
    import shutil
    import tempfile

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name in MODEL_FILES:
            if (Path(trained_dir) / name).is_file():
                shutil.copy2(Path(trained_dir) / name, staging / name)
        if (out_dir / "README.md").is_file():  # a model card written by hand stays
            shutil.copy2(out_dir / "README.md", staging / "README.md")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def train_demo(
    out_dir, recipe: DemoRecipe = DemoRecipe(), work_dir=None, progress: bool = True, notify=None
) -> DemoSummary:
    """Run the whole recipe; the model lands in ``out_dir`` (model files only), the rest in ``work_dir``.

    ``work_dir`` (default ``<out_dir>.work``) keeps the phantoms, the rows, the
    components, both stages' outputs with their ``metrics.jsonl`` (the training
    curve) and the tensor and mask caches, so a rerun reuses what is done: the
    phantoms, the untrained model once complete, finished stages, and an
    interrupted stage from its last checkpoint. A work folder serves one
    recipe (:func:`claim_work_dir`).
    """
    import time

    from omnict_cli.training.trainer import train

    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out_dir.with_name(out_dir.name + ".work")
    claim_work_dir(work, recipe)
    summary = DemoSummary(out_dir=out_dir)
    say = notify or (lambda text: None)

    def timed(name, action):
        started = time.perf_counter()
        value = action()
        summary.timing_s[name] = round(time.perf_counter() - started, 1)
        say(f"{name}: {summary.timing_s[name]:.0f} s")
        return value

    phantom_dirs = timed("phantoms", lambda: write_training_phantoms(work, recipe))
    untrained = timed("components", lambda: _untrained_model(phantom_dirs, work, recipe, notify))
    reports, closed, stage2_rows = recipe_rows(phantom_dirs, recipe)
    runs = [
        ("pretrain", "pretrain", recipe.stage1, reports),
        ("sft-closed", "sft", recipe.closed_stage, closed),
        ("sft", "sft", recipe.stage2, stage2_rows),
    ]
    summary.rows = {name: len(rows) for name, _, _, rows in runs}
    model_dir = untrained
    for name, stage, settings, rows in runs:
        if not settings.epochs:
            continue
        rows_path = write_rows_file(work / f"rows-{name}.jsonl", rows)
        config = stage_config(stage, settings, rows_path, model_dir, work / f"stage-{name}", recipe, work / "cache")
        result = timed(f"stage {name}", lambda: train(config, progress=progress, notify=notify))  # noqa: B023 (called now)
        summary.stages[name] = {
            "steps": result.steps,
            "final_loss": result.final_loss,
            "metrics": str(result.metrics_path),
        }
        model_dir = result.out_dir
    copy_model_files(model_dir, out_dir)
    summary.timing_s["total"] = round(sum(summary.timing_s.values()), 1)
    write_rows_file(
        work / "summary.jsonl",
        [
            {
                "out_dir": str(out_dir),
                "rows": summary.rows,
                "timing_s": summary.timing_s,
                "stages": summary.stages,
                "recipe": _recipe_record(recipe),
            }
        ],
    )
    return summary


WORK_RECIPE_FILE = "recipe.json"
"""In a work folder: the recipe it serves (:func:`claim_work_dir`)."""
UNTRAINED_DONE_FILE = "complete"
"""In ``work/untrained``: written once the untrained model is built, pretrained and calibrated."""


class DemoWorkDirError(OmnictError):
    """A work folder that holds another recipe's (or an unknown) intermediate results."""


def claim_work_dir(work: Path, recipe: DemoRecipe) -> None:
    """Bind ``work`` to ``recipe`` (``recipe.json``); refuse a folder that holds another recipe's results.

    Why: a rerun reuses the untrained model and finished stages, which is only
    right when they were made by the same recipe; stage settings alone do not
    tell (two recipes may differ only in their encoder pretraining).
    """
    record = json.loads(json.dumps(_recipe_record(recipe)))  # tuples -> lists, as read back from the file
    claim = work / WORK_RECIPE_FILE
    start_over = "Choose another --work-dir, or delete this one to start over"
    if claim.is_file():
        try:
            earlier = json.loads(claim.read_text())
        except (OSError, ValueError) as error:
            raise DemoWorkDirError(
                f"cannot read its {WORK_RECIPE_FILE} ({error})", path=work, hint=start_over
            ) from error
        if earlier != record:
            changed = sorted(key for key in record if not isinstance(earlier, dict) or earlier.get(key) != record[key])
            raise DemoWorkDirError(
                f"holds the results of another recipe (differs in: {', '.join(changed)})", path=work, hint=start_over
            )
        return
    if work.is_dir() and any(work.iterdir()):
        raise DemoWorkDirError(
            "is not empty and does not say which recipe made it (no recipe.json)", path=work, hint=start_over
        )
    try:
        work.mkdir(parents=True, exist_ok=True)
        write_text_atomically(claim, json.dumps(record, indent=1) + "\n")
    except OSError as error:
        raise DemoWorkDirError(
            f"cannot create the work folder ({error.strerror or error})",
            path=work,
            hint="Choose a --work-dir (or OUT) in a folder you can write to",
        ) from error


def _untrained_model(phantom_dirs, work: Path, recipe: DemoRecipe, notify=None) -> Path:
    """Tokenizer, random components and the composed untrained OmniCT, under ``work``; reused once complete.

    ``notify`` gets a line per epoch of the encoder pretraining (the longest quiet step otherwise).
    """
    import torch

    done = work / "untrained" / UNTRAINED_DONE_FILE
    if done.is_file():
        if notify is not None:
            notify(f"reusing the untrained model in {done.parent}")
        return done.parent
    torch.manual_seed(recipe.seed)
    tokenizer = train_tokenizer(training_texts(phantom_dirs), work / "tokenizer", recipe.sizes.vocab_size)
    vision_dir, llm_dir = build_demo_components(tokenizer, work / "components", recipe.sizes, seed=recipe.seed)
    if recipe.vision_pretrain.epochs:
        pretrain_vision_encoder(vision_dir, recipe, notify)
    build_untrained_model(vision_dir, llm_dir, work / "untrained", recipe.sizes)
    if recipe.calibration_cases:
        calibrate_projector(work / "untrained", recipe)
    done.write_text("built, encoder pretrained and projector calibrated by the recipe in ../recipe.json\n")
    return work / "untrained"


def calibrate_projector(model_dir, recipe: DemoRecipe) -> dict:
    """Scale and centre the projector's output layer so image tokens start like word embeddings; save in place.

    Why: a from-scratch encoder's last layer is un-normalised (token norms near
    50 here), and through a random projector the image tokens reach the LLM
    with norms near 200 against about 1 for a word embedding, nearly all of
    it a direction every study shares (studies differ by about 10%). The
    decoder then sees every image as the same vector and learns the text
    prior instead (the first demo model: P("Yes") moved by 1e-5 between
    images). A data-dependent initialisation, as LSUV does for activations:
    on ``calibration_cases`` phantoms the shared layer ``W_share`` is scaled so
    the tokens' spread about their mean has the word embeddings' mean norm,
    and its bias is shifted so that mean is zero. Returns the norms before
    and after.
    """
    import torch

    from omnict_cli.model import OmniCTForConditionalGeneration

    model = OmniCTForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    encoder = model.spatial_encoder
    units, _ = pretraining_units(recipe, cases=recipe.calibration_cases)
    with torch.no_grad():
        grids = encoder(units.flatten(0, 1).float(), [units.shape[1]] * len(units), ["volume"] * len(units))
        tokens = torch.cat([grid.reshape(-1, grid.shape[-1]) for grid in grids])
        mean = tokens.mean(0)
        spread = (tokens - mean).norm(dim=-1).mean()
        target = model.get_input_embeddings().weight.norm(dim=-1).mean()
        scale = float(target / spread)
        shared = encoder.multi_modal_projector.shared
        shared.weight.mul_(scale)
        shared.bias.mul_(scale).sub_(mean * scale)
    model.save_pretrained(model_dir)
    return {
        "token_norm_before": float(tokens.norm(dim=-1).mean()),
        "spread_before": float(spread),
        "word_embedding_norm": float(target),
        "scale": scale,
    }


def _recipe_record(recipe: DemoRecipe) -> dict:
    from dataclasses import asdict

    return {
        **asdict(recipe),
        "train_seeds": list(TRAIN_SEEDS),
        "phantom_size": list(PHANTOM_SIZE),
        "phantom_spacing": list(PHANTOM_SPACING),
    }


def pretrain_vision_encoder(vision_dir, recipe: DemoRecipe, notify=None) -> list[float]:
    """Teach the random encoder where the 18 CT-RATE classes are, unit by unit; save it back in place.

    Why: the paper starts from a pretrained SigLIP; a random encoder learns to
    see only through the LLM's loss, which on a few hundred cases and CPU
    minutes it does not (the first demo model answered the same for every
    image). Here phantoms drawn in memory say not only which classes a case
    has but where (each finding's bounding box), so every three-slice unit
    gets its own 18 labels: ten times the supervision of study labels, and
    the per-unit view the encoder itself has. A temporary linear head on the
    mean and max of a unit's last-layer tokens is trained with binary
    cross-entropy on the unit labels plus the study labels (max over units),
    with random left-right flips; the head is then dropped and the encoder
    keeps what it learnt. Returns the loss per epoch.
    """
    import torch
    from transformers import SiglipVisionModel

    units, unit_labels = pretraining_units(recipe)
    torch.manual_seed(recipe.seed)
    encoder = SiglipVisionModel.from_pretrained(vision_dir, local_files_only=True)
    _, losses = fit_unit_label_head(encoder, units, unit_labels, recipe.vision_pretrain, notify)
    encoder.save_pretrained(vision_dir)
    return losses


def fit_unit_label_head(encoder, units, unit_labels, settings: StageSettings, notify=None):
    """Train ``encoder`` in place with a new linear label head on (units, unit labels); return (head, epoch losses).

    The loop of :func:`pretrain_vision_encoder`, apart so that
    ``benchmarks/research/demo_encoder_probe.py`` can score the head on held-out phantoms.
    Draws from torch's global generator (the caller seeds it).
    """
    import torch

    head = torch.nn.Linear(2 * encoder.config.hidden_size, unit_labels.shape[-1])
    optimizer = torch.optim.AdamW(
        [*encoder.parameters(), *head.parameters()], lr=settings.learning_rate, weight_decay=0.0
    )
    steps = settings.epochs * (len(units) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, settings.learning_rate, total_steps=max(steps, 1), pct_start=0.05
    )
    losses = []
    for _ in range(settings.epochs):
        total = 0.0
        for batch in torch.randperm(len(units)).split(settings.batch_size):
            if len(batch) < settings.batch_size:
                continue  # the scheduler counted full batches only
            flip = torch.rand(len(batch)) < 0.5
            pixels = torch.where(flip[:, None, None, None, None], units[batch].flip(-1), units[batch]).float()
            logits = unit_label_logits(encoder, head, pixels)
            targets = unit_labels[batch]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, targets
            ) + torch.nn.functional.binary_cross_entropy_with_logits(logits.amax(1), targets.amax(1))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        losses.append(round(total / len(units), 4))
        if notify is not None:
            notify(f"encoder pretraining epoch {len(losses)}: loss {losses[-1]}")
    return head, losses


def unit_label_logits(encoder, head, pixels):
    """``[B, N_s, 18]`` label logits of ``[B, N_s, 3, H, W]`` studies: mean and max of each unit's last-layer tokens."""
    import torch

    studies, units = pixels.shape[:2]
    tokens = encoder(pixel_values=pixels.flatten(0, 1)).last_hidden_state
    pooled = torch.cat([tokens.mean(1), tokens.amax(1)], dim=-1)
    return head(pooled).reshape(studies, units, -1)


def pretraining_units(recipe: DemoRecipe, cases: int | None = None, first: int = 1):
    """Preprocessed units (float16 ``[N, N_s, 3, H, W]``) and unit labels (``[N, N_s, 18]``) of the encoder's phantoms.

    The cases are drawn in memory (seed :data:`VISION_SEED`), preprocessed by
    the product's own :func:`~omnict_cli.studies.preprocess.preprocess_volume` exactly
    as a written volume would be after loading, and never written to disk.
    Case indices run from ``first`` (held-out sets start after the training cases).
    """
    import numpy as np
    import torch

    from omnict_cli.phantom.generate import PhantomConfig, generate_case
    from omnict_cli.studies.preprocess import PreprocessConfig, preprocess_volume

    sizes = recipe.sizes
    config = PreprocessConfig(
        volume_size=(sizes.volume_depth, sizes.image_size, sizes.image_size),
        slice_size=(sizes.image_size, sizes.image_size),
    )
    phantom = PhantomConfig(size=PHANTOM_SIZE, spacing=PHANTOM_SPACING)
    units, labels = [], []
    for index in range(first, first + (cases or recipe.vision_pretrain_cases)):
        case = generate_case(VISION_SEED, index, phantom)
        model_input = preprocess_volume(_phantom_volume(case), config)
        units.append(torch.from_numpy(model_input.units.astype(np.float16)))
        labels.append(torch.from_numpy(unit_labels(case.findings, PHANTOM_SIZE[0], config)))
    return torch.stack(units), torch.stack(labels)


def _phantom_volume(case):
    """A generated case as the loader would return its written NIfTI (canonical array, canonical affine)."""
    import numpy as np

    from omnict_cli.studies.volume import Volume, canonical_affine

    return Volume(
        voxels=case.hu,
        affine=canonical_affine(case.spacing),
        kind="volume",
        source_format="phantom",
        source_ornt=np.array([[0, 1], [1, 1], [2, 1]]),
        source_shape=tuple(case.hu.shape),
    )


def unit_labels(findings, phantom_depth: int, config):
    """``[N_s, 18]`` float32: 1 where a finding's bounding box reaches a unit's slices (after resampling in z).

    A finding without a box (nothing changed on this grid) marks every unit:
    the case has it, so the study label (max over units) stays right.
    """
    import numpy as np

    from omnict_cli.labels import CTRATE_ABNORMALITIES

    depth, per_unit = config.volume_size[0], config.slices_per_unit
    labels = np.zeros((config.units_per_volume, len(CTRATE_ABNORMALITIES)), np.float32)
    for finding in findings:
        column = CTRATE_ABNORMALITIES.index(finding.label)
        box = finding.details.get("bbox_zyx")
        if box is None:
            labels[:, column] = 1.0
            continue
        first = int(box[0] * depth / phantom_depth) // per_unit
        last = min(int((box[3] + 1) * depth / phantom_depth - 1e-6) // per_unit, config.units_per_volume - 1)
        labels[first : last + 1, column] = 1.0
    return labels
