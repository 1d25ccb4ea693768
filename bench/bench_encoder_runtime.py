"""The MiniLM encoder's runtime: torch fp32 (the anchor), torch bf16 and int8, ONNX Runtime fp32 and
int8, OpenVINO (the product's `runtime: openvino`).

N support tickets at ticket length (subject + body, cleaned and cut as the source's training rows,
`max_length` and `batch_size` of `training.label_free`, which the signals model and the label-free
heads use; the embedding and hybrid families' defaults are the same) through the same
`transformer_model.embed` (length-sorted batches, each padded to its longest row), 2 threads.
Each runtime runs in a fresh process (its peak RSS is its own), the tickets `--repeats` times
(median tickets/s), then the first 100 one at a time (median ms: the service's one-ticket call).
Quality against fp32, in the same run:

- cosine between each ticket's sentence vector and fp32's (mean, min);
- the label-free sentiment head (params' `heads.sentiment.descriptions`, its description vectors
  computed with the same runtime, `label_free.description_weights`) on the hand-labelled support
  set: accuracy negative-vs-not (`hand_labelled.sentiment_report`);
- the text signals (params' `signals`, thresholds from the rules file's `text_signals`) on the
  same 400 tickets: (ticket, signal) decisions that differ from fp32's, and the signals' F1
  against the set's hand labels (all signals' decisions pooled).

torch int8 is dynamic quantization (weights per output channel): `torch-int8` is the product's
(`transformer_model.runtime_model`, attention layers only), `torch-int8-all` every linear layer.
ONNX: the encoder exported with the legacy exporter (dynamic batch and sequence axes), int8 by
`onnxruntime.quantization.quantize_dynamic` (per channel; per tensor it is further off); the
session is wrapped so `embed` drives it like the torch module (so its process imports torch too,
as the product's would: the tokenizer pads to torch tensors). The ONNX rows need `onnxruntime` and
`onnx`, which the project does not depend on (`pip install onnxruntime onnx -c constraints.txt`;
measured with 1.32.0 and 1.23.2). `openvino`: the product's runtime
(`transformer_model.OpenVinoEncoder`: the torch module converted by `openvino.convert_model`, run
on two streams of one thread, each batch split between them, in the precision OpenVINO picks for
the CPU: bf16 here); it needs the optional `openvino` package (in the dev extra; measured with
2026.4.1). Run from the project folder:

    HF_HUB_OFFLINE=1 python bench/bench_encoder_runtime.py [--rows 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import yaml

from urgency.cleaning import Cleaning
from urgency.config import OTHER_SIGNAL, Params, load_params
from urgency.hand_labelled import SUPPORT_SENTIMENT_FILE, configured_support_sentiment, sentiment_report
from urgency.label_free import description_weights
from urgency.predict import signal_confidences
from urgency.text import ticket_text
from urgency.transformer import checkpoint_folder
from urgency.transformer_model import embed, hidden_states_module, runtime_model, softmax

# torch-int8: the product's int8 (`transformer_model.runtime_model`: attention layers only);
# torch-int8-all: every linear layer (per output channel), the usual recipe.
RUNTIMES = (
    "torch-fp32",
    "torch-bf16",
    "torch-int8",
    "torch-int8-all",
    "onnx-fp32",
    "onnx-int8",
    "openvino",
)
THREADS = 2
SOURCE = "support_tickets_synthetic"


def ticket_texts(params: Params, rows: int) -> list[str]:
    source = next(s for s in params.data.sources if s.name == SOURCE)
    tickets = pd.read_csv(source.path).sample(n=rows, random_state=0)
    cleaning = Cleaning(**source.cleaning.model_dump())
    return ticket_text(tickets["subject"], tickets["body"], params.data.max_text_chars, cleaning).tolist()


class OnnxEncoder:
    """An ONNX Runtime session that `transformer_model.embed` drives like the torch encoder."""

    def __init__(self, path: Path, hidden_size: int) -> None:
        import onnxruntime as ort
        import torch

        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.config = SimpleNamespace(hidden_size=hidden_size)
        self.training = False
        self._device = torch.zeros(0)

    def parameters(self) -> Any:
        return iter([self._device])

    def eval(self) -> OnnxEncoder:
        return self

    def train(self, mode: bool = True) -> OnnxEncoder:
        return self

    def __call__(self, input_ids: Any, attention_mask: Any) -> Any:
        import torch

        feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        return SimpleNamespace(last_hidden_state=torch.from_numpy(hidden))


def export_onnx(folder: Path, target: Path) -> dict[str, Path]:
    """The encoder as ONNX fp32 and int8 files in `target`."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    fp32, int8 = target / "encoder.onnx", target / "encoder-int8.onnx"
    example = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        hidden_states_module(model),
        example,
        str(fp32),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
        opset_version=17,
        dynamo=False,
    )
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    return {"onnx-fp32": fp32, "onnx-int8": int8}


def load_runtime(runtime: str, folder: Path, onnx_dir: Path) -> tuple[Any, Any, float]:
    """(encoder, tokenizer, model MB) for `runtime`."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if runtime.startswith("onnx"):
        path = onnx_dir / ("encoder.onnx" if runtime == "onnx-fp32" else "encoder-int8.onnx")
        hidden = AutoModel.from_pretrained(folder).config.hidden_size
        return OnnxEncoder(path, hidden), tokenizer, path.stat().st_size / 1e6
    model = AutoModel.from_pretrained(folder).eval()
    if runtime == "openvino":
        encoder = runtime_model(model, "openvino")
        constants = [op for op in encoder.converted.get_ops() if op.get_type_name() == "Constant"]
        return encoder, tokenizer, sum(np.asarray(op.get_vector()).nbytes for op in constants) / 1e6
    if runtime in ("torch-bf16", "torch-int8"):
        model = runtime_model(model, runtime.removeprefix("torch-"))
    elif runtime == "torch-int8-all":
        linear = {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
        model = torch.ao.quantization.quantize_dynamic(model, linear)
    with tempfile.TemporaryFile() as file:
        torch.save(model.state_dict(), file)
        size = file.tell() / 1e6
    return model, tokenizer, size


def child(args: argparse.Namespace) -> None:
    """One runtime: time the tickets, embed the checks' texts, write vectors and figures."""
    import torch

    torch.set_num_threads(THREADS)
    params = load_params(args.params)
    lf = params.training.label_free
    batch_size = args.batch_size or lf.batch_size
    settings = {"max_length": lf.max_length, "batch_size": batch_size, "normalize": True}
    folder = checkpoint_folder(lf.checkpoint)
    encoder, tokenizer, size = load_runtime(args.child, folder, args.onnx_dir)
    texts = ticket_texts(params, args.rows)
    embed(encoder, tokenizer, texts[:64], **settings)  # warm-up: first-call allocations
    rates = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        vectors = embed(encoder, tokenizer, texts, **settings)
        rates.append(len(texts) / (time.perf_counter() - started))
    # One ticket a call (the service at one connection): the first 100 tickets, each alone.
    alone = []
    for text in texts[:100]:
        started = time.perf_counter()
        embed(encoder, tokenizer, [text], **settings)
        alone.append(time.perf_counter() - started)
    checked = configured_support_sentiment(params, args.params.parent / SUPPORT_SENTIMENT_FILE)
    support = embed(encoder, tokenizer, checked.labels["text"].tolist(), **settings)
    sentiment = params.heads.sentiment.descriptions
    sentiment_weight = description_weights(
        sentiment, list(sentiment), encoder, tokenizer, max_length=lf.max_length, batch_size=lf.batch_size
    )
    signals = {**params.signals.descriptions, OTHER_SIGNAL: params.signals.other}
    signals_weight = description_weights(
        signals, list(signals), encoder, tokenizer, max_length=lf.max_length, batch_size=lf.batch_size
    )
    np.savez(
        args.out / f"{args.child}.npz",
        tickets=vectors,
        support=support,
        sentiment_weight=sentiment_weight,
        signals_weight=signals_weight,
    )
    figures = {
        "tickets_per_s": statistics.median(rates),
        "rates": rates,
        "one_ticket_ms": statistics.median(alone) * 1000,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "model_mb": size,
    }
    (args.out / f"{args.child}.json").write_text(json.dumps(figures))


def quality(params: Params, params_path: Path, out: Path, anchor: dict, runtime: str) -> dict[str, float]:
    found = np.load(out / f"{runtime}.npz")
    cosine = (found["tickets"] * anchor["tickets"]).sum(axis=1)
    checked = configured_support_sentiment(params, params_path.parent / SUPPORT_SENTIMENT_FILE)
    labels = list(params.heads.sentiment.descriptions)
    temperature = params.training.label_free.default_temperature
    logits = found["support"] @ found["sentiment_weight"].T
    proba = pd.DataFrame(softmax(logits / temperature), columns=labels)
    accuracy = sentiment_report(checked.labels["sentiment"], proba)["negative_vs_not_accuracy"]
    return {"cos_mean": float(cosine.mean()), "cos_min": float(cosine.min()), "accuracy": accuracy}


def fired(params: Params, rules: Path, vectors: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Tickets x signals: the signal counts (its confidence at or over the rules' threshold)."""
    labels = [*params.signals.descriptions, OTHER_SIGNAL]
    thresholds = yaml.safe_load(rules.read_text())["text_signals"]
    confidences = signal_confidences(softmax(vectors @ weight.T / params.signals.temperature), labels)
    return confidences >= np.array([thresholds[name] for name in params.signals.descriptions])


def signal_f1(truth: np.ndarray, decisions: np.ndarray) -> float:
    """F1 of every (ticket, signal) decision pooled, against the hand labels."""
    tp = int((truth & decisions).sum())
    return 2 * tp / max(int(truth.sum()) + int(decisions.sum()), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, help="default: the params' training.label_free.batch_size")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--child", choices=RUNTIMES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--onnx-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    params = load_params(args.params)
    rules = args.params.parent / params.scoring.rules
    runtimes = ["torch-fp32", *(r for r in args.runtimes if r != "torch-fp32")]
    with tempfile.TemporaryDirectory() as work:
        out = Path(work)
        onnx_dir = out / "onnx"
        onnx_dir.mkdir()
        if any(r.startswith("onnx") for r in runtimes):
            export_onnx(checkpoint_folder(params.training.label_free.checkpoint), onnx_dir)
        for runtime in runtimes:
            command = [sys.executable, __file__, "--params", str(args.params), "--rows", str(args.rows)]
            command += ["--repeats", str(args.repeats), "--child", runtime, "--out", work]
            command += ["--batch-size", str(args.batch_size)] if args.batch_size else []
            subprocess.run([*command, "--onnx-dir", str(onnx_dir)], check=True)
        anchor = dict(np.load(out / "torch-fp32.npz"))
        anchor_fired = fired(params, rules, anchor["support"], anchor["signals_weight"])
        base = json.loads((out / "torch-fp32.json").read_text())
        checked = configured_support_sentiment(params, args.params.parent / SUPPORT_SENTIMENT_FILE)
        truth = checked.labels[list(params.signals.descriptions)].astype(int).to_numpy() == 1
        print(
            f"{args.rows} support tickets, max_length {params.training.label_free.max_length}, "
            f"{THREADS} threads, median of {args.repeats}; quality against torch-fp32 "
            f"(hand-labelled: {len(anchor['support'])} support tickets)"
        )
        header = (
            "| runtime | tickets/s | vs fp32 | one ticket alone ms | peak RSS MB | model MB | cosine mean "
            "| cosine min | sentiment acc. (fp32) | signal decisions changed | signal F1 (fp32) |"
        )
        print(header)
        print("|" + "---|" * header.count(" | ") + "---|")
        fp32_quality = quality(params, args.params, out, anchor, "torch-fp32")
        for runtime in runtimes:
            figures = json.loads((out / f"{runtime}.json").read_text())
            measured = quality(params, args.params, out, anchor, runtime)
            found = np.load(out / f"{runtime}.npz")
            decisions = fired(params, rules, found["support"], found["signals_weight"])
            changed = int((decisions != anchor_fired).sum())
            f1 = signal_f1(truth, decisions)
            print(
                f"| {runtime} | {figures['tickets_per_s']:.0f} | "
                f"{figures['tickets_per_s'] / base['tickets_per_s']:.2f}x | {figures['one_ticket_ms']:.1f} | "
                f"{figures['peak_rss_mb']:.0f} | "
                f"{figures['model_mb']:.0f} | {measured['cos_mean']:.4f} | {measured['cos_min']:.4f} | "
                f"{measured['accuracy']:.3f} ({fp32_quality['accuracy']:.3f}) | "
                f"{changed} of {anchor_fired.size} ({int(anchor_fired.sum())} fire in fp32) | "
                f"{f1:.3f} ({signal_f1(truth, anchor_fired):.3f}) |"
            )


if __name__ == "__main__":
    main()
