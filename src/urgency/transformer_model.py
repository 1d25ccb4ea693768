"""The logged form of a transformer head: encoder -> mean pooling -> linear layer -> softmax.

Both transformer families (frozen sentence embeddings with a linear head, and the fine-tuned
encoder) are saved as this one MLflow pyfunc model, so `urgency.predict.load_head_model` and
`predict_proba` load and call them exactly like a scikit-learn head: a DataFrame with a `text`
column in, one probability per label out, in the order of `metadata["labels"]`.

This module is copied into every logged model (`code_paths`), so it imports nothing else from
`urgency` but `urgency.cleaning`, which is copied beside it: the artifact loads wherever its pip
requirements are installed, and cleans its input text as the model was trained to.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from urgency.cleaning import Cleaning, clean_texts

# The pretrained weights are local files; never let a missing file turn into a download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Torch's OpenMP threads spin while they wait. When other processes share the cores, spinning
# threads starve each other: measured on a busy 2-core machine, a training step ran 3x (and
# on a tiny model 100x) slower than with one thread. Passive waiting removes that collapse.
# It must be set before torch is first imported (this module imports torch only lazily).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HEAD_FILE = "head.json"


def pick_device() -> Any:
    """A GPU when there is one, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Average of the token vectors, padding excluded (how the MiniLM sentence model pools)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Row positions in batches of similar length: padding then costs little."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def embed(
    encoder: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int,
    normalize: bool,
    device: Any = None,
) -> np.ndarray:
    """Pooled sentence vectors for `texts` (n x hidden), computed in length-sorted batches."""
    import torch

    device = device or next(encoder.parameters()).device
    texts = [str(text) for text in texts]
    if not texts:
        return np.zeros((0, encoder.config.hidden_size), dtype=np.float32)
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    vectors = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    was_training = encoder.training
    encoder.eval()
    with torch.inference_mode():
        for rows in length_sorted_batches(lengths, batch_size):
            batch = tokenizer.pad(
                {key: [encoded[key][i] for i in rows] for key in ("input_ids", "attention_mask")},
                return_tensors="pt",
            ).to(device)
            hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            pooled = mean_pool(hidden.last_hidden_state, batch["attention_mask"])
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            vectors[rows] = pooled.float().cpu().numpy()
    encoder.train(was_training)
    return vectors


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def write_head(
    folder: Path,
    *,
    labels: Sequence[str],
    weight: np.ndarray,
    bias: np.ndarray,
    temperature: float,
    max_length: int,
    batch_size: int,
    normalize: bool,
    cleaning: dict[str, bool] | None = None,
) -> Path:
    """Save the linear layer and the settings inference needs as `folder/head.json`; `cleaning`:
    the text cleaning the model applies before encoding (None: none, as models saved before it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HEAD_FILE
    path.write_text(
        json.dumps(
            {
                "labels": list(labels),
                "weight": np.asarray(weight, dtype=float).tolist(),
                "bias": np.asarray(bias, dtype=float).tolist(),
                "temperature": float(temperature),
                "max_length": int(max_length),
                "batch_size": int(batch_size),
                "normalize": bool(normalize),
                "cleaning": cleaning,
            }
        )
    )
    return path


SPARSE_FEATURIZER = "featurizer.joblib"
SPARSE_WEIGHT = "weight.npy"


class SparsePart:
    """The hybrid family's second block of features: a fitted scikit-learn featurizer (the
    baseline's TF-IDF, reading a DataFrame's `text` column) and its labels x features weights.
    Its logits are added to the sentence vector's."""

    def __init__(self, featurizer: Any, weight: np.ndarray) -> None:
        self.featurizer = featurizer
        self.weight = np.asarray(weight, dtype=np.float32)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        features = self.featurizer.transform(pd.DataFrame({"text": list(texts)}))
        return np.asarray(features @ self.weight.T, dtype=np.float32)

    def save(self, folder: Path) -> Path:
        """Write the featurizer (joblib) and the weights (.npy) into `folder`; returns it."""
        import joblib

        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.featurizer, folder / SPARSE_FEATURIZER)
        np.save(folder / SPARSE_WEIGHT, self.weight)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> SparsePart:
        import joblib

        folder = Path(folder)
        return cls(joblib.load(folder / SPARSE_FEATURIZER), np.load(folder / SPARSE_WEIGHT))


class TransformerHead(mlflow.pyfunc.PythonModel):
    """Pyfunc model: artifacts `encoder` (a transformers model folder with its tokenizer) and
    `head` (head.json), and for the hybrid family `sparse` (a `SparsePart` folder). `predict`
    returns probabilities, n x labels."""

    def load_context(self, context: Any) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        head = json.loads(Path(context.artifacts["head"]).read_text())
        self.labels = head["labels"]
        self.weight = np.asarray(head["weight"], dtype=np.float32)
        self.bias = np.asarray(head["bias"], dtype=np.float32)
        self.temperature = float(head["temperature"])
        self.max_length = int(head["max_length"])
        self.batch_size = int(head["batch_size"])
        self.normalize = bool(head["normalize"])
        self.cleaning = Cleaning.from_dict(head.get("cleaning"))
        self.device = pick_device()
        folder = context.artifacts["encoder"]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.encoder = AutoModel.from_pretrained(folder).to(self.device).eval()
        self.load_sparse(context)

    def load_sparse(self, context: Any) -> None:
        """The hybrid family's TF-IDF part (artifact `sparse`); None for the other families."""
        folder = context.artifacts.get("sparse")
        self.sparse = SparsePart.load(folder) if folder else None

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        texts = clean_texts(model_input["text"], self.cleaning).tolist()
        vectors = embed(
            self.encoder,
            self.tokenizer,
            texts,
            max_length=self.max_length,
            batch_size=self.batch_size,
            normalize=self.normalize,
            device=self.device,
        )
        logits = vectors @ self.weight.T + self.bias
        if self.sparse is not None:
            logits = logits + self.sparse.logits(texts)
        return softmax(logits / self.temperature)
