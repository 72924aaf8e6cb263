"""The experiment file of the supervised kinds, `classify` and `language_model`: the
`train:` section and the checks between sections (an arch that fits the kind and data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from raydl.config import param, section
from raydl.errors import ConfigError
from raydl.nn import Nonfinite, Optimizer
from raydl.sl.data import DOCUMENT_SOURCES, DataConfig
from raydl.sl.models import ModelConfig
from raydl.train.experiment import FitExperiment


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
