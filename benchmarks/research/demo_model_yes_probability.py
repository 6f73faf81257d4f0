"""How much does the image move the demo model's "Yes"? A finer test than accuracy.

Why: a model can rank studies correctly by P("Yes") while the image moves
that probability too little to flip the answer; accuracy then shows nothing
(every answer is the prior's). This script asks one yes/no question per
class on held-out phantoms, with the right image and with the image swapped
between cases (paper Table 14), and prints per class the ROC AUC of
P("Yes") against the truth and how far P("Yes") moves (its standard
deviation over studies). AUC near 0.5 with the swapped images and well
above it with the right ones is reading, however small the movement.

Usage::

    python benchmarks/research/demo_model_yes_probability.py --model models/omnict-demo --cases 40
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from omnict_cli.phantom.generate import PhantomConfig
from omnict_cli.phantom.writer import write_phantom_set
from omnict_cli.training.demo import PHANTOM_SIZE, PHANTOM_SPACING

REPO = Path(__file__).resolve().parents[2]
EVAL_SEED = 2027  # as benchmarks/demo_model_eval.py: never a training seed
QUESTIONS = {
    "Cardiomegaly": "Is cardiomegaly present in this scan?",
    "Pleural effusion": "Does this scan show a pleural effusion?",
    "Pulmonary fibrotic sequela": "Is there pulmonary fibrotic sequela in this scan?",
    "Lung nodule": "Are there lung nodules in this scan?",
    "Emphysema": "Is emphysema present in this scan?",
}


def yes_probability(model, processor, prepared, question: str) -> float:
    """P("Yes") / (P("Yes") + P("No")) of the first answer token, as `omnict ask` would prompt."""
    from omnict_cli.run.study_inputs import organ_selection_for

    tokenizer = processor.tokenizer
    yes, no = (tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))[0] for word in ("Yes", "No"))
    mask = organ_selection_for(prepared, task="ask", question=question).mask
    batch = processor([question], [prepared.model_input], organ_masks=[mask])
    with torch.no_grad():
        logits = model(**batch, logits_to_keep=1).logits[0, -1]
    return float(torch.softmax(logits[[yes, no]], dim=0)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "omnict-demo")
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    args = parser.parse_args()

    from omnict_cli.model import OmniCTForConditionalGeneration, OmniCTProcessor
    from omnict_cli.run.study_inputs import PrepareSetup, prepare_study
    from omnict_cli.segmentation.builtin import BuiltinSegmenter
    from omnict_cli.studies.discover import discover_studies

    model = OmniCTForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32).eval()
    processor = OmniCTProcessor.from_pretrained(args.model)
    setup = PrepareSetup(preprocess=model.config.preprocess_config(), segmenter=BuiltinSegmenter())
    with tempfile.TemporaryDirectory() as work:
        phantoms = Path(work)
        write_phantom_set(phantoms, args.cases, args.seed, PhantomConfig(size=PHANTOM_SIZE, spacing=PHANTOM_SPACING))
        with open(phantoms / "labels.csv", newline="", encoding="utf-8") as handle:
            truth = {row["VolumeName"]: row for row in csv.DictReader(handle)}
        studies = sorted(discover_studies(phantoms / "volumes"), key=lambda study: study.study_id)
        prepared = [prepare_study(study, setup) for study in studies]
    names = [study.paths[0].name for study in studies]
    swapped = prepared[len(prepared) // 2 :] + prepared[: len(prepared) // 2]
    print(f"model {args.model}, {len(studies)} phantoms of seed {args.seed}\n")
    print("| class | positives | AUC right image | AUC swapped | P(yes) std right | P(yes) std swapped |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, question in QUESTIONS.items():
        y = np.array([int(truth[name][label]) for name in names])
        right = np.array([yes_probability(model, processor, item, question) for item in prepared])
        wrong = np.array([yes_probability(model, processor, item, question) for item in swapped])
        if 0 < y.sum() < len(y):
            print(
                f"| {label} | {y.sum()} | {roc_auc_score(y, right):.2f} | {roc_auc_score(y, wrong):.2f} | "
                f"{right.std():.1e} | {wrong.std():.1e} |"
            )


if __name__ == "__main__":
    main()
