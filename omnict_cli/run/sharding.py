"""Split a run over several processes or machines, and merge their findings into one file.

A study belongs to shard ``I`` of ``N`` when the sha256 of its id, taken
modulo N, is I: deterministic, independent of the folder's order or size,
and every question about one study lands in the same shard. Each shard
writes ``<out stem>.shard<I>-of-<N><suffix>`` beside ``--out`` (and resumes it
on its own) and, when finished, a ``.done`` marker. Whoever finishes last
(rank 0 under ``accelerate launch``, after a barrier; any job of a SLURM
array, when it sees every marker) merges the shards into ``--out``,
sorted by study id then question id: the order a single process writes.
The merge rewrites ``--out`` only under the rules of
:mod:`omnict_cli.run.findings_file` (provably omnict's, same model, locked).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from omnict_cli.errors import OmnictError
from omnict_cli.run.records import encode_record, record_id


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def owns(self, study_id: str) -> bool:
        digest = hashlib.sha256(study_id.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    def path(self, out: Path) -> Path:
        suffix = "".join(out.suffixes) or ".jsonl"
        stem = out.name[: -len(suffix)] if out.suffixes else out.name
        return out.with_name(f"{stem}.shard{self.index}-of-{self.count}{suffix}")

    def marker(self, out: Path) -> Path:
        return self.path(out).with_name(self.path(out).name + ".done")


def parse_shard(text: str) -> Shard:
    """``"I/N"`` (0 <= I < N) -> Shard; raises OmnictError with the expected form."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise OmnictError(
            f"--shard {text!r} is not I/N", hint="For example --shard 0/4 (shards count from 0)"
        ) from None
    if count < 1 or not 0 <= index < count:
        raise OmnictError(f"--shard {text!r}: I must be from 0 to N-1", hint="For example --shard 3/4 is the last of 4")
    return Shard(index, count)


def distributed_shard() -> Shard | None:
    """The shard of this process under ``accelerate launch`` / torchrun (``RANK``, ``WORLD_SIZE``), else None."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    return Shard(int(os.environ.get("RANK", "0")), world)


def mark_done(shard: Shard, out: Path, records: int) -> None:
    from omnict_cli.atomic import write_text_atomically

    write_text_atomically(
        shard.marker(out), json.dumps({"shard": f"{shard.index}/{shard.count}", "records": records}) + "\n"
    )


def all_done(count: int, out: Path) -> bool:
    return all(Shard(i, count).marker(out).is_file() for i in range(count))


def merge_shards(count: int, out: Path, identity) -> int:
    """Write every shard's records into ``out`` (atomically), in single-process order; returns the count.

    ``out`` is rewritten only when it is provably omnict's and of the same model
    (:mod:`omnict_cli.run.findings_file`), under its lock (waiting for a run that
    holds it); records it already holds are kept unless a shard has a newer one.
    """
    from omnict_cli.atomic import write_bytes_atomically
    from omnict_cli.run.findings_file import FindingsLock, read_own_records, refuse_other_models

    with FindingsLock(out, wait=True):
        existing = read_own_records(out)
        refuse_other_models(out, existing, identity)
        merged = {record_id(record): record for record in existing.records}
        for index in range(count):
            shard_path = Shard(index, count).path(out)
            shard_records = read_own_records(shard_path)
            refuse_other_models(shard_path, shard_records, identity)
            merged.update((record_id(record), record) for record in shard_records.records)
        records = sorted(merged.values(), key=_order_key)
        write_bytes_atomically(out, b"".join(encode_record(record) for record in records))
    return len(records)


def _order_key(record: dict):
    question = str(record.get("question_id") or "")
    return (str(record.get("study_id", "")), int(question) if question.isdigit() else 0, question)
