"""Which of the 18 classes can the demo's vision encoder learn to see? Held-out AUC of its label pretraining.

Why: the demo model's reports name only the classes its from-scratch encoder
sees (docs/demo-model.md), so the encoder is where report F1 is won or lost,
and a full ``omnict train-demo`` run takes half an hour. This script runs only
the recipe's unit-label pretraining (``fit_unit_label_head``, the loop of
``pretrain_vision_encoder``) for one or more encoder shapes on the same
in-memory phantoms (seed ``VISION_SEED``, cases 1..N), then scores each
trained head on held-out cases of that seed (N+1..N+M): study-level ROC AUC
per class, the study's logit being the maximum over its units.

Variants are ``name:field=value,field=value`` over :class:`DemoSizes`
(``image_size``, ``patch_size``, ``vision_width``, ``vision_layers``,
``vision_heads``) and the training settings ``lr``, ``epochs`` and ``batch``; ``shipped``
alone is the shipped shape with the command line's settings. The first
variant is the baseline the others are compared with, trained in the same
process; variants of one image size share one draw of the phantoms.

Usage::

    python benchmarks/research/demo_encoder_probe.py --epochs 10 --cases 1200 --held-out 200 \\
        --variant shipped --variant native:image_size=128 --json encoder_probe.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.training.demo import (
    DemoRecipe,
    StageSettings,
    build_vision_encoder,
    fit_unit_label_head,
    pretraining_units,
    unit_label_logits,
)

SIZE_FIELDS = ("image_size", "patch_size", "vision_width", "vision_layers", "vision_heads")
SETTING_FIELDS = {"lr": float, "epochs": int, "batch": int}


def parse_variant(text: str) -> tuple[str, dict]:
    """``"native:image_size=128,lr=3e-4"`` -> ("native", {"image_size": 128, "lr": 0.0003})."""
    name, _, fields = text.partition(":")
    overrides = {}
    for item in filter(None, fields.split(",")):
        key, _, value = item.partition("=")
        kind = int if key in SIZE_FIELDS else SETTING_FIELDS.get(key)
        try:
            overrides[key] = kind(value)
        except (TypeError, ValueError):
            raise SystemExit(
                f"bad variant {text!r}: use name:field=number,... with fields "
                f"{', '.join([*SIZE_FIELDS, *SETTING_FIELDS])}"
            ) from None
    return name, overrides


def held_out_auc(encoder, head, units, labels, batch_size: int = 32) -> dict[str, float]:
    """Study-level ROC AUC per class (max over units); classes with no positive or no negative are left out."""
    encoder.eval()
    with torch.no_grad():
        logits = torch.cat(
            [
                unit_label_logits(encoder, head, units[i : i + batch_size].float()).amax(1)
                for i in range(0, len(units), batch_size)
            ]
        )
    truth = labels.amax(1).numpy()
    scores = {}
    for column, name in enumerate(CTRATE_ABNORMALITIES):
        if 0 < truth[:, column].sum() < len(truth):
            scores[name] = float(roc_auc_score(truth[:, column], logits[:, column].numpy()))
    return scores


def run_variant(name: str, overrides: dict, args, drawn: dict) -> dict:
    """Pretrain one encoder shape and score it; returns the record printed and saved.

    ``drawn`` keeps the phantoms' units per image size across variants.
    """
    recipe = DemoRecipe()
    sizes = {key: value for key, value in overrides.items() if key in SIZE_FIELDS}
    epochs, lr, batch = (overrides.get(key, getattr(args, key)) for key in ("epochs", "lr", "batch"))
    recipe = replace(
        recipe,
        sizes=replace(recipe.sizes, **sizes),
        vision_pretrain=StageSettings(epochs=epochs, learning_rate=lr, batch_size=batch),
    )
    started = time.perf_counter()
    if recipe.sizes.image_size not in drawn:
        drawn[recipe.sizes.image_size] = (
            pretraining_units(recipe, cases=args.cases),
            pretraining_units(recipe, cases=args.held_out, first=args.cases + 1),
        )
    (units, labels), (test_units, test_labels) = drawn[recipe.sizes.image_size]
    ready = time.perf_counter()
    torch.manual_seed(args.seed)
    encoder = build_vision_encoder(recipe.sizes, seed=args.seed)
    head, losses = fit_unit_label_head(
        encoder, units, labels, recipe.vision_pretrain, notify=lambda line: print(f"  {name}: {line}", flush=True)
    )
    trained = time.perf_counter()
    auc = held_out_auc(encoder, head, test_units, test_labels)
    return {
        "variant": name,
        "overrides": overrides,
        "epochs": epochs,
        "lr": lr,
        "batch": batch,
        "cases": args.cases,
        "held_out": args.held_out,
        "losses": losses,
        "auc": auc,
        "mean_auc": float(np.mean(list(auc.values()))),
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "draw_s": round(ready - started, 1),
        "train_s": round(trained - ready, 1),
    }


def print_table(records: list[dict]) -> None:
    width = max(12, *(len(r["variant"]) + 2 for r in records))
    print(f"\n{'class':34s}" + "".join(f"{r['variant']:>{width}s}" for r in records))
    for cls in CTRATE_ABNORMALITIES:
        cells = [f"{r['auc'][cls]:{width}.3f}" if cls in r["auc"] else f"{'-':>{width}s}" for r in records]
        print(f"{cls:34s}" + "".join(cells))
    print(f"{'mean':34s}" + "".join(f"{r['mean_auc']:{width}.3f}" for r in records))
    base = records[0]
    print(
        f"{'train time vs ' + base['variant']:34s}"
        + "".join(f"{r['train_s'] / base['train_s']:{width - 1}.2f}x" for r in records)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="name:field=value,... over DemoSizes (repeatable; the first is the baseline)",
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cases", type=int, default=1200, help="training phantoms (seed VISION_SEED, from 1)")
    parser.add_argument("--held-out", type=int, default=200, help="held-out phantoms after the training ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the records here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = [parse_variant(v) for v in args.variant or ["shipped"]]
    records, drawn = [], {}
    for name, overrides in variants:
        records.append(run_variant(name, overrides, args, drawn))
        print(f"{name}: mean AUC {records[-1]['mean_auc']:.3f} ({records[-1]['train_s']} s training)", flush=True)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(records, handle, indent=1)
    print_table(records)


if __name__ == "__main__":
    main()
