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

    arch: Literal["cnn", "resnet18", "resnet34", "resnet50", "lstm", "textcnn", "lstm_lm"] = param(
        "cnn", "network: cnn, resnet18/34/50 (transfer), lstm, textcnn, lstm_lm"
    )
    channels: list[int] = param(default_factory=lambda: [32, 64], help="cnn: conv widths", ge=1)
    hidden: int = param(128, "cnn: fully connected width; lstm: hidden size", ge=1)
    dropout: float = param(0.25, "dropout probability", ge=0, lt=1)
    layers: int = param(1, "lstm: stacked layers", ge=1)
    bidirectional: bool = param(False, "lstm classifier: read both directions")
    embedding: int = param(64, "token embedding size (text models)", ge=1)
    tie_weights: bool = param(False, "lstm_lm: share embedding and output weights")
    kernel_sizes: list[int] = param(default_factory=lambda: [3, 4, 5], help="textcnn kernels")
    pretrained: bool = param(False, "resnet: start from torchvision's ImageNet weights")
    freeze: Literal["none", "backbone"] = param("none", "resnet: train only the new head")
    unfreeze_after: int = param(0, "resnet: unfreeze the backbone after N epochs (0: never)", ge=0)
    checkpoint_dir: str | None = param(None, "resnet: torch hub cache dir for pretrained weights (none: torch's)")




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
        if lm != (self.model.arch == "lstm_lm"):
            allowed = "lstm_lm" if lm else "cnn, resnet18, resnet34, resnet50, lstm, textcnn"
            raise ConfigError(f"model.arch: {self.model.arch!r} does not fit kind {self.kind}; allowed: {allowed}")
        if lm != (self.data.source == "text"):
            raise ConfigError(
                f"data.source: {self.data.source!r} does not fit kind {self.kind}; allowed: "
                + ("text" if lm else "digits, mnist, fashion_mnist, cifar10, folder, text_folder, csv")
            )
        documents = self.data.source in DOCUMENT_SOURCES
        if self.model.arch == "textcnn" and not documents:
            raise ConfigError(
                f"model.arch: textcnn reads documents, data.source is {self.data.source!r}; "
                "allowed sources: text_folder, csv"
            )
        if self.model.arch in ("cnn", "resnet18", "resnet34", "resnet50") and documents:
            raise ConfigError(
                f"model.arch: {self.model.arch} needs images, data.source is {self.data.source!r}; "
                "allowed for documents: lstm, textcnn"
            )
        if self.model.arch == "lstm" and not documents and not self.data.sequence:
            raise ConfigError("model.arch: lstm reads images as rows; set data.sequence: true")
        if self.model.arch == "cnn" and self.data.sequence:
            raise ConfigError("data.sequence: true gives row sequences; model.arch cnn needs images (allowed: false)")
        if self.model.arch.startswith("resnet") and self.data.channels not in (0, 3):
            raise ConfigError("data.channels: ResNets take 3-channel images; allowed: 3 (or 0 for RGB sources)")
        if self.model.tie_weights and self.model.embedding != self.model.hidden:
            raise ConfigError(
                f"model.tie_weights: needs model.embedding == model.hidden, got "
                f"{self.model.embedding} and {self.model.hidden}"
            )

    @property
    def title(self) -> str:
        return f"{self.kind} {self.model.arch} on {self.data.source}"

    @property
    def watched(self) -> tuple[str, str]:
        """(metric, 'min' or 'max') for early stopping and the best checkpoint."""
        name = self.train.early_stop_metric or ("val_loss" if self.kind == "language_model" else "val_accuracy")
        return name, ("max" if "accuracy" in name else "min")
