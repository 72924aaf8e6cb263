"""The experiment file of the supervised kinds, `classify` and `language_model`: the
`data:`, `model:` and `train:` sections and the checks between sections (an arch that fits
the kind and data). Without torch: loading an experiment imports it alone (raydl.sl.data
and raydl.sl.models build what it describes; raydl.sl.check is its check step)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from raydl.config import Nonfinite, Optimizer, param, section
from raydl.errors import ConfigError
from raydl.train.experiment import FitExperiment

TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}
DOCUMENT_SOURCES = ("text_folder", "csv")
# raydl's own networks; any other `model.arch` names a torchvision classification model
# (checked against torchvision's list by the check step, raydl.sl.backbones).
IMAGE_ARCHS = ("cnn",)
TEXT_ARCHS = ("lstm", "textcnn", "transformer")
LM_ARCHS = ("lstm_lm", "transformer_lm")
TRANSFORMER_ARCHS = ("transformer", "transformer_lm")
OWN_ARCHS = IMAGE_ARCHS + TEXT_ARCHS + LM_ARCHS


def is_backbone(arch: str) -> bool:
    """Whether `arch` names a torchvision classification model rather than raydl's own."""
    return arch not in OWN_ARCHS


@dataclass
class DataConfig:
    """Where the examples come from and how they are split and transformed."""

    source: Literal[
        "digits", "mnist", "fashion_mnist", "cifar10", "folder", "text", "text_folder", "csv"
    ] = param(
        "digits", "dataset: images (digits (offline), mnist, fashion_mnist, cifar10, folder), "
        "a corpus for language models (text), labelled documents (text_folder, csv)"
    )
    data_dir: str = param("data", "where torchvision datasets / image folders / text live")
    download: bool = param(False, "download torchvision datasets into data_dir if absent")
    text_file: str | None = param(
        None, "source text: a corpus file, or a WikiText-style directory (none: pydoc_data.topics)"
    )
    val_fraction: float = param(0.15, "share held out for validation", ge=0, lt=1)
    test_fraction: float = param(0.15, "share held out for the final test (digits, folder, text)", ge=0, lt=1)
    image_size: int = param(0, "resize images to this square size (0: keep)", ge=0)
    channels: int = param(0, "convert images to 1 or 3 channels (0: keep)", ge=0, le=3)
    augment: bool = param(False, "random crops (4 px padding) and, for cifar10, flips")
    normalize: bool = param(True, "standardize pixels with the training set's mean/std")
    sequence: bool = param(False, "images as sequences of rows (sequential MNIST) for LSTMs")
    seq_len: int = param(128, "language models: tokens per truncated-BPTT window", ge=2)
    level: Literal["char", "word"] = param("char", "language models: character or word tokens")
    csv_file: str | None = param(None, "source csv: a file with `text` and `label` columns")
    max_tokens: int = param(400, "documents: keep the first N word tokens", ge=1)
    max_vocab: int = param(20_000, "documents: vocabulary size (most frequent words)", ge=2)
    seed: int = param(0, "seed of the train/validation/test split", ge=0)


@dataclass
class ModelConfig:
    """Which network, and its sizes."""

    arch: str = param(
        "cnn", "network: raydl's own cnn, lstm, textcnn, lstm_lm; or any torchvision "
        "classification model by name (transfer learning): resnet18, vgg16, densenet121, "
        "inception_v3, efficientnet_b0, mobilenet_v3_small, vit_b_16, ..."
    )
    channels: list[int] = param(default_factory=lambda: [32, 64], help="cnn: conv widths", ge=1)
    hidden: int = param(128, "cnn: fully connected width; lstm: hidden size; transformer: MLP width", ge=1)
    dropout: float = param(0.25, "dropout probability", ge=0, lt=1)
    layers: int = param(1, "lstm, transformer: stacked layers (blocks)", ge=1)
    bidirectional: bool = param(False, "lstm classifier: read both directions")
    embedding: int = param(64, "token embedding size (text models; transformer: d_model)", ge=1)
    tie_weights: bool = param(False, "lstm_lm, transformer_lm: share embedding and output weights")
    heads: int = param(4, "transformer: attention heads (model.embedding a multiple of it)", ge=1)
    positional: Literal["learned", "sinusoidal"] = param("learned", "transformer: positional encoding")
    pooling: Literal["mean", "cls"] = param("mean", "transformer classifier: mean of real tokens, or a CLS token")
    embeddings_file: str | None = param(
        None, "word-level text models: pretrained vectors (GloVe, word2vec text, fastText .vec)")
    freeze_embeddings: bool = param(False, "keep the pretrained vectors fixed (false: fine-tune them)")
    kernel_sizes: list[int] = param(default_factory=lambda: [3, 4, 5], help="textcnn kernels")
    pretrained: bool = param(False, "backbones: start from torchvision's ImageNet weights (torch's hub cache)")
    weights_file: str | None = param(
        None, "backbones: start from the ImageNet state dict in this local file (overrides pretrained)")
    freeze: Literal["none", "backbone"] = param("none", "backbones: train only the new head (and unfrozen_blocks)")
    unfrozen_blocks: int = param(0, "backbones with freeze: backbone: also train the last N blocks", ge=0)
    unfreeze_after: int = param(0, "backbones: unfreeze everything after N epochs (0: never)", ge=0)
    aux_logits: bool = param(True, "inception_v3, googlenet: train the auxiliary classifiers too (loss weights 0.4, 0.3)")
    checkpoint_dir: str | None = param(None, "backbones: torch hub cache dir for pretrained weights (none: torch's)")


@dataclass
class TrainConfig:
    """Optimization and stopping."""

    epochs: int = param(10, "training epochs", ge=1)
    batch_size: int = param(64, "examples (or BPTT rows) per batch per worker", ge=1)
    lr: float = param(1e-3, "learning rate", gt=0)
    optimizer: Optimizer = param("adam", "optimizer")
    momentum: float = param(0.9, "momentum (sgd, rmsprop)", ge=0, lt=1)
    weight_decay: float = param(0.0, "L2 weight decay", ge=0)
    schedule: Literal["constant", "cosine", "step"] = param("constant", "learning-rate schedule over epochs")
    step_size: int = param(10, "schedule step: epochs between decays", ge=1)
    step_gamma: float = param(0.1, "schedule step: decay factor", gt=0, le=1)
    grad_clip: float = param(0.0, "max global gradient norm (0: no clipping)", ge=0)
    warmup_steps: int = param(0, "linear learning-rate warm-up over the first N optimizer steps (0: off)", ge=0)
    max_minutes: float = param(0.0, "stop at the first epoch end past this much training time (0: no limit)", ge=0)
    amp: bool = param(False, "bfloat16 autocast (GPU workers only)")
    early_stop_patience: int = param(0, "stop after N epochs without improvement (0: off)", ge=0)
    early_stop_metric: str | None = param(None, "metric watched (none: val_accuracy, or val_loss for language models)")
    threads_per_worker: int = param(1, "torch threads per worker (0: torch's default)", ge=0)
    nonfinite: Nonfinite = param(
        "stop", "a NaN/inf gradient: stop the run with an error, or skip that batch's update "
        "(counted in nonfinite_skipped)")


@dataclass
class SupervisedExperiment(FitExperiment):
    """A classification or language-model experiment file."""

    kind: Literal["classify", "language_model"] = param("classify", "registry key")
    data: DataConfig = section(DataConfig, "dataset")
    model: ModelConfig = section(ModelConfig, "network")
    train: TrainConfig = section(TrainConfig, "optimization")

    def validate(self) -> None:
        lm = self.kind == "language_model"
        arch = self.model.arch
        if lm != (arch in LM_ARCHS):
            allowed = ", ".join(LM_ARCHS) if lm else ", ".join(IMAGE_ARCHS + TEXT_ARCHS) + ", or a torchvision model"
            raise ConfigError(f"model.arch: {arch!r} does not fit kind {self.kind}; allowed: {allowed}")
        if lm != (self.data.source == "text"):
            raise ConfigError(
                f"data.source: {self.data.source!r} does not fit kind {self.kind}; allowed: "
                + ("text" if lm else "digits, mnist, fashion_mnist, cifar10, folder, text_folder, csv")
            )
        documents = self.data.source in DOCUMENT_SOURCES
        if arch == "textcnn" and not documents:
            raise ConfigError(
                f"model.arch: textcnn reads documents, data.source is {self.data.source!r}; "
                "allowed sources: text_folder, csv"
            )
        if (arch in IMAGE_ARCHS or is_backbone(arch)) and documents:
            raise ConfigError(
                f"model.arch: {arch} needs images, data.source is {self.data.source!r}; "
                f"allowed for documents: {', '.join(TEXT_ARCHS)}"
            )
        if arch == "lstm" and not documents and not self.data.sequence:
            raise ConfigError("model.arch: lstm reads images as rows; set data.sequence: true")
        if (arch == "cnn" or is_backbone(arch)) and self.data.sequence:
            raise ConfigError(f"data.sequence: true gives row sequences; model.arch {arch} needs images (allowed: false)")
        self._validate_backbone()
        self._validate_text_models()

    def _validate_backbone(self) -> None:
        """Options of torchvision backbones, refused for raydl's own networks."""
        model, defaults = self.model, ModelConfig()
        if is_backbone(model.arch):
            if self.data.channels not in (0, 3):
                raise ConfigError(f"data.channels: {model.arch} takes 3-channel images (grey ones are "
                                  "repeated); allowed: 3 or 0")
            if model.unfrozen_blocks and model.freeze != "backbone":
                raise ConfigError("model.unfrozen_blocks: says which blocks stay trainable under "
                                  "model.freeze: backbone; set that, or unfrozen_blocks: 0")
            return
        for name in ("pretrained", "weights_file", "freeze", "unfrozen_blocks", "unfreeze_after", "checkpoint_dir"):
            if getattr(model, name) != getattr(defaults, name):
                raise ConfigError(f"model.{name}: applies to torchvision backbones only; model.arch "
                                  f"{model.arch} is raydl's own (allowed: leave it out)")

    def _validate_text_models(self) -> None:
        """Options of raydl's text networks: LSTM weight tying, transformer sizes, the
        documents a transformer classifier reads, pretrained word vectors."""
        model, arch = self.model, self.model.arch
        documents = self.data.source in DOCUMENT_SOURCES
        if arch == "lstm_lm" and model.tie_weights and model.embedding != model.hidden:
            raise ConfigError(
                f"model.tie_weights: needs model.embedding == model.hidden, got "
                f"{model.embedding} and {model.hidden}"
            )
        if arch in TRANSFORMER_ARCHS and model.embedding % model.heads:
            raise ConfigError(f"model.heads: model.embedding {model.embedding} is not a multiple of "
                              f"{model.heads} heads; allowed: a divisor of {model.embedding}")
        if arch == "transformer" and not documents:
            raise ConfigError(f"model.arch: transformer reads documents, data.source is "
                              f"{self.data.source!r}; allowed sources: text_folder, csv")
        words = documents and arch in TEXT_ARCHS or arch in LM_ARCHS and self.data.level == "word"
        if model.embeddings_file and not words:
            raise ConfigError(
                f"model.embeddings_file: word vectors need word tokens, model.arch {arch} reads "
                + ("characters" if arch in LM_ARCHS else "images")
                + "; allowed: documents (text_folder, csv) or a language model with data.level: word")
        if model.freeze_embeddings and not model.embeddings_file:
            raise ConfigError("model.freeze_embeddings: there are no pretrained vectors to keep; "
                              "set model.embeddings_file, or freeze_embeddings: false")
        if model.freeze_embeddings and model.tie_weights and arch in LM_ARCHS:
            raise ConfigError("model.freeze_embeddings: with model.tie_weights the output layer "
                              "would be frozen too; allowed: one of the two")

    @property
    def text_context(self) -> int:
        """The most tokens a transformer reads at once: a language model's window
        (data.seq_len), a document's first data.max_tokens words."""
        return self.data.seq_len if self.kind == "language_model" else self.data.max_tokens

    @property
    def time_budget_s(self) -> float:
        """The epoch loop's wall-time budget (`train.max_minutes`; 0: none)."""
        return self.train.max_minutes * 60.0

    @property
    def title(self) -> str:
        return f"{self.kind} {self.model.arch} on {self.data.source}"

    @property
    def watched(self) -> tuple[str, str]:
        """(metric, 'min' or 'max') for early stopping and the best checkpoint."""
        name = self.train.early_stop_metric or ("val_loss" if self.kind == "language_model" else "val_accuracy")
        return name, ("max" if "accuracy" in name else "min")
