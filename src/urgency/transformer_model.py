"""The logged form of a transformer head: encoder -> mean pooling -> linear layer -> softmax.

Both transformer families (frozen sentence embeddings with a linear head, and the fine-tuned
encoder) are saved as this one MLflow pyfunc model, so `urgency.predict.load_head_model` and
`predict_proba` load and call them exactly like a scikit-learn head: a DataFrame with a `text`
column in, one probability per label out, in the order of `metadata["labels"]`.

This module is copied into every logged model (`code_paths`), so it imports nothing else from
`urgency` but `urgency.cleaning`, which is copied beside it: the artifact loads wherever its pip
requirements are installed, and cleans its input text as the model was trained to.

Heads share the work in one process (batch, service, Dask worker alike, as every one loads and
calls this pyfunc): heads whose encoder files are equal hold one loaded encoder (`load_encoder`,
keyed by `encoder_key`), and the sentence vectors it computes are kept in a bounded LRU
(`VECTORS`), so when `urgency.predict` calls several heads on the same texts the encoder runs
once per distinct cleaned text.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

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

# "0" turns sharing off (each head its own encoder copy and passes, as before sharing): only for
# the bench's anchor (bench/bench_shared_encoder.py), read when a head loads and predicts.
SHARING_VARIABLE = "URGENCY_SHARE_ENCODERS"

# Sentence vectors the process keeps (least recently used dropped first). A 384-wide MiniLM
# vector is 1.5 kB, so 20,000 are about 30 MB: a whole `predict.chunk_size` chunk (5,000 texts)
# for four distinct encoders, so the second and third head of a chunk always find the first's.
VECTOR_MEMO_SIZE = 20_000

# How the frozen encoder runs (head.json `runtime`; params `training.<family>.runtime`):
# fp32 as saved; bf16: weights and activations in bfloat16, the pooling in fp32 (`mean_pool`); or
# int8: the attention's linear layers dynamically quantized, per output channel (`runtime_model`).
# bench/bench_encoder_runtime.py measured them (README "Encoder runtime"): quantizing every linear
# layer, or ONNX Runtime int8, is faster but moves the vectors (cosine 0.976 / 0.992) and the
# label-free sentiment head's hand-labelled accuracy; the attention alone keeps them, for a small
# gain. bf16 keeps them too and, on a CPU with bfloat16 matrix units (AMX, AVX512-BF16), is the
# fast one; elsewhere it is emulated and slower than fp32.
# openvino: the encoder converted by OpenVINO and run on its CPU plugin in the precision it picks
# for the CPU (bf16 where there are bfloat16 matrix units, else fp32; `OpenVinoEncoder`), which
# keeps every signal decision of fp32 and ran 1.44x torch bf16 here; an optional dependency.
RUNTIMES = ("fp32", "bf16", "int8", "openvino")


def pick_device() -> Any:
    """A GPU when there is one, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Average of the token vectors, padding excluded (how the MiniLM sentence model pools), in
    fp32 whatever the encoder's precision: a bf16 sum over a hundred tokens loses digits."""
    hidden = hidden.float()
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
    # Only a model in training mode is switched (and back): `eval()` walks every submodule, a
    # few milliseconds of each one-ticket call of the service, whose encoders are always in eval.
    was_training = encoder.training
    if was_training:
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
    if was_training:
        encoder.train()
    return vectors


def text_digest(text: str) -> str:
    """The SHA-256 (hex) of a text as encoded: what its sentence vector is kept under."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def encoder_key(folder: Path) -> str:
    """SHA-256 over every file of a transformers model folder (weights, config, tokenizer) with
    its relative path: equal for equal content, wherever the folder lies."""
    folder = Path(folder)
    combined = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        combined.update(f"{path.relative_to(folder).as_posix()}\0{digest.hexdigest()}\n".encode())
    return combined.hexdigest()


def vector_scope(key: str, max_length: int, normalize: bool, *, runtime: str) -> str:
    """What a sentence vector depends on besides its text: the encoder, the embed settings and the
    runtime (an int8 vector is close to fp32's, not equal). fp32 scopes read as before runtimes."""
    scope = f"{key}-{max_length}-{'normalised' if normalize else 'raw'}"
    if runtime == "openvino":  # its precision is the CPU's: vectors of two precisions never mix
        return f"{scope}-openvino-{openvino_precision()}"
    return scope if runtime == "fp32" else f"{scope}-{runtime}"


# fp32 encoder -> its copy per runtime, made once per encoder (training's heads share one encoder).
_RUNTIME_COPIES: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_RUNTIME_LOCK = threading.Lock()


def runtime_model(model: Any, runtime: str) -> Any:
    """`model` (a transformers encoder in fp32) as `runtime` runs it: itself for fp32; for bf16 a
    bfloat16 copy on the same device; for int8 a copy on the CPU whose attention linear layers are
    int8 (torch dynamic quantization, weights per output channel; activations quantized per
    batch). The feed-forward layers stay fp32: quantized too they move the vectors (cosine 0.976
    to fp32) enough to change answers. For openvino, the encoder converted (`OpenVinoEncoder`)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"encoder runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if runtime == "fp32":
        return model
    import copy
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with _RUNTIME_LOCK:
        copies = _RUNTIME_COPIES.setdefault(model, {})
        if runtime not in copies:
            if runtime == "bf16":
                copies[runtime] = copy.deepcopy(model).to(dtype=torch.bfloat16).eval()
            elif runtime == "openvino":
                copies[runtime] = OpenVinoEncoder(model)
            else:
                attention = {
                    name: per_channel_dynamic_qconfig
                    for name, module in model.named_modules()
                    if isinstance(module, torch.nn.Linear) and ".attention." in f".{name}."
                }
                with warnings.catch_warnings():
                    # torch.ao's notice that quantization moves to torchao; this API is still there.
                    warnings.simplefilter("ignore")
                    copies[runtime] = quantize_dynamic(model.to("cpu"), attention, inplace=False).eval()
        return copies[runtime]


def hidden_states_module(model: Any) -> Any:
    """`model` as a torch module of `(input_ids, attention_mask)` -> last hidden state: the form
    an exporter traces (OpenVINO here, ONNX in bench/bench_encoder_runtime.py)."""
    import torch

    class HiddenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return HiddenStates().eval()


def _openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise ImportError(
            "encoder runtime 'openvino' needs the openvino package: pip install 'urgency[openvino]'"
        ) from None
    return openvino


@functools.cache  # a new `Core` costs about 4 ms, and every predict call reads the scope
def openvino_precision() -> str:
    """The precision OpenVINO's CPU plugin runs in on this machine (`bf16` or `f32`)."""
    return str(_openvino().Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name())


class OpenVinoEncoder:
    """A transformers encoder converted by OpenVINO (`openvino.convert_model`), called like the
    torch module by `embed`: `(input_ids, attention_mask)` -> `.last_hidden_state`.

    It runs as OpenVINO's throughput mode does: one stream of one thread per torch thread, each
    batch split between them (one stream of two threads was no faster than torch bf16). A model
    compiled and run in one process hangs in a process forked from it, and freeing it there aborts
    the process (`predict --jobs` and the local Dask cluster fork their workers), so each process
    compiles its own on first use and leaves a parent's alone."""

    def __init__(self, model: Any) -> None:
        import torch

        ov = _openvino()
        example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
        with torch.inference_mode():
            self.converted = ov.convert_model(hidden_states_module(model), example_input=example)
        self.config = model.config
        self.training = False
        self._lock = threading.Lock()
        self._compiled: tuple[int, list[Any]] | None = None  # (process id, infer requests)
        # A parent's compiled model, in a forked child: freeing it there aborts the process (its
        # threads are not there to join), so it is kept, unused, for the child's life.
        self._inherited: list[Any] = []

    def parameters(self) -> Any:
        import torch

        return iter([torch.zeros(0)])  # `embed` reads the device from here: the CPU

    def eval(self) -> OpenVinoEncoder:
        return self

    def _requests(self) -> list[Any]:
        if self._compiled is None or self._compiled[0] != os.getpid():
            import torch

            if self._compiled is not None:
                self._inherited.append(self._compiled)

            streams = max(1, torch.get_num_threads())
            settings = {
                "PERFORMANCE_HINT": "THROUGHPUT",
                "NUM_STREAMS": streams,
                "INFERENCE_NUM_THREADS": streams,
            }
            compiled = _openvino().Core().compile_model(self.converted, "CPU", settings)
            self._compiled = (os.getpid(), [compiled.create_infer_request() for _ in range(streams)])
        return self._compiled[1]

    def __call__(self, input_ids: Any, attention_mask: Any) -> Any:
        import torch

        with self._lock:
            requests = self._requests()
            parts = np.array_split(np.arange(len(input_ids)), len(requests))
            busy = [(request, rows) for request, rows in zip(requests, parts, strict=True) if len(rows)]
            for request, rows in busy:
                request.start_async({0: input_ids[rows].numpy(), 1: attention_mask[rows].numpy()})
            hidden = []
            for request, _ in busy:
                request.wait()
                hidden.append(torch.from_numpy(request.get_output_tensor(0).data.copy()))
        return SimpleNamespace(last_hidden_state=torch.cat(hidden))


class VectorStore(Protocol):
    """Sentence vectors by (scope, text digest): the process's memo, or training's disk cache."""

    def get_many(self, scope: str, digests: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, scope: str, digests: Sequence[str], vectors: np.ndarray) -> None: ...


class VectorMemo:
    """A thread-safe LRU of at most `capacity` sentence vectors, by (scope, text digest)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, scope: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
        found = {}
        with self._lock:
            for digest in digests:
                vector = self._items.get((scope, digest))
                if vector is not None:
                    self._items.move_to_end((scope, digest))
                    found[digest] = vector
        return found

    def put_many(self, scope: str, digests: Sequence[str], vectors: np.ndarray) -> None:
        with self._lock:
            for digest, vector in zip(digests, vectors, strict=True):
                # A copy: a row view would keep its whole batch alive after the others are dropped.
                self._items[(scope, digest)] = np.array(vector, dtype=np.float32)
                self._items.move_to_end((scope, digest))
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


VECTORS = VectorMemo(VECTOR_MEMO_SIZE)


def embed_once(
    encoder: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int,
    normalize: bool,
    store: VectorStore,
    scope: str,
    device: Any = None,
) -> np.ndarray:
    """`embed` through `store`: each distinct text is encoded once, and only when `store` has no
    vector for it under `scope` (which must name the encoder and these settings: `vector_scope`)."""
    texts = [str(text) for text in texts]
    digests = [text_digest(text) for text in texts]
    distinct = dict(zip(digests, texts, strict=True))
    known = store.get_many(scope, list(distinct))
    missing = [digest for digest in distinct if digest not in known]
    if missing:
        computed = embed(
            encoder,
            tokenizer,
            [distinct[digest] for digest in missing],
            max_length=max_length,
            batch_size=batch_size,
            normalize=normalize,
            device=device,
        )
        store.put_many(scope, missing, computed)
        known.update(zip(missing, computed, strict=True))
    if not texts:
        return np.zeros((0, encoder.config.hidden_size), dtype=np.float32)
    return np.vstack([known[digest] for digest in digests]).astype(np.float32, copy=False)


@dataclass(eq=False)
class Encoder:
    """A loaded encoder and its tokenizer, `key` its `encoder_key`."""

    key: str
    model: Any
    tokenizer: Any
    device: Any
    runtime: str = "fp32"


# The process's loaded encoders by content; weak, so an encoder goes when its last head does
# (a service reload frees the old models' encoder).
_ENCODERS: weakref.WeakValueDictionary[str, Encoder] = weakref.WeakValueDictionary()
_ENCODERS_LOCK = threading.Lock()


def sharing() -> bool:
    return os.environ.get(SHARING_VARIABLE, "1") != "0"


def load_encoder(folder: Path, runtime: str = "fp32") -> Encoder:
    """The process's one copy of the encoder in `folder` run as `runtime` (`runtime_model`): read
    on first use, then shared by every head whose encoder files and runtime are equal (threads
    loading at once read it once)."""
    key = encoder_key(folder)
    if not sharing():
        return _read_encoder(folder, key, runtime)
    with _ENCODERS_LOCK:
        found = _ENCODERS.get(f"{key}-{runtime}")
        if found is None:
            found = _read_encoder(folder, key, runtime)
            _ENCODERS[f"{key}-{runtime}"] = found
        return found


def _read_encoder(folder: Path, key: str, runtime: str) -> Encoder:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(folder).eval()
    # int8 and openvino run on the CPU (torch's dynamic quantization is CPU-only); fp32 and bf16 on the
    # fastest device there is.
    model = runtime_model(model if runtime in ("int8", "openvino") else model.to(pick_device()), runtime)
    device = next(model.parameters()).device
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return Encoder(key=key, model=model, tokenizer=tokenizer, device=device, runtime=runtime)


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
    runtime: str,
    cleaning: dict[str, bool] | None = None,
) -> Path:
    """Save the linear layer and the settings inference needs as `folder/head.json`; `runtime`:
    the encoder runtime the head was fitted with, which it predicts with (`runtime_model`);
    `cleaning`: the text cleaning the model applies before encoding (None: none, as models saved
    before it)."""
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
                "runtime": runtime,
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
        head = json.loads(Path(context.artifacts["head"]).read_text())
        self.labels = head["labels"]
        self.weight = np.asarray(head["weight"], dtype=np.float32)
        self.bias = np.asarray(head["bias"], dtype=np.float32)
        self.temperature = float(head["temperature"])
        self.max_length = int(head["max_length"])
        self.batch_size = int(head["batch_size"])
        self.normalize = bool(head["normalize"])
        self.cleaning = Cleaning.from_dict(head.get("cleaning"))
        # Models saved before runtimes ran fp32.
        self.shared = load_encoder(Path(context.artifacts["encoder"]), head.get("runtime", "fp32"))
        self.encoder = self.shared.model
        self.tokenizer = self.shared.tokenizer
        self.device = self.shared.device
        self.load_sparse(context)

    def load_sparse(self, context: Any) -> None:
        """The hybrid family's TF-IDF part (artifact `sparse`); None for the other families."""
        folder = context.artifacts.get("sparse")
        self.sparse = SparsePart.load(folder) if folder else None

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        # The cleaned text is what is encoded, so it is what the memo keys on.
        texts = clean_texts(model_input["text"], self.cleaning).tolist()
        settings = {"max_length": self.max_length, "batch_size": self.batch_size, "normalize": self.normalize}
        if sharing():
            runtime = self.shared.runtime
            scope = vector_scope(self.shared.key, self.max_length, self.normalize, runtime=runtime)
            vectors = embed_once(
                self.encoder,
                self.tokenizer,
                texts,
                **settings,
                store=VECTORS,
                scope=scope,
                device=self.device,
            )
        else:
            vectors = embed(self.encoder, self.tokenizer, texts, **settings, device=self.device)
        logits = vectors @ self.weight.T + self.bias
        if self.sparse is not None:
            logits = logits + self.sparse.logits(texts)
        return softmax(logits / self.temperature)
