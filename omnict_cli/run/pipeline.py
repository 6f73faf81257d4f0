"""The engine behind ``omnict report`` and ``omnict ask``: studies in, one JSON record per job out.

Flow: jobs (a study and a question) -> :class:`~omnict_cli.run.prefetch.StudyPrefetcher`
prepares each study in worker processes ahead of the model -> batches of
``batch_size`` jobs go to :meth:`Engine.generate` -> each record is written
as soon as its batch ends (:class:`~omnict_cli.run.records.RecordWriter`).

Faults stay local: a study that cannot be loaded is an error record; a
batch that runs out of GPU memory is retried in halves down to one study,
and a study that still does not fit is an error record; any other failure
of a batch is retried one study at a time so one bad study cannot take
its neighbours down. Only an output that cannot be written stops the run
(:class:`~omnict_cli.errors.OutputError`), with no partial record.

Resume: :func:`open_findings` reads what an earlier run wrote, refuses a
file that is not provably omnict's or was written by another model
(:mod:`omnict_cli.run.findings_file`), cuts a torn last record, and returns
the ids already done; the run skips them, so a rerun of the same command finishes
the folder with exactly one record per job.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from omnict_cli import __version__
from omnict_cli.prompt_format import REPORT_QUESTION
from omnict_cli.run.answers import CLOSED, OPEN, REQUEST, YesNoAnswer, first_phrase, question_kind
from omnict_cli.run.engine import Engine, GenerationSettings, is_out_of_memory
from omnict_cli.run.records import (
    STATUS_ERROR,
    STATUS_OK,
    STATUS_SKIPPED,
    RecordWriter,
    error_info,
    record_id,
    rewrite_records,
    study_location,
)
from omnict_cli.run.repeats import drop_repeated_sentences, repeat_warning

if TYPE_CHECKING:  # preparing studies imports torch: only a run with studies to do pays for it
    from omnict_cli.run.study_inputs import PreparedStudy, PrepareSetup

REPORT_PROMPT = REPORT_QUESTION
"""The authors' report question (their MedEval-CT rows and ``omnict demo-data`` use it)."""


@dataclass(frozen=True)
class Job:
    """One thing to generate: a report for a study, or the answer to one question about it.

    ``record_id`` is the resume key: the study id for a report, ``<study id>::<question id>`` for a question.
    """

    record_id: str
    study: object
    task: str
    question: str
    organ: str | None = None
    question_id: str | None = None
    notes: tuple[str, ...] = ()
    """Warnings about the question itself (chat tokens removed), put in front of the record's warnings."""


def report_jobs(studies, prompt: str | None = None, organ: str | None = None) -> list[Job]:
    """One report job per study."""
    return [Job(study.study_id, study, "report", prompt or REPORT_PROMPT, organ) for study in studies]


@dataclass
class RunSettings:
    """Everything about a run that is not the jobs: batching, generation, workers, extras."""

    batch_size: int = 1
    workers: int = 1
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    add_labels: bool = False
    label_convention: str = "ctrate"
    """How the labels read lymph nodes (``omnict_cli.labels.rules.CONVENTIONS``)."""
    max_question_chars: int = 2000
    """Longer questions and prompts are error records (:mod:`omnict_cli.run.question_rules`)."""
    model_notices: tuple[str, ...] = ()
    """Warnings every record of the run starts with (the bundled demo model's notice, :mod:`omnict_cli.run.demo_notice`)."""


@dataclass
class RunCounts:
    """What a run did, for the progress bar and the summary table."""

    total: int = 0
    already_done: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    masks_from_cache: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def processed(self) -> int:
        return self.ok + self.failed + self.skipped

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (``seconds`` is only set at the end)."""
        return time.perf_counter() - self.started


@dataclass
class EarlierRecords:
    """What :func:`open_findings` kept of an earlier run: record ids to skip, and counts for the summary."""

    done: set[str] = field(default_factory=set)
    records: int = 0
    errors: int = 0
    notes: list[str] = field(default_factory=list)


def open_findings(out: Path, identity, overwrite: bool = False, retry_errors: bool = False) -> EarlierRecords:
    """Prepare ``out`` for a run (its lock already held); returns what it keeps of an earlier run.

    Raises OutputError, the file untouched, when it is not provably omnict's
    or holds records of another model (unless ``overwrite``); see
    :mod:`omnict_cli.run.findings_file`. Only then is a torn last record cut.
    """
    from omnict_cli.run.findings_file import cut_torn_record, read_own_records, refuse_other_models

    earlier = EarlierRecords()
    existing = read_own_records(out)
    if overwrite:
        rewrite_records(out, [])
        return earlier
    refuse_other_models(out, existing, identity)
    if existing.cut_bytes:
        cut_torn_record(out, existing)
        earlier.notes.append(f"{out}: cut a torn last line ({existing.cut_bytes} bytes) left by an interrupted run")
    records = existing.records
    if retry_errors:
        kept = [r for r in records if r.get("status") != STATUS_ERROR]
        if len(kept) != len(records):
            rewrite_records(out, kept)
            earlier.notes.append(f"retrying {len(records) - len(kept)} studies that failed before")
        records = kept
    earlier.done = {record_id(r) for r in records}
    earlier.records = len(records)
    earlier.errors = sum(r.get("status") == STATUS_ERROR for r in records)
    return earlier


class Pipeline:
    """Runs jobs through prefetch -> batched generation -> records; see the module notes.

    ``engine`` may be an :class:`~omnict_cli.run.engine_on_demand.EngineOnDemand` and ``setup``
    a function that builds the :class:`PrepareSetup`: both are then made only when a study is
    left to do, so a rerun with every record written loads neither the model nor the segmenter.
    """

    def __init__(
        self,
        engine: Engine,
        setup: PrepareSetup | Callable[[], PrepareSetup],
        settings: RunSettings,
        on_record: Callable[[dict, RunCounts], None] | None = None,
    ):
        self.engine = engine
        self.setup = setup
        self.settings = settings
        self.on_record = on_record or (lambda record, counts: None)
        self.counts = RunCounts()
        self._labeler = None

    def run(self, jobs: list[Job], writer: RecordWriter, done: set[str] = frozenset()) -> RunCounts:
        """Generate every job not in ``done``; records go to ``writer`` batch by batch."""
        started = self.counts.started = time.perf_counter()
        todo = [job for job in jobs if job.record_id not in done]
        self.counts.total, self.counts.already_done = len(jobs), len(jobs) - len(todo)
        todo = self._askable(todo, writer)
        if not todo:
            self.counts.seconds = time.perf_counter() - started
            return self.counts
        if callable(self.setup):
            self.setup = self.setup()
        from omnict_cli.run.prefetch import StudyPrefetcher  # imports torch: only when there is work

        by_study: dict[str, list[Job]] = {}
        for job in todo:
            by_study.setdefault(job.study.study_id, []).append(job)
        studies = [study_jobs[0].study for study_jobs in by_study.values()]
        pending: list[tuple[Job, object]] = []  # (job, PreparedStudy or the study's exception), in job order
        size = self.settings.batch_size
        try:
            with (
                _cores_left_to_workers(self.engine.device, self.settings.workers),
                StudyPrefetcher(
                    self.setup, self.settings.workers, depth=max(size, 2 * self.settings.workers + 2)
                ) as prefetch,
            ):
                for study, prepared in prefetch.prepared(studies):
                    pending.extend((job, prepared) for job in by_study[study.study_id])
                    while (cut := _batch_end(pending, size)) is not None:
                        self._run_batch(pending[:cut], writer)
                        pending = pending[cut:]
                if pending:
                    self._run_batch(pending, writer)
        finally:
            self.counts.seconds = time.perf_counter() - started
        return self.counts

    def _askable(self, jobs: list[Job], writer: RecordWriter) -> list[Job]:
        """``jobs`` with their questions cleaned by the one rule; a question over the limit is an error record here."""
        from dataclasses import replace

        from omnict_cli.run.question_rules import clean_question, question_problem, shown_question

        limit = self.settings.max_question_chars
        usable = []
        for job in jobs:
            question, notes = clean_question(job.question)
            job = replace(job, question=question, notes=(*job.notes, *notes))
            problem = question_problem(question, limit)
            if problem is None:
                usable.append(job)
            else:
                self._write(
                    writer, self._error_record(replace(job, question=shown_question(question, limit)), None, problem)
                )
        return usable

    # ---- generation ------------------------------------------------------------------------

    def _run_batch(self, entries: list, writer: RecordWriter) -> None:
        """Generate for the entries that can be, then write every entry's record in job order."""
        from omnict_cli.run.study_inputs import organ_selection_for

        items = [(job, prepared) for job, prepared in entries if _generatable(prepared)]
        selections = [organ_selection_for(p, job.task, job.question, job.organ) for job, p in items]
        started = time.perf_counter()
        outcomes = self._answer(items, selections) if items else []
        seconds = (time.perf_counter() - started) / max(len(items), 1)
        outcomes = [drop_repeated_sentences(o) if isinstance(o, str) else o for o in outcomes]  # (text, dropped)
        outcomes = [(o, 0) if isinstance(o, YesNoAnswer) else o for o in outcomes]
        texts = [o[0] for o in outcomes if isinstance(o, tuple)]
        labels = iter(self._labels(texts)) if self.settings.add_labels and texts else None
        results = iter(zip(selections, outcomes))
        for job, prepared in entries:
            if isinstance(prepared, BaseException):
                record = self._error_record(job, None, prepared)
            elif prepared.skip_reason:
                record = self._skipped_record(job, prepared)
            else:
                selection, outcome = next(results)
                if isinstance(outcome, BaseException):
                    record = self._error_record(job, prepared, outcome)
                else:
                    record = self._ok_record(
                        job, prepared, selection, *outcome, seconds, next(labels) if labels is not None else None
                    )
            self._write(writer, record)

    def _answer(self, items: list, selections: list) -> list:
        """Per item, in order: a report's text, an answer (:mod:`omnict_cli.run.answers`), or the study's exception.

        Closed questions get a :class:`YesNoAnswer` (one forward pass), open ones the generated text cut at
        its first phrase, reports and requests the whole generated text.
        """
        outcomes: list = [None] * len(items)
        by_kind: dict[str, list[int]] = {}
        for index, (job, _) in enumerate(items):
            kind = question_kind(job.question) if job.task == "ask" else REQUEST
            if kind == CLOSED and not self.engine.answers_yes_no:
                kind = OPEN  # a tokenizer without distinct "Yes"/"No" tokens: generate the answer
            by_kind.setdefault(kind, []).append(index)
        for kind, indices in by_kind.items():
            answers = self._generate([items[i] for i in indices], [selections[i] for i in indices], kind)
            for index, answer in zip(indices, answers):
                outcomes[index] = first_phrase(answer) if kind == OPEN and isinstance(answer, str) else answer
        return outcomes

    def _model_call(self, items: list, selections: list, kind: str) -> list:
        questions = [job.question for job, _ in items]
        model_inputs = [p.model_input for _, p in items]
        masks = [s.mask for s in selections]
        if kind == CLOSED:
            return self.engine.answer_yes_no(questions, model_inputs, masks)
        if kind == OPEN:
            return self.engine.generate(questions, model_inputs, masks, self.settings.generation, open_answer=True)
        return self.engine.generate(questions, model_inputs, masks, self.settings.generation)

    def _generate(self, items: list, selections: list, kind: str = REQUEST) -> list:
        """Outputs of one kind (or the exception for a study) for ``items``; halves the batch on out-of-memory."""
        try:
            return self._model_call(items, selections, kind)
        except Exception as error:
            if is_out_of_memory(error):
                _release_gpu_memory()
                if len(items) == 1:
                    return [
                        OutOfMemory(
                            f"{items[0][1].input}: out of GPU memory even alone (batch size 1); "
                            "use a larger GPU, --dtype bfloat16, or fewer --max-new-tokens"
                        )
                    ]
                half = len(items) // 2
                return self._generate(items[:half], selections[:half], kind) + self._generate(
                    items[half:], selections[half:], kind
                )
            if len(items) == 1:
                return [error]
            return [self._generate([item], [selection], kind)[0] for item, selection in zip(items, selections)]

    def _labels(self, texts: list[str]) -> list[dict]:
        from omnict_cli.labels import CTRATE_ABNORMALITIES
        from omnict_cli.labels.classifier import default_classifier
        from omnict_cli.labels.labeler import label_reports

        if self._labeler is None:
            self._labeler = default_classifier()
        matrix = label_reports(texts, model=self._labeler, convention=self.settings.label_convention)
        return [{name: int(value) for name, value in zip(CTRATE_ABNORMALITIES, row)} for row in matrix]

    # ---- records ---------------------------------------------------------------------------

    def _write(self, writer: RecordWriter, record: dict) -> None:
        writer.write(record)
        status = record["status"]
        if status == STATUS_OK:
            self.counts.ok += 1
        elif status == STATUS_SKIPPED:
            self.counts.skipped += 1
        else:
            self.counts.failed += 1
            self.counts.failures.append(record["error"]["message"])
        self.counts.masks_from_cache += bool(record.get("mask_from_cache"))
        self.on_record(record, self.counts)

    def _base_record(self, job: Job, prepared: PreparedStudy | None) -> dict:
        record = {"study_id": job.study.study_id}
        if job.task == "ask":
            record["record_id"] = job.record_id
            record["question_id"] = job.question_id
        record["root"], record["input"] = study_location(job.study)
        if prepared is not None:
            record.update(
                kind=prepared.kind, format=prepared.format, shape=list(prepared.shape), spacing=list(prepared.spacing)
            )
        else:
            record["format"] = job.study.format
        record["task"] = job.task
        record["question" if job.task == "ask" else "prompt"] = job.question
        if job.notes:
            record["warnings"] = list(job.notes)  # _finish puts them in front of the study's warnings
        return record

    def _ok_record(
        self,
        job: Job,
        prepared: PreparedStudy,
        selection,
        text: str | YesNoAnswer,
        repeats: int,
        model_seconds: float,
        labels: dict | None,
    ) -> dict:
        """An ok record; ``text`` is the generated text, or a closed question's :class:`YesNoAnswer`."""
        record = self._base_record(job, prepared)
        record.update(
            organs=list(selection.groups),
            organ_reason=selection.reason,
            segmenter=prepared.segmenter,
            mask_from_cache=prepared.mask_from_cache,
        )
        if job.task == "report":
            from omnict_cli.labels.ctrate_io import split_sections

            findings, impression = split_sections(text)
            record.update(findings=findings, impression=impression)
        elif isinstance(text, YesNoAnswer):
            record.update(answer=text.text, answer_kind=CLOSED, answer_probabilities=text.to_record())
        else:
            record.update(answer=text, answer_kind=question_kind(job.question))
        if labels is not None:
            record["labels"] = labels
        record = self._finish(record, prepared, STATUS_OK, model_seconds)
        if selection.warning:
            record["warnings"].append(selection.warning)
        if repeats:
            record["warnings"].append(repeat_warning(repeats))
        return record

    def _error_record(self, job: Job, prepared: PreparedStudy | None, error: BaseException) -> dict:
        record = self._base_record(job, prepared)
        record["error"] = error_info(error)
        return self._finish(record, prepared, STATUS_ERROR, 0.0)

    def _skipped_record(self, job: Job, prepared: PreparedStudy) -> dict:
        record = self._base_record(job, prepared)
        record["note"] = prepared.skip_reason
        return self._finish(record, prepared, STATUS_SKIPPED, 0.0)

    def _finish(self, record: dict, prepared: PreparedStudy | None, status: str, model_seconds: float) -> dict:
        question_notes = record.pop("warnings", [])
        timing = dict(prepared.timing_s) if prepared is not None else {}
        timing["model"] = round(model_seconds, 3)
        record.update(
            model=self.engine.identity.to_dict(),
            omnict_version=__version__,
            timing_s=timing,
            warnings=list(prepared.warnings) if prepared is not None else [],
            status=status,
        )
        record["warnings"][:0] = [*self.settings.model_notices, *question_notes]
        return record


@contextlib.contextmanager
def _cores_left_to_workers(device: str, workers: int):
    """On the CPU, the model takes the cores the workers leave (one at least) for the run.

    Workers and the model both compute on the CPU then; torch's default of one
    thread per core would put more threads than cores on the machine, and the
    pipeline ran slower than its two halves one after the other.
    """
    import torch

    if device != "cpu" or workers == 0:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(max(1, min(saved, (os.cpu_count() or 1) - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _generatable(prepared) -> bool:
    return not isinstance(prepared, BaseException) and not prepared.skip_reason


def _batch_end(pending: list, size: int) -> int | None:
    """The end of the first slice of ``pending`` that holds ``size`` studies for the model, if it has that many."""
    count = 0
    for index, (_, prepared) in enumerate(pending):
        count += _generatable(prepared)
        if count == size:
            return index + 1
    return None


class OutOfMemory(RuntimeError):
    """A study that does not fit on the GPU even alone."""


def _release_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- a whole run into one findings file ------------------------------------------------------


@dataclass
class RunResult:
    """What :func:`run_to_file` did: counts, where records went, and notes for the user."""

    counts: RunCounts
    out: Path
    written_to: Path
    notes: list[str] = field(default_factory=list)
    merged: int | None = None
    """Records in ``out`` after merging shards, when this process merged them."""
    errors_in_file: int = 0
    """Error records in ``written_to`` after the run, earlier runs' included: what the exit code reports."""


def run_to_file(
    pipeline: Pipeline,
    jobs: list[Job],
    out: str | Path,
    overwrite: bool = False,
    retry_errors: bool = False,
    shard=None,
    extra_records: list[dict] = (),
) -> RunResult:
    """Run ``jobs`` into ``out`` (or this shard's file), resuming what is there; merge shards when all are done.

    ``extra_records`` (rows that could not become jobs) are written once, like the other records.
    Raises OutputError (the run stops, the file stays whole) and KeyboardInterrupt (Ctrl-C, after the
    write in progress).
    """
    from omnict_cli.run import sharding
    from omnict_cli.run.findings_file import FindingsLock, check_out_path, read_own_records, refuse_other_models
    from omnict_cli.run.interrupts import deferred_interrupts

    out = Path(out)
    target = out if shard is None else shard.path(out)
    check_out_path(out)
    check_out_path(target)
    identity = pipeline.engine.identity
    if shard is not None:
        jobs = [job for job in jobs if shard.owns(job.study.study_id)]
        extra_records = [r for r in extra_records if shard.owns(r["study_id"])]
        refuse_other_models(out, read_own_records(out), identity)  # the merge will write it: ours, or no work
    with FindingsLock(target) as lock:
        earlier = open_findings(target, identity, overwrite, retry_errors)
        with deferred_interrupts(), _GuardedWriter(target) as writer:
            for record in extra_records:
                if record_id(record) not in earlier.done:
                    pipeline._write(writer, _stamped(record, pipeline))
            counts = pipeline.run(jobs, writer, earlier.done)
    notes = lock.notes + earlier.notes
    result = RunResult(counts, out, target, notes, errors_in_file=earlier.errors + counts.failed)
    if shard is not None:
        sharding.mark_done(shard, out, earlier.records + counts.processed)
        if _ready_to_merge(shard, out):
            result.merged = sharding.merge_shards(shard.count, out, identity)
    return result


def _ready_to_merge(shard, out: Path) -> bool:
    """Under ``accelerate launch`` rank 0 merges after a barrier; a SLURM array merges when all markers exist."""
    from omnict_cli.run import sharding

    if sharding.distributed_shard() is not None:
        from accelerate import PartialState

        PartialState().wait_for_everyone()
        return shard.index == 0
    return sharding.all_done(shard.count, out)


def _stamped(record: dict, pipeline: Pipeline) -> dict:
    record = dict(record)
    record.setdefault("model", pipeline.engine.identity.to_dict())
    record.setdefault("omnict_version", __version__)
    record["warnings"] = [*pipeline.settings.model_notices, *record.get("warnings", [])]
    return record


class _GuardedWriter(RecordWriter):
    """A RecordWriter whose writes Ctrl-C cannot cut in half (see omnict_cli.run.interrupts)."""

    def write(self, record: dict) -> None:
        from omnict_cli.run.interrupts import critical

        with critical():
            super().write(record)
