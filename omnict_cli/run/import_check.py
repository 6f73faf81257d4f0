"""The last check of ``omnict import-weights``: one ``ask`` on a bundled example, through the engine ``ask`` uses.

Equal logits and features show the tensors landed where stock models put
them; they do not show that omnict's own path (preprocessing, SigLIP, TPE,
unshuffle, projector, organ tokens, prompt, generation) runs end to end on
the imported directory. This runs it once, on the bundled example volume,
exactly as ``omnict ask`` would (without a segmenter: the global organ
fallback), and turns the record into a :class:`Check`. It lives in ``run/``
because the model package may not import the run engine.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omnict_cli.errors import OmnictError
from omnict_cli.model.release_verify import Check

EXAMPLE_NAME = "ct_chest_small.nii.gz"
EXAMPLE_QUESTION = "Is there a pleural effusion?"


def bundled_example() -> Path | None:
    """The example volume of a source checkout or the Docker image, if this installation has it."""
    package_root = Path(__file__).resolve().parents[1]
    for folder in (package_root.parent / "examples", Path(sys.prefix) / "share" / "omnict" / "examples"):
        if (folder / EXAMPLE_NAME).is_file():
            return folder / EXAMPLE_NAME
    return None


def ask_on_example(model_dir, max_new_tokens: int = 8) -> Check:
    """Load ``model_dir`` as ``ask`` does and answer one question about the bundled example volume."""
    from omnict_cli.run.engine import Engine, GenerationSettings
    from omnict_cli.run.pipeline import Job, Pipeline, RunSettings
    from omnict_cli.run.questions import study_for_image
    from omnict_cli.run.study_inputs import PrepareSetup

    name = f"ask on the bundled example {EXAMPLE_NAME}"
    example = bundled_example()
    if example is None:
        return Check(name, True, "skipped: this installation has no examples/ folder")
    try:
        engine = Engine.load(model_dir, device="auto", dtype="auto")
    except OmnictError as error:
        return Check(name, False, error.one_line())
    study = study_for_image(example.parent, example.name)
    settings = RunSettings(batch_size=1, workers=0, generation=GenerationSettings(max_new_tokens=max_new_tokens))
    pipeline = Pipeline(engine, PrepareSetup(preprocess=engine.preprocess_config), settings)
    records = _Records()
    pipeline.run([Job(f"{study.study_id}::1", study, "ask", EXAMPLE_QUESTION, None, "1")], records)
    record = records.items[0]
    if record["status"] != "ok":
        problem = record.get("error", {}).get("message") or record.get("note") or record["status"]
        return Check(name, False, f"status {record['status']}: {problem}")
    return Check(name, True, f"answered {EXAMPLE_QUESTION!r} with {record['answer'][:60]!r}")


class _Records:
    """Keeps the records in memory instead of writing a file."""

    def __init__(self):
        self.items: list[dict] = []

    def write(self, record: dict) -> None:
        self.items.append(record)
