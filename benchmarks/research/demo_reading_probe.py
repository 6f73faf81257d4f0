"""Can the projector and the LLM learn to read the encoder's features? A fast probe, without the full recipe.

Why: the demo model answers the same for every image (docs/demo-model.md).
Is the encoder blind, or does the decoder fail to use what it is given? This
script trains only the projector and the LLM of a composed model (for
instance ``OUT.work/untrained`` of ``omnict train-demo --recipe
reading-experiment``) on yes/no questions, with the frozen encoder's
features computed once per study, so a run takes minutes instead of the
recipe's twenty. Every class is asked about every training phantom, with
the phantoms' own question templates, cut to as many "Yes" as "No" per
class, so the question alone says nothing. It reports balanced accuracy and
ROC AUC of logit("Yes") - logit("No") on held-out phantoms with the right
and with swapped images (paper Table 14), overall and per class.

``--oracle-scale S`` adds ``S`` times the study's true 18 labels to the first
18 channels of every encoder feature: an encoder that sees everything. If
the decoder cannot learn even that, the bottleneck is on the decoder's side.
``--classes`` limits the questions to some classes (one class needs no
interaction between question and image).

``--task report`` trains on structured reports instead
(:mod:`omnict_cli.training.structured_reports`: the present classes only, in
CT-RATE order) and scores greedy reports on the held-out phantoms with the
bundled labeler: macro F1 over the classes drawn there, right vs swapped.

Usage::

    omnict train-demo /tmp/demo --recipe reading-experiment --threads 2
    python benchmarks/research/demo_reading_probe.py --model /tmp/demo.work/untrained \\
        --train-phantoms /tmp/demo.work/phantoms-seed101 /tmp/demo.work/phantoms-seed102 \\
        --test-phantoms /tmp/test-phantoms --epochs 2 --lr 1e-4
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from omnict_cli.errors import OmnictError
from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.phantom.reports import CLASS_ORGAN, yes_no_question
from omnict_cli.run.study_inputs import PrepareSetup
from omnict_cli.segmentation.cache import MaskCache
from omnict_cli.training.dataset import BatchCollator, StudyDataset, prepare_examples
from omnict_cli.training.demo import structured_training_rows
from omnict_cli.training.rows import read_rows
from omnict_cli.training.tensor_cache import TensorCache
from omnict_cli.training.trainer import load_model, make_training_segmenter


def dense_yes_no_rows(phantom_dir: Path, classes: list[str], seed: int) -> list[dict]:
    """One yes/no row per class per study of a phantom set, balanced per class ("Yes" count = "No" count)."""
    rng = np.random.default_rng(seed)
    by_class = {name: {"Yes": [], "No": []} for name in classes}
    with open(phantom_dir / "labels.csv", newline="") as handle:
        for record in csv.DictReader(handle):
            for name in classes:
                question = yes_no_question(name, "3d", rng)
                answer = "Yes" if record[name] == "1" else "No"
                by_class[name][answer].append(
                    {
                        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                        "image": str(phantom_dir.resolve() / "volumes" / record["VolumeName"]),
                        "organ": CLASS_ORGAN[name],
                        "class": name,
                    }
                )
    rows = []
    for name in classes:
        answers = by_class[name]
        count = min(len(answers["Yes"]), len(answers["No"]))
        for answer in ("Yes", "No"):
            rows += [answers[answer][i] for i in rng.permutation(len(answers[answer]))[:count]]
    return rows


def study_labels(phantom_dirs) -> dict[str, torch.Tensor]:
    """Image path -> float ``[18]`` true labels, from each set's ``labels.csv``."""
    labels = {}
    for folder in phantom_dirs:
        with open(Path(folder) / "labels.csv", newline="") as handle:
            for record in csv.DictReader(handle):
                path = str(Path(folder).resolve() / "volumes" / record["VolumeName"])
                labels[path] = torch.tensor([float(record[name]) for name in CTRATE_ABNORMALITIES])
    return labels


class FrozenFeatures:
    """The vision tower's features, computed once per study; the model's ``encode_units`` reads them by study key."""

    def __init__(self, model):
        self.encoder = model.spatial_encoder
        self.compute = self.encoder.encode_units
        self.by_key: dict[str, torch.Tensor] = {}
        self.current: list[str] = []
        self.encoder.encode_units = lambda pixel_values: torch.cat([self.by_key[key] for key in self.current])

    def add(self, items, oracle_scale: float, labels: dict) -> None:
        with torch.no_grad():
            for item in items:
                if item["key"] not in self.by_key:
                    pixels = torch.as_tensor(np.asarray(item["image"].units, dtype=np.float32))
                    features = self.compute(pixels).clone()
                    features[..., :18] += oracle_scale * labels[item["path"]]
                    self.by_key[item["key"]] = features


def load_items(rows_path: Path, row_classes: dict[tuple[str, str], str], model, cache_root: Path) -> list[dict]:
    """Dataset items (question, answer, model input, organ mask) plus study key, image path and class.

    ``row_classes`` maps (question, image path) to the class asked (rows files do not keep it; "" if absent).
    """
    read = read_rows(rows_path)
    segmenter = make_training_segmenter("builtin", print)
    setup = PrepareSetup(
        preprocess=model.config.preprocess_config(), segmenter=segmenter, mask_cache=MaskCache(cache_root / "masks")
    )
    cache = TensorCache(cache_root / "tensors")
    prepared = prepare_examples(read.rows, setup, cache)
    dataset = StudyDataset(prepared.examples, cache)
    items = []
    for index, example in enumerate(prepared.examples):
        item = dataset[index]
        item.update(
            key=example.key,
            path=str(example.row.image),
            label=row_classes.get((example.row.question, str(example.row.image)), ""),
        )
        items.append(item)
    return items


def answer_logits(model, collator, features: FrozenFeatures, items, keys):
    batch = collator(items)
    features.current = keys
    inputs = {
        key: batch[key]
        for key in ("input_ids", "attention_mask", "pixel_values", "num_units", "image_kinds", "organ_masks")
    }
    return model(**inputs, use_cache=False).logits, batch["labels"]


def swapped_keys(items) -> dict[str, str]:
    """Each study key -> the key n/2 studies on (sorted), the Table 14 swap."""
    keys = sorted({item["key"] for item in items})
    return {key: keys[(i + len(keys) // 2) % len(keys)] for i, key in enumerate(keys)}


def evaluate(model, collator, features, items, yes_no, swap: bool) -> dict:
    """Balanced accuracy and AUC of logit(Yes) - logit(No); ``swap`` gives each study the image n/2 studies on."""
    other = swapped_keys(items)
    scores, truth, classes = [], [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(items), 16):
            chunk = items[start : start + 16]
            keys_used = [other[item["key"]] if swap else item["key"] for item in chunk]
            logits, labels = answer_logits(model, collator, features, chunk, keys_used)
            for row, item in enumerate(chunk):
                position = int((labels[row] != -100).nonzero()[0, 0]) - 1
                scores.append(float(logits[row, position, yes_no[0]] - logits[row, position, yes_no[1]]))
                truth.append(item["answer"] == "Yes")
                classes.append(item["label"])
    model.train()
    scores, truth, classes = np.array(scores), np.array(truth), np.array(classes)
    per_class = {
        str(name): round(float(roc_auc_score(truth[classes == name], scores[classes == name])), 2)
        for name in sorted(set(classes))
        if 0 < truth[classes == name].sum() < (classes == name).sum()
    }
    return {
        "balanced_accuracy": round(float(((scores[truth] > 0).mean() + (scores[~truth] <= 0).mean()) / 2), 3),
        "auc": round(float(roc_auc_score(truth, scores)), 3),
        "score_std": round(float(scores.std()), 4),
        "per_class_auc": per_class,
    }


def evaluate_reports(model, processor, features, items, labels, swap: bool) -> dict:
    """Greedy reports on ``items`` read by the bundled labeler: macro F1 over the classes the studies have."""
    from omnict_cli.labels.labeler import label_reports

    other = swapped_keys(items)
    texts = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(items), 25):
            chunk = items[start : start + 25]
            batch = processor(
                [item["question"] for item in chunk],
                [item["image"] for item in chunk],
                organ_masks=[item["organ_mask"] for item in chunk],
            )
            features.current = [other[item["key"]] if swap else item["key"] for item in chunk]
            output = model.generate(**batch, max_new_tokens=96, do_sample=False)
            texts += processor.decode(output[:, batch["input_ids"].shape[1] :])
    model.train()
    predicted = np.asarray(label_reports(texts), dtype=bool)
    truth = np.stack([labels[item["path"]].numpy() > 0.5 for item in items])
    per_class = {}
    for column, name in enumerate(CTRATE_ABNORMALITIES):
        if truth[:, column].any():
            hits = int((predicted[:, column] & truth[:, column]).sum())
            named = int(predicted[:, column].sum()) + int(truth[:, column].sum())
            per_class[name] = round(2 * hits / named, 2)
    return {
        "macro_f1": round(float(np.mean(list(per_class.values()))), 3),
        "per_class_f1": per_class,
        "distinct_reports": len(set(texts)),
    }


def probe_rows(args, classes) -> tuple[list[dict], list[dict]]:
    """Training and held-out rows of the probe's task."""

    def rows_of(folder: Path, index: int) -> list[dict]:
        if args.task == "report":
            return structured_training_rows(folder, repeats=1)
        return dense_yes_no_rows(folder, classes, args.seed + index)

    train = [row for index, folder in enumerate(args.train_phantoms) for row in rows_of(Path(folder), index)]
    return train, rows_of(Path(args.test_phantoms), 0)


def train_and_probe(args) -> list[dict]:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    classes = [name for name in CTRATE_ABNORMALITIES if not args.classes or name in args.classes]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    paths, row_classes = {}, {}
    for split, rows in zip(("train", "test"), probe_rows(args, classes)):
        paths[split] = work / f"{split}-{args.task}.jsonl"
        paths[split].write_text("".join(json.dumps(row) + "\n" for row in rows))
        row_classes.update({(row["messages"][0]["content"], row["image"]): row.get("class", "") for row in rows})
    model, processor, _ = load_model(Path(args.model))
    train_items = load_items(paths["train"], row_classes, model, Path(args.cache_dir))
    test_items = load_items(paths["test"], row_classes, model, Path(args.cache_dir))
    labels = study_labels([*args.train_phantoms, args.test_phantoms])
    features = FrozenFeatures(model)
    features.add(train_items + test_items, args.oracle_scale, labels)
    collator = BatchCollator(processor, 1024)
    tokenizer = processor.tokenizer
    yes_no = [tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in ("Yes", "No")]
    trained = [p for name, p in model.named_parameters() if "vision_tower" not in name]
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("vision_tower" not in name)
    optimizer = torch.optim.AdamW(trained, lr=args.lr, weight_decay=0.0)
    steps = args.epochs * (len(train_items) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps, pct_start=0.03)
    history, step, losses = [], 0, []
    print(f"{len(train_items)} training rows, {len(test_items)} held-out rows, {steps} steps", flush=True)
    for epoch in range(args.epochs):
        order = list(range(len(train_items)))
        random.Random(args.seed + epoch).shuffle(order)
        for start in range(0, len(order) - args.batch + 1, args.batch):
            chunk = [train_items[i] for i in order[start : start + args.batch]]
            logits, targets = answer_logits(model, collator, features, chunk, [item["key"] for item in chunk])
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1), targets[:, 1:].flatten(), ignore_index=-100
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            optimizer.zero_grad()
            schedule.step()
            step += 1
            losses.append(float(loss.detach()))
            if step % args.eval_every == 0 or step == steps:
                record = {"step": step, "train_loss": round(float(np.mean(losses[-50:])), 4)}
                for condition, swap in (("right", False), ("swapped", True)):
                    if args.task == "report":
                        record[condition] = evaluate_reports(model, processor, features, test_items, labels, swap)
                    else:
                        record[condition] = evaluate(model, collator, features, test_items, yes_no, swap)
                history.append(record)
                print(f"step {step}/{steps}  loss {record['train_loss']:.3f}  {summary_line(record)}", flush=True)
    return history


def summary_line(record: dict) -> str:
    if "macro_f1" in record["right"]:
        return "  ".join(
            f"{condition}: macro F1 {record[condition]['macro_f1']:.3f}" for condition in ("right", "swapped")
        )
    return "  ".join(
        f"{condition}: acc {record[condition]['balanced_accuracy']:.3f} AUC {record[condition]['auc']:.3f}"
        for condition in ("right", "swapped")
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a composed OmniCT model directory (encoder pretrained)")
    parser.add_argument("--train-phantoms", nargs="+", required=True, help="demo-data folders to train on")
    parser.add_argument("--test-phantoms", required=True, help="a demo-data folder from another seed")
    parser.add_argument(
        "--task",
        choices=("yes-no", "report"),
        default="yes-no",
        help="yes/no questions per class, or structured reports",
    )
    parser.add_argument("--classes", nargs="*", default=[], help="ask about these classes only (default: all 18)")
    parser.add_argument(
        "--oracle-scale", type=float, default=0.0, help="add this times the true labels to the features"
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="reading-probe", help="folder for the rows files")
    parser.add_argument("--cache-dir", default="reading-probe/cache", help="tensor and mask cache")
    parser.add_argument("--json", help="write every evaluation here")
    args = parser.parse_args(argv)
    for folder in [*args.train_phantoms, args.test_phantoms]:
        if not (Path(folder) / "labels.csv").is_file() or not (Path(folder) / "volumes").is_dir():
            raise SystemExit(f"{folder}: not a demo-data folder (needs labels.csv and volumes/)")
    try:
        history = train_and_probe(args)
    except OmnictError as error:
        raise SystemExit(error.one_line()) from error
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "history": history}, indent=1))
    last = history[-1]
    key = "per_class_f1" if args.task == "report" else "per_class_auc"
    print(f"{key}, right images:  ", last["right"][key])
    print(f"{key}, swapped images:", last["swapped"][key])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
