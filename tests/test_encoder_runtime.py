"""The frozen encoder's runtime (fp32, bf16, int8, openvino, `auto`): close vectors, kept apart in
caches, saved with the model and used again where it is loaded. On the tiny random BERT."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest

from tests.test_label_free import DESCRIPTIONS
from tests.test_shared_encoder import _splits, encoded_rows
from tests.test_transformer import make_tiny_checkpoint
from urgency import config
from urgency.config import EmbeddingParams, HybridParams, LabelFreeParams
from urgency.label_free import fit_label_free
from urgency.models import load_model_dir
from urgency.transformer import fit_embedding, load_pretrained, save_head_model
from urgency.transformer_model import (
    HEAD_FILE,
    VECTORS,
    OpenVinoEncoder,
    embed,
    openvino_precision,
    runtime_model,
    vector_scope,
)

TEXTS = [
    "Server down, production outage, nobody can log in",
    "question about my invoice",
    "password reset please",
    "great support, thank you",
    "my screen is broken and the laptop will not start after the update last night",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bert"))


def _quantized_layers(model: Any) -> dict[str, bool]:
    """Linear layer name -> whether it is int8."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

    return {
        name: isinstance(module, QuantizedLinear)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear | QuantizedLinear)
    }


def test_int8_quantizes_the_attention_and_keeps_the_vectors_close(checkpoint: Path) -> None:
    model, tokenizer = load_pretrained(checkpoint)
    assert runtime_model(model, "fp32") is model
    int8 = runtime_model(model, "int8")
    assert runtime_model(model, "int8") is int8  # one copy per encoder
    layers = _quantized_layers(int8)
    assert all(quantized == (".attention." in f".{name}.") for name, quantized in layers.items())
    assert any(layers.values())
    assert not any(_quantized_layers(model).values())  # the fp32 encoder is left as it was

    settings = {"max_length": 64, "batch_size": 2, "normalize": True}
    fp32_vectors = embed(model, tokenizer, TEXTS, **settings)
    int8_vectors = embed(int8, tokenizer, TEXTS, **settings)
    cosine = (fp32_vectors * int8_vectors).sum(axis=1)
    assert not np.allclose(fp32_vectors, int8_vectors)
    assert cosine.min() > 0.99


def test_bf16_is_a_bfloat16_copy_with_fp32_sentence_vectors_close_to_fp32s(checkpoint: Path) -> None:
    import torch

    model, tokenizer = load_pretrained(checkpoint)
    bf16 = runtime_model(model, "bf16")
    assert runtime_model(model, "bf16") is bf16  # one copy per encoder and runtime
    assert runtime_model(model, "int8") is not bf16
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # the fp32 encoder is kept

    settings = {"max_length": 64, "batch_size": 2, "normalize": True}
    fp32_vectors = embed(model, tokenizer, TEXTS, **settings)
    bf16_vectors = embed(bf16, tokenizer, TEXTS, **settings)
    assert bf16_vectors.dtype == np.float32
    # Pooled and normalised in fp32: unit vectors, not bf16's 1 +- 0.004.
    assert np.allclose(np.linalg.norm(bf16_vectors, axis=1), 1.0, atol=1e-6)
    assert not np.allclose(fp32_vectors, bf16_vectors)
    assert (fp32_vectors * bf16_vectors).sum(axis=1).min() > 0.99


def test_openvino_runs_the_converted_encoder_with_vectors_close_to_fp32s(checkpoint: Path) -> None:
    model, tokenizer = load_pretrained(checkpoint)
    converted = runtime_model(model, "openvino")
    assert isinstance(converted, OpenVinoEncoder)
    assert runtime_model(model, "openvino") is converted  # converted once per encoder

    settings = {"max_length": 64, "batch_size": 3, "normalize": True}  # 5 texts: a batch of 2 too
    fp32_vectors = embed(model, tokenizer, TEXTS, **settings)
    openvino_vectors = embed(converted, tokenizer, TEXTS, **settings)
    assert openvino_vectors.shape == fp32_vectors.shape
    assert (fp32_vectors * openvino_vectors).sum(axis=1).min() > 0.99
    # One text alone (one stream busy, the other idle) is the same vector as in a batch.
    alone = embed(converted, tokenizer, TEXTS[-1:], **settings)
    np.testing.assert_allclose(alone[0], openvino_vectors[-1], atol=2e-3)
    # Its precision is the CPU's, and part of the vectors' scope.
    assert openvino_precision() in ("bf16", "f32")
    assert (
        vector_scope("abc", 128, True, runtime="openvino")
        == f"abc-128-normalised-openvino-{openvino_precision()}"
    )


def _embed_in_child(encoder: Any, tokenizer: Any, queue: Any) -> None:
    queue.put(embed(encoder, tokenizer, TEXTS, max_length=64, batch_size=2, normalize=True))


def test_an_openvino_encoder_used_before_a_fork_runs_in_the_forked_process(checkpoint: Path) -> None:
    """`predict --jobs` and the local Dask cluster fork their workers after the parent loaded
    (and may have run) the models; OpenVINO's compiled model hangs in a forked child, so the
    child compiles its own."""
    import multiprocessing

    model, tokenizer = load_pretrained(checkpoint)
    converted = runtime_model(model, "openvino")
    in_parent = embed(converted, tokenizer, TEXTS, max_length=64, batch_size=2, normalize=True)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_embed_in_child, args=(converted, tokenizer, queue))
    child.start()
    try:
        in_child = queue.get(timeout=120)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    np.testing.assert_allclose(in_child, in_parent, atol=1e-5)


def test_an_openvino_model_predicts_a_file_in_forked_workers(checkpoint: Path, tmp_path: Path) -> None:
    """The whole path `predict --jobs 2` takes: the model loaded (and run) in the parent, the
    file's chunks in forked workers, results equal to one process's."""
    from urgency.predict import predict_file

    fitted = fit_label_free(
        {"sentiment": DESCRIPTIONS}, {}, LabelFreeParams(checkpoint=checkpoint, runtime="openvino"), seed=0
    )["sentiment"]
    save_head_model(fitted, tmp_path / "models" / "sentiment", pd.DataFrame({"text": ["server down"]}))
    models = load_model_dir(tmp_path / "models")
    source = tmp_path / "tickets.csv"
    pd.DataFrame(
        {"subject": ["re"] * 12, "body": [f"{text} {n}" for n in range(3) for text in TEXTS[:4]]}
    ).to_csv(source, index=False)
    outputs = []
    for jobs in (1, 2):
        target = tmp_path / f"scored-{jobs}.csv"
        predict_file(models, source, target, max_text_chars=1000, chunk_size=3, jobs=jobs)
        outputs.append(pd.read_csv(target))
    pd.testing.assert_frame_equal(outputs[0], outputs[1], atol=1e-4)


def test_the_openvino_runtime_needs_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "openvino" else found(name))
    with pytest.raises(pydantic.ValidationError, match=r"pip install 'urgency\[openvino\]'"):
        LabelFreeParams(runtime="openvino")


def test_auto_is_resolved_when_the_params_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every family's params say the concrete runtime: what is saved in the model and its scope.
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(config, "native_bf16", lambda native=native: native)
        for params in (EmbeddingParams(), HybridParams(), LabelFreeParams(runtime="auto")):
            assert params.runtime == expected
        assert LabelFreeParams(runtime="int8").runtime == "int8"
    assert isinstance(config.native_bf16(), bool)


def test_an_unknown_runtime_is_refused(checkpoint: Path) -> None:
    model, _ = load_pretrained(checkpoint)
    with pytest.raises(ValueError, match="fp16"):
        runtime_model(model, "fp16")
    with pytest.raises(pydantic.ValidationError, match="runtime"):
        EmbeddingParams(runtime="fp16")


def test_the_runtime_is_part_of_the_vectors_scope(checkpoint: Path, tmp_path: Path) -> None:
    # fp32 scopes are those written before runtimes, so existing caches stay valid.
    assert vector_scope("abc", 128, True, runtime="fp32") == "abc-128-normalised"
    assert vector_scope("abc", 128, True, runtime="int8") != vector_scope("abc", 128, True, runtime="fp32")

    cache = tmp_path / "cache"
    splits = _splits()
    fit_embedding(
        splits,
        EmbeddingParams(checkpoint=checkpoint, runtime="fp32"),
        full_run=True,
        seed=0,
        embedding_cache=cache,
    )
    # The fp32 vectors in the cache are not int8's: the int8 fit embeds every text again.
    with encoded_rows() as rows:
        fit_embedding(
            splits,
            EmbeddingParams(checkpoint=checkpoint, runtime="int8"),
            full_run=True,
            seed=0,
            embedding_cache=cache,
        )
    assert sum(rows) > 0
    assert len([folder for folder in cache.iterdir() if folder.is_dir()]) == 2


@pytest.mark.parametrize("runtime", ["fp32", "bf16", "int8", "openvino"])
def test_a_model_saved_with_a_runtime_predicts_with_it(
    checkpoint: Path, tmp_path: Path, runtime: str
) -> None:
    fitted = fit_label_free(
        {"sentiment": DESCRIPTIONS}, {}, LabelFreeParams(checkpoint=checkpoint, runtime=runtime), seed=0
    )["sentiment"]
    assert fitted.runtime == runtime
    save_head_model(fitted, tmp_path / "sentiment", pd.DataFrame({"text": ["server down"]}))
    head_file = next((tmp_path / "sentiment").rglob(HEAD_FILE))
    assert json.loads(head_file.read_text())["runtime"] == runtime

    VECTORS.clear()
    loaded = load_model_dir(tmp_path)["sentiment"]
    python_model = loaded.model.unwrap_python_model()
    assert python_model.shared.runtime == runtime
    if runtime == "openvino":
        assert isinstance(python_model.encoder, OpenVinoEncoder)
        requirements = (tmp_path / "sentiment" / "requirements.txt").read_text()
        assert "openvino==" in requirements
    else:
        assert any(_quantized_layers(python_model.encoder).values()) == (runtime == "int8")
    predicted = loaded.model.predict(pd.DataFrame({"text": TEXTS}))
    assert np.allclose(np.asarray(predicted), fitted.predict_proba(TEXTS), atol=1e-5)


def test_a_model_saved_before_runtimes_runs_fp32(checkpoint: Path, tmp_path: Path) -> None:
    fitted = fit_label_free(
        {"sentiment": DESCRIPTIONS}, {}, LabelFreeParams(checkpoint=checkpoint, runtime="fp32"), seed=0
    )["sentiment"]
    save_head_model(fitted, tmp_path / "sentiment", pd.DataFrame({"text": ["server down"]}))
    head_file = next((tmp_path / "sentiment").rglob(HEAD_FILE))
    head = json.loads(head_file.read_text())
    del head["runtime"]
    head_file.write_text(json.dumps(head))
    # The digests recorded at save time no longer match the edited file: rewrite them.
    from urgency.models import artifact_digests, write_digest_file

    write_digest_file(tmp_path / "sentiment", artifact_digests(tmp_path / "sentiment"))
    loaded = load_model_dir(tmp_path)["sentiment"]
    assert loaded.model.unwrap_python_model().shared.runtime == "fp32"


def test_embed_runs_a_training_model_in_eval_and_gives_it_back_in_training(checkpoint: Path) -> None:
    """A model in training mode (a fine-tune's validation pass) is embedded without dropout and
    left in training mode; an eval model is not switched at all."""
    model, tokenizer = load_pretrained(checkpoint)
    model.eval()
    settings = {"max_length": 32, "batch_size": 2, "normalize": True}
    expected = embed(model, tokenizer, TEXTS, **settings)
    assert not model.training
    model.train()
    again = embed(model, tokenizer, TEXTS, **settings)
    assert model.training and all(module.training for module in model.modules())
    np.testing.assert_allclose(again, expected, atol=1e-6)
