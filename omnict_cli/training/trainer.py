"""The two-stage trainer: :func:`train` runs one stage of OmniCT training (paper Sec. 2.3, Table 6).

One process or many: the same code runs plainly (``omnict train ...``) and
under ``accelerate launch`` (DDP on several GPUs or nodes, DeepSpeed, FSDP;
see ``configs/``). bf16 mixed precision on a GPU that has it, fp32 on CPU.

The loss is next-token cross-entropy on the assistant's tokens only (the
processor sets every other label to -100), summed over the whole global
batch and divided by its number of answer tokens. So a global batch gives
the same gradient however it is split: into passes (gradient accumulation),
into processes, or both; a one-word answer and a long report weigh by their
tokens. Only the logits of answer positions are computed
(``logits_to_keep``), which saves most of the vocabulary projection on
prompts of 900+ image tokens.

A run prepares its studies first (tensor cache, see :mod:`.tensor_cache`),
then trains; checkpoints (:mod:`.checkpoint`) let ``resume=True`` continue
at the same step with the same next batch after a crash or a kill.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from omnict_cli.atomic import write_text_atomically
from omnict_cli.errors import OmnictError
from omnict_cli.run.interrupts import critical, deferred_interrupts
from omnict_cli.training import checkpoint as checkpoints
from omnict_cli.training.config import TrainConfig, resume_mismatches
from omnict_cli.training.dataset import (
    BatchCollator,
    PlannedBatches,
    StepPlan,
    StudyDataset,
    fit_to_length,
    prepare_examples,
)
from omnict_cli.training.monitor import MetricsLog, TrainProgress
from omnict_cli.training.optim import build_optimizer, learning_rate_at, optimizer_parameter_names, set_trainable
from omnict_cli.training.rows import read_rows
from omnict_cli.training.tensor_cache import TensorCache, default_tensor_cache_root
from omnict_cli.ui import silence_library_progress_bars

RESULT_FILE = "training.json"
"""Written beside the final model: the run's settings, steps and final loss (what made these weights)."""

MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "pixel_values", "num_units", "image_kinds", "organ_masks")


class TrainError(OmnictError):
    """A run that cannot start or continue: bad model folder, no usable rows, an incompatible checkpoint."""


class TrainInterrupted(Exception):
    """Ctrl-C stopped training between two steps; the steps done are in ``checkpoint`` (None before the first).

    Not an OmnictError: the command turns it into the resume line and exit code 130, as ``report`` does.
    """

    def __init__(self, step: int, total_steps: int, checkpoint: Path | None):
        super().__init__(f"interrupted after step {step} of {total_steps}")
        self.step = step
        self.total_steps = total_steps
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        out_dir: holds the final model, ``checkpoints/``, ``metrics.jsonl`` and ``training.json``.
        steps: optimizer steps done in total (a resumed run counts the steps before the resume).
        epochs: passes over the data done (fractional when ``max_steps`` stopped mid-epoch).
        final_loss: the loss of the last step (None when no step ran).
        metrics_path: the run's ``metrics.jsonl``.
        rows: usable training rows; ``problems``: one line per row or study left out.
        main_process: False in the other processes of a multi-process run (they should print nothing).
    """

    out_dir: Path
    steps: int
    epochs: float
    final_loss: float | None
    metrics_path: Path
    rows: int = 0
    problems: list[str] = field(default_factory=list)
    main_process: bool = True


def train(config: TrainConfig, progress: bool = True, notify: Callable[[str], None] | None = None) -> TrainResult:
    """Run one training stage as ``config`` says; returns a :class:`TrainResult`.

    Args:
        config: the run's settings.
        progress: show rich progress bars (main process only).
        notify: where one-line messages go (rows left out, checkpoints, fallbacks); default stderr.

    Raises:
        TrainError (an ``OmnictError``) for anything the user can fix before or while starting.
    """
    run = _Run(config, progress, notify)
    return run.execute()


class _Run:
    """The pieces of one run (accelerator, model, data, optimizer) and the loop over them."""

    def __init__(self, config: TrainConfig, progress: bool, notify):
        self.config = config
        self.accelerator = make_accelerator(config)
        self.main = self.accelerator.is_main_process
        self.show_progress = progress and self.main
        self._notify = notify
        self.metrics = MetricsLog(config.out, enabled=self.main)

    def say(self, text: str) -> None:
        if not self.main:
            return
        if self._notify is not None:
            self._notify(text)
        else:
            from omnict_cli.ui import stderr_console

            stderr_console().print(text, highlight=False, markup=False, soft_wrap=True)

    # ---- setup --------------------------------------------------------------------------

    def execute(self) -> TrainResult:
        config = self.config
        resume_from = self._resume_point()
        finished = _finished_run(config) if resume_from is not None else None
        if finished is not None:
            self.say(f"{config.out} already holds the finished run ({finished['step']} steps); nothing to do")
            return _result_from_file(config.out, finished)
        self.model, self.processor, self.model_dtype = load_model(resume_from or config.model)
        self.examples, lengths, self.cache, self.problems = self._prepare_data()
        self.plan = StepPlan(
            len(self.examples),
            config.per_device_batch_size,
            self.accelerator.num_processes,
            config.gradient_accumulation,
            config.resolved_epochs,
            config.seed,
            config.max_steps,
            tuple(lengths),
        )
        named = set_trainable(self.model, config.stage, config.train_vision)
        if config.gradient_checkpointing:
            enable_activation_checkpointing(self.model)
        self.parameter_names = optimizer_parameter_names(named)
        optimizer = build_optimizer(named, config.resolved_learning_rate, config.weight_decay)
        self.trainable = [parameter for _, parameter in named]
        configure_deepspeed(self.accelerator, config)
        self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        self.done, self.elapsed_before, self.last_loss = 0, 0.0, None
        if resume_from is not None:
            self._restore(resume_from)
        else:
            self.metrics.start_fresh()
        self.model.train()
        return self._loop()

    def _resume_point(self) -> Path | None:
        """The checkpoint to continue from, or None; refuses to mix a new run into an old one's folder."""
        config = self.config
        try:
            config.out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TrainError(f"cannot create the output folder ({error.strerror or error})", path=config.out) from error
        latest = checkpoints.latest_checkpoint(config.out)
        if config.resume:
            if latest is None:
                self.say(f"no checkpoint in {checkpoints.checkpoints_dir(config.out)}: starting from the beginning")
            else:
                _check_same_settings(config, checkpoints.read_state(latest), latest, [])
            return latest
        if latest is not None:
            raise TrainError(
                "already holds checkpoints of a run",
                path=config.out,
                hint="Pass --resume to continue it, or choose another --out",
            )
        return None

    def _prepare_data(self):
        from omnict_cli.run.study_inputs import PrepareSetup
        from omnict_cli.segmentation.cache import MaskCache
        from omnict_cli.studies.load import LoadOptions

        config = self.config
        read = read_rows(config.data)
        segmenter = make_training_segmenter(config.segmenter, self.say)
        setup = PrepareSetup(
            preprocess=self.model.config.preprocess_config(),
            segmenter=segmenter,
            mask_cache=MaskCache(config.mask_cache_dir) if segmenter is not None else None,
            load_options=LoadOptions(allow_non_ct=config.allow_non_ct),
        )
        cache = TensorCache(config.tensor_cache_dir or default_tensor_cache_root(config.mask_cache_dir))
        found_in_cache = self._fill_cache(read.rows, setup, cache)
        prepared = prepare_examples(read.rows, setup, cache)  # every study is in the cache now: header reads
        examples, lengths, overlong = fit_to_length(prepared.examples, self.processor, config.max_length)
        problems = read.problems + prepared.problems + overlong
        for problem in problems:
            self.say(problem)
        if not examples:
            raise TrainError(
                "has no usable training rows",
                path=config.data,
                hint="See the lines above for why each row was left out",
            )
        self.say(
            f"{len(examples)} rows on {prepared.studies} studies "
            f"({found_in_cache} were in the tensor cache at {cache.root})"
        )
        return examples, lengths, cache, problems

    def _fill_cache(self, rows, setup, cache: TensorCache) -> int:
        """Prepare the studies missing from the tensor cache, shared out across processes.

        Process ``r`` of ``n`` prepares every ``n``-th distinct image from the ``r``-th on, so
        several processes prepare in parallel and reach the barrier together. Returns how
        many studies were already in the cache (all processes together).
        """
        from omnict_cli.ui import progress as progress_bar

        accelerator = self.accelerator
        images = list(dict.fromkeys(row.image for row in rows))
        mine = set(images[accelerator.process_index :: accelerator.num_processes])
        with progress_bar(disable=not self.show_progress) as bar:
            task = bar.add_task("preparing studies", total=len(mine))
            share = prepare_examples(
                [row for row in rows if row.image in mine], setup, cache, on_study=lambda: bar.advance(task)
            )
        found = accelerator.reduce(torch.tensor(float(share.from_cache), device=accelerator.device), "sum")
        accelerator.wait_for_everyone()
        return int(found)

    def _restore(self, checkpoint: Path) -> None:
        state = checkpoints.load_checkpoint(checkpoint, self.accelerator, self.optimizer, self.parameter_names)
        changed = []
        if state.get("num_processes") != self.accelerator.num_processes:
            changed.append(f"processes: {state.get('num_processes')} -> {self.accelerator.num_processes}")
        if state.get("num_examples") != len(self.examples):
            changed.append(f"usable rows: {state.get('num_examples')} -> {len(self.examples)}")
        _check_same_settings(self.config, state, checkpoint, changed)
        self.done, self.elapsed_before = int(state["step"]), float(state.get("elapsed_s", 0.0))
        self.last_loss = state.get("loss")
        self.metrics.keep_until(self.done)
        self.say(f"resuming from {checkpoint} at step {self.done} of {self.plan.total_steps}")

    # ---- the loop ----------------------------------------------------------------------

    def _loop(self) -> TrainResult:
        plan, config = self.plan, self.config
        self.started = time.perf_counter()
        dataset = StudyDataset(self.examples, self.cache)
        collator = BatchCollator(self.processor, config.max_length)
        with TrainProgress(plan.total_steps, self.done, enabled=self.show_progress) as bar, deferred_interrupts():
            self.bar = bar
            try:
                while self.done < plan.total_steps:
                    epoch, first = divmod(self.done, plan.steps_per_epoch)
                    last = min(plan.steps_per_epoch, plan.total_steps - epoch * plan.steps_per_epoch)
                    sampler = PlannedBatches(plan, epoch, first, last, self.accelerator.process_index)
                    loader = torch.utils.data.DataLoader(
                        dataset, batch_sampler=sampler, collate_fn=collator, num_workers=config.num_workers
                    )
                    self._epoch(iter(loader), epoch, first, last)
                    saved_just_now = bool(config.save_every_steps) and self.done % config.save_every_steps == 0
                    if last == plan.steps_per_epoch and not saved_just_now:
                        with critical():
                            self._checkpoint()  # every epoch ends with a checkpoint
            except KeyboardInterrupt:
                raise self._interrupted() from None
        self._save_final()
        return self._result()

    def _epoch(self, batches, epoch: int, first: int, last: int) -> None:
        config = self.config
        for _ in range(first, last):
            step_started = time.perf_counter()
            passes = [next(batches) for _ in range(config.gradient_accumulation)]
            with critical():  # Ctrl-C waits for the step, its metrics line and its checkpoint
                loss, tokens = self._step(passes)
                self.done += 1
                self.last_loss = loss
                seconds = time.perf_counter() - step_started
                self.bar.update(self.done, loss, tokens / seconds)
                if self.done % config.log_every_steps == 0 or self.done == self.plan.total_steps:
                    self._log(epoch, loss, tokens, seconds)
                if config.save_every_steps and self.done % config.save_every_steps == 0:
                    self._checkpoint()

    def _step(self, passes: list) -> tuple[float, int]:
        """One optimizer step over ``passes`` (this process's share of the global batch): ``(loss, tokens)``."""
        accelerator, device = self.accelerator, self.accelerator.device
        local_answer_tokens = sum(int((batch["labels"][:, 1:] != -100).sum()) for batch in passes)
        answer_tokens = accelerator.reduce(torch.tensor(float(local_answer_tokens), device=device), "sum")
        # accelerate divides by the accumulation and DDP averages over processes: undo both, so the gradient
        # is the sum over the global batch divided by its answer tokens.
        scale = accelerator.num_processes * self.config.gradient_accumulation / answer_tokens.clamp(min=1.0)
        # Set before the passes: under DeepSpeed the optimizer steps inside the last pass's backward.
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate()
        loss_sum = torch.zeros((), device=device)
        tokens = 0
        for batch in passes:
            with accelerator.accumulate(self.model):
                answer_loss = answer_loss_sum(self.model, batch, device)
                accelerator.backward(answer_loss * scale)
                if accelerator.sync_gradients:
                    self._optimizer_step()
            loss_sum += answer_loss.detach()
            tokens += int(batch["attention_mask"].sum())
        totals = accelerator.reduce(torch.stack([loss_sum, torch.tensor(float(tokens), device=device)]), "sum")
        return float(totals[0] / answer_tokens.clamp(min=1.0)), int(totals[1])

    def _optimizer_step(self) -> None:
        config = self.config
        if config.max_grad_norm:
            self.accelerator.clip_grad_norm_(self.trainable, config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _learning_rate(self) -> float:
        return learning_rate_at(
            self.done, self.plan.total_steps, self.config.resolved_learning_rate, self.config.warmup_ratio
        )

    # ---- records -----------------------------------------------------------------------

    def _log(self, epoch: int, loss: float, tokens: int, seconds: float) -> None:
        plan = self.plan
        step_in_epoch = (self.done - 1) % plan.steps_per_epoch
        rows = [self.examples[i].row.line for i in plan.step_rows(epoch, step_in_epoch).ravel()]
        self.metrics.write(
            {
                "step": self.done,
                "epoch": round(self.done / plan.steps_per_epoch, 4),
                "loss": round(loss, 6),
                "lr": learning_rate_at(
                    self.done - 1, plan.total_steps, self.config.resolved_learning_rate, self.config.warmup_ratio
                ),
                "step_s": round(seconds, 4),
                "tokens_per_s": round(tokens / seconds, 1),
                "studies_per_s": round(len(rows) / seconds, 3),
                "elapsed_s": round(self._elapsed(), 2),
                "rows": rows,
            }
        )

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def _state(self) -> dict:
        return {
            "step": self.done,
            "total_steps": self.plan.total_steps,
            "steps_per_epoch": self.plan.steps_per_epoch,
            "num_processes": self.accelerator.num_processes,
            "num_examples": len(self.examples),
            "elapsed_s": round(self._elapsed(), 3),
            "loss": self.last_loss,
            "config": self.config.to_dict(),
        }

    def _interrupted(self) -> TrainInterrupted:
        """After Ctrl-C: a checkpoint of the steps done (unless one holds them already), for the resume."""
        latest = checkpoints.latest_checkpoint(self.config.out)
        if self.done and (latest is None or checkpoints.read_state(latest).get("step") != self.done):
            with critical():  # a second Ctrl-C waits for the checkpoint too
                latest = self._checkpoint()
        return TrainInterrupted(self.done, self.plan.total_steps, latest if self.done else None)

    def _checkpoint(self) -> Path:
        folder = checkpoints.save_checkpoint(
            self.config.out,
            self.done,
            self.accelerator,
            self.model,
            self.processor,
            self.optimizer,
            self.parameter_names,
            self._state(),
            self.model_dtype,
            self.config.keep_checkpoints,
        )
        if self.show_progress:
            self.bar.note(f"checkpoint {folder}")
        return folder

    def _save_final(self) -> None:
        checkpoints.save_model_dir(self.config.out, self.accelerator, self.model, self.processor, self.model_dtype)
        if self.main:
            write_text_atomically(self.config.out / RESULT_FILE, json.dumps(self._state(), indent=2))
        self.accelerator.wait_for_everyone()

    def _result(self) -> TrainResult:
        return TrainResult(
            out_dir=self.config.out,
            steps=self.done,
            epochs=round(self.done / self.plan.steps_per_epoch, 4),
            final_loss=self.last_loss,
            metrics_path=self.metrics.path,
            rows=len(self.examples),
            problems=list(self.problems),
            main_process=self.main,
        )


# ---- pieces usable on their own ----------------------------------------------------------


def make_accelerator(config: TrainConfig):
    """An ``accelerate.Accelerator`` for the run: bf16 on a GPU that supports it, fp32 on CPU.

    Under ``accelerate launch`` (or ``torchrun``) the launcher's processes and DeepSpeed/FSDP settings
    apply; the precision is always ``config.mixed_precision`` ("auto": bf16 on a GPU with bf16, else fp32).
    Several processes without a GPU train on CPU (DDP over gloo).
    """
    import os

    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # Launched as several processes (accelerate launch, torchrun) on a machine without a GPU: DDP over gloo on CPU.
    cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    precision = config.mixed_precision
    if precision == "auto":  # the launcher's own default is fp32, so it is not consulted
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # find_unused_parameters: a batch of volumes only never touches the slice expert W_s, and vice versa.
    return Accelerator(
        cpu=cpu,
        mixed_precision=precision,
        gradient_accumulation_steps=config.gradient_accumulation,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def enable_activation_checkpointing(model) -> None:
    """Recompute each layer's activations in the backward pass (non-reentrant, so frozen inputs work).

    transformers 5.x renamed ``gradient_checkpointing_enable`` (now a deprecated alias) to
    ``activation_checkpointing_enable``; both are supported.
    """
    options = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)


def configure_deepspeed(accelerator, config: TrainConfig) -> None:
    """Fill the DeepSpeed config's ``auto`` sizes from the run (no-op without DeepSpeed).

    accelerate reads the micro batch from prepared DataLoaders; this trainer feeds its
    own batches, so it states the size; gradient clipping follows ``max_grad_norm``.
    """
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    settings = plugin.deepspeed_config
    if settings.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        settings["train_micro_batch_size_per_gpu"] = config.per_device_batch_size
    if settings.get("gradient_clipping", "auto") == "auto":
        settings["gradient_clipping"] = config.max_grad_norm


def make_training_segmenter(name: str, notify: Callable[[str], None]):
    """The segmenter for organ masks, or None for ``"none"`` (OSE pools the whole image)."""
    if name == "none":
        return None
    from omnict_cli.segmentation.segmenter_choice import make_segmenter

    return make_segmenter(name, notify=notify)


def load_model(model_dir: Path):
    """``(model in float32, processor, dtype the weights are saved in)`` of an OmniCT model directory.

    Training keeps float32 master weights (mixed precision computes in bf16);
    the final model is written back in the dtype it came in.
    """
    from omnict_cli.model import OmniCTForConditionalGeneration, OmniCTProcessor

    model_dir = Path(model_dir)
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise TrainError(
            "is not a model directory (no config.json)",
            path=model_dir,
            hint="Give the output of 'omnict build-model' or of an earlier training stage",
        )
    restore_library_bars = silence_library_progress_bars()  # no "Loading weights" bar before ours
    try:
        saved_dtype = json.loads(config_file.read_text()).get("dtype") or "float32"
        model = OmniCTForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
        processor = OmniCTProcessor.from_pretrained(model_dir)
    except (OSError, ValueError) as error:
        raise TrainError(f"cannot load the model ({error})", path=model_dir) from error
    finally:
        restore_library_bars()
    if model.config.model_type != "omnict":
        raise TrainError(f"is a {model.config.model_type!r} model, not OmniCT", path=model_dir)
    return model, processor, getattr(torch, str(saved_dtype), torch.float32)


def answer_loss_sum(model, batch, device) -> torch.Tensor:
    """Summed cross-entropy of the answer tokens of one batch (labels -100 elsewhere), in float32."""
    labels = batch["labels"].to(device)
    width = labels.shape[1]
    answer_columns = (labels != -100).any(0).nonzero()
    first = int(answer_columns.min()) if len(answer_columns) else width - 1
    keep = max(2, width - first + 1)  # logits of positions first-1 .. width-1 predict tokens first .. width-1
    inputs = {key: batch[key] for key in MODEL_INPUT_KEYS if key in batch}
    for key in ("input_ids", "attention_mask", "pixel_values", "num_units"):
        inputs[key] = inputs[key].to(device)
    outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
    logits = outputs.logits[:, :-1].float()
    targets = labels[:, width - keep + 1 :]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )


def _check_same_settings(config: TrainConfig, state: dict, checkpoint: Path, changed: list[str]) -> None:
    """Raise TrainError naming every setting (and fact in ``changed``) that differs from the checkpoint's run."""
    changed = resume_mismatches(config, state.get("config", {})) + changed
    if changed:
        raise TrainError(
            f"cannot resume {checkpoint.name}: settings differ ({'; '.join(changed)})",
            path=checkpoint,
            hint="Resume with the settings of the interrupted run",
        )


def _finished_run(config: TrainConfig) -> dict | None:
    """The ``training.json`` of a run with these settings that already did all its steps, if there is one."""
    try:
        finished = json.loads((config.out / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    complete = finished.get("step") is not None and finished.get("step") == finished.get("total_steps")
    return finished if complete and not resume_mismatches(config, finished.get("config", {})) else None


def _result_from_file(out_dir: Path, finished: dict) -> TrainResult:
    steps, per_epoch = int(finished["step"]), max(1, int(finished.get("steps_per_epoch", 1)))
    return TrainResult(
        out_dir=out_dir,
        steps=steps,
        epochs=round(steps / per_epoch, 4),
        final_loss=finished.get("loss"),
        metrics_path=out_dir / "metrics.jsonl",
        rows=int(finished.get("num_examples", 0)),
    )
