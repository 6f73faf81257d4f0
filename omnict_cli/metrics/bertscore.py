"""BERTScore (Zhang et al. 2020) from a local Hugging Face encoder directory.

Lexical metrics miss paraphrases ("no effusion" vs "effusion absent");
BERTScore matches each token to its most similar token in the other text
by cosine similarity of contextual embeddings. Definition used here:

* embeddings are the hidden states after transformer layer ``layer``
  (bert_score's ``num_layers``; None = the last layer), L2-normalised;
* special tokens ([CLS], [SEP], <s>, padding) are left out of the matching;
* recall = (weighted) mean over reference tokens of the best cosine with any
  hypothesis token, precision the same the other way, F1 = 2PR / (P + R);
* ``idf=True`` weights tokens by idf(w) = ln((M + 1) / (df(w) + 1)) over the
  M references (bert_score's formula; a text whose tokens all weigh 0 falls
  back to equal weights); otherwise all weights are 1;
* no baseline rescaling; texts longer than the model's maximum length are
  truncated (as bert_score does).

For safety the model is read only from a local directory, only from
``*.safetensors`` weights (never pickled ``.bin`` files) and never with
remote code. torch / transformers are imported inside the function so that
importing omnict_cli.metrics stays instant.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from omnict_cli.errors import OmnictError


def check_model_dir(model_path: str | Path) -> Path:
    """The model directory, if it holds a config.json and safetensors weights; a clear error otherwise."""
    model_dir = Path(model_path)
    hint = "Give a local Hugging Face model folder (config.json, tokenizer files, *.safetensors)."
    if not model_dir.is_dir():
        raise OmnictError("BERTScore model directory does not exist", path=model_dir, hint=hint)
    if not (model_dir / "config.json").is_file():
        raise OmnictError("BERTScore model directory has no config.json", path=model_dir, hint=hint)
    if not any(model_dir.glob("*.safetensors")):
        raise OmnictError(
            "BERTScore model directory has no *.safetensors weights (pickled .bin weights are never loaded)",
            path=model_dir,
            hint="Convert the weights to safetensors with save_pretrained(safe_serialization=True).",
        )
    return model_dir


def _load_encoder(model_dir: Path, device: str):
    """Tokenizer and encoder from the directory, offline, safetensors only, no remote code."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
        model = AutoModel.from_pretrained(
            model_dir, local_files_only=True, use_safetensors=True, trust_remote_code=False
        )
    except (OSError, ValueError) as error:
        raise OmnictError(f"cannot load the BERTScore model: {error}", path=model_dir) from error
    return tokenizer, model.to(device).eval()


def _idf_weights(token_ids_per_reference: list[list[int]]) -> dict[int, float]:
    """idf(w) = ln((M + 1) / (df(w) + 1)) over the M references; unseen tokens get ln(M + 1)."""
    document_frequency = Counter(token for ids in token_ids_per_reference for token in set(ids))
    total = len(token_ids_per_reference)
    return {token: math.log((total + 1) / (count + 1)) for token, count in document_frequency.items()}


def _embed(texts: list[str], tokenizer, model, layer: int | None, batch_size: int, device: str):
    """Per text: (L2-normalised embeddings [tokens, width], token ids), special tokens removed."""
    import torch

    max_length = min(tokenizer.model_max_length, model.config.max_position_embeddings)
    embedded = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        keep = (batch.pop("special_tokens_mask") == 0) & (batch["attention_mask"] == 1)
        input_ids = batch["input_ids"].clone()
        with torch.no_grad():
            output = model(**batch.to(device), output_hidden_states=layer is not None)
        hidden = output.last_hidden_state if layer is None else output.hidden_states[layer]
        hidden = torch.nn.functional.normalize(hidden.float(), dim=-1).cpu()
        for row in range(hidden.shape[0]):
            embedded.append((hidden[row][keep[row]], input_ids[row][keep[row]].tolist()))
    return embedded


def _pair_scores(hyp, ref, idf: dict[int, float] | None, unseen_idf: float) -> tuple[float, float, float]:
    """Greedy-matching precision, recall and F1 of one (hypothesis, reference) embedding pair."""
    (hyp_vectors, hyp_ids), (ref_vectors, ref_ids) = hyp, ref
    if len(hyp_ids) == 0 or len(ref_ids) == 0:
        return 0.0, 0.0, 0.0
    similarity = hyp_vectors @ ref_vectors.T  # [hyp tokens, ref tokens] cosines
    precision = _weighted_mean(similarity.max(dim=1).values.tolist(), hyp_ids, idf, unseen_idf)
    recall = _weighted_mean(similarity.max(dim=0).values.tolist(), ref_ids, idf, unseen_idf)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def _weighted_mean(values: list[float], token_ids: list[int], idf: dict[int, float] | None, unseen_idf: float) -> float:
    """Plain mean, or idf-weighted mean when idf weights are given.

    When every token has weight 0 (each occurs in all references, e.g. with a
    single reference) the weighted mean is undefined; the plain mean is used.
    """
    weights = [1.0] * len(values) if idf is None else [idf.get(token, unseen_idf) for token in token_ids]
    total = sum(weights)
    if total <= 0:
        weights, total = [1.0] * len(values), float(len(values))
    return sum(w * v for w, v in zip(weights, values)) / total


def bertscore(
    hypotheses: list[str],
    references: list[str],
    model_path: str,
    layer: int | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    idf: bool = False,
) -> dict:
    """Mean BERTScore {"precision", "recall", "f1"} over pairs, plus "f1_per_pair" for bootstrapping.

    ``model_path`` is a local encoder directory (e.g. roberta-large or a
    radiology BERT saved with safetensors); see the module docstring for the
    exact definition and how it differs from the bert_score package.
    """
    if len(hypotheses) != len(references):
        raise OmnictError(f"{len(hypotheses)} hypotheses but {len(references)} references for BERTScore")
    if not hypotheses:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "f1_per_pair": []}
    tokenizer, model = _load_encoder(check_model_dir(model_path), device)
    n_layers = model.config.num_hidden_layers
    if layer is not None and not 0 <= layer <= n_layers:
        raise OmnictError(
            f"BERTScore layer {layer} does not exist; the model has layers 0..{n_layers}", path=model_path
        )
    hyp_embedded = _embed(list(hypotheses), tokenizer, model, layer, batch_size, device)
    ref_embedded = _embed(list(references), tokenizer, model, layer, batch_size, device)
    weights = _idf_weights([ids for _, ids in ref_embedded]) if idf else None
    unseen_idf = math.log(len(references) + 1)
    scores = [_pair_scores(h, r, weights, unseen_idf) for h, r in zip(hyp_embedded, ref_embedded)]
    count = len(scores)
    return {
        "precision": sum(s[0] for s in scores) / count,
        "recall": sum(s[1] for s in scores) / count,
        "f1": sum(s[2] for s in scores) / count,
        "f1_per_pair": [s[2] for s in scores],
    }
