"""Models of the supervised kinds: a small CNN, ResNet transfer learning, LSTMs, TextCNN."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from raydl.sl.experiment import ModelConfig
from raydl.errors import ConfigError

class SmallCNN(nn.Module):
    """An MNIST-style CNN: [conv3x3-ReLU] x k, max-pool, dropout, FC-ReLU, dropout, FC."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, cfg: ModelConfig) -> None:
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for width in cfg.channels:
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
            c = width
        self.features = nn.Sequential(*layers, nn.MaxPool2d(2), nn.Dropout(cfg.dropout))
        flat = c * (h // 2) * (w // 2)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def resnet(arch: str, num_classes: int, cfg: ModelConfig) -> nn.Module:
    """A torchvision ResNet whose final layer is replaced by a fresh `num_classes` head."""
    import torchvision

    weights = None
    if cfg.pretrained:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        if cfg.checkpoint_dir:
            torch.hub.set_dir(str(Path(cfg.checkpoint_dir).expanduser()))
    net = torchvision.models.get_model(arch, weights=weights)
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return net


def check_pretrained(arch: str, cfg: ModelConfig) -> None:
    """Fail before training, in one line, when ImageNet weights are neither cached nor
    downloadable."""
    if not cfg.pretrained or not arch.startswith("resnet"):
        return
    import torchvision

    url = torchvision.models.get_model_weights(arch).DEFAULT.url
    hub = Path(cfg.checkpoint_dir).expanduser() if cfg.checkpoint_dir else Path(torch.hub.get_dir())
    cached = hub / "checkpoints" / url.rsplit("/", 1)[-1]
    if cached.is_file():
        return
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # torch.hub's "Downloading: ..." line
            torch.hub.load_state_dict_from_url(url, model_dir=str(hub / "checkpoints"), progress=False)
    except Exception as exc:  # offline: URLError, socket errors, HTTP errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"model.pretrained: {arch} ImageNet weights are not cached at {cached} and cannot "
            f"be downloaded ({reason}); put the file there or set model.pretrained: false"
        ) from None


def set_backbone_trainable(net: nn.Module, trainable: bool) -> None:
    """Freeze (or unfreeze) everything but the classification head `fc`."""
    for name, p in net.named_parameters():
        if not name.startswith("fc."):
            p.requires_grad_(trainable)


class LSTMClassifier(nn.Module):
    """Sequence classifier: (token embedding or per-step features) -> LSTM -> last state
    -> linear. Variable-length batches are packed, so padding never reaches the LSTM."""

    def __init__(
        self, input_size: int, num_classes: int, cfg: ModelConfig, vocab_size: int = 0
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embedding, padding_idx=0) if vocab_size else None
        self.lstm = nn.LSTM(
            cfg.embedding if vocab_size else input_size, cfg.hidden, cfg.layers,
            batch_first=True, bidirectional=cfg.bidirectional,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden * (2 if cfg.bidirectional else 1), num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x)
        if lengths is not None:
            x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(x)
        # h: (layers * directions, B, H); the last layer's final states, both directions
        last = torch.cat([h[-2], h[-1]], dim=1) if self.lstm.bidirectional else h[-1]
        return self.head(self.dropout(last))


class TextCNN(nn.Module):
    """Kim (2014): embeddings, 1-D convolutions of several widths, max over time."""

    def __init__(self, vocab_size: int, num_classes: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embedding, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(cfg.embedding, cfg.hidden, k) for k in cfg.kernel_sizes)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden * len(cfg.kernel_sizes), num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embed(x).transpose(1, 2)  # (B, E, T)
        pad = max(self.convs[i].kernel_size[0] for i in range(len(self.convs)))
        if e.shape[2] < pad:
            e = nn.functional.pad(e, (0, pad - e.shape[2]))
        pooled = [torch.relu(conv(e)).amax(dim=2) for conv in self.convs]
        return self.head(self.dropout(torch.cat(pooled, dim=1)))


class LSTMLanguageModel(nn.Module):
    """Embedding -> LSTM -> linear over the vocabulary (optionally tied to the embedding,
    Press & Wolf 2017). The state is carried across truncated-BPTT windows."""

    def __init__(self, vocab_size: int, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.tie_weights and cfg.embedding != cfg.hidden:
            raise ConfigError(
                f"model.tie_weights: needs model.embedding == model.hidden, got "
                f"{cfg.embedding} and {cfg.hidden}"
            )
        self.embed = nn.Embedding(vocab_size, cfg.embedding)
        self.lstm = nn.LSTM(cfg.embedding, cfg.hidden, cfg.layers, batch_first=True,
                            dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.decoder = nn.Linear(cfg.hidden, vocab_size)
        if cfg.tie_weights:
            self.decoder.weight = self.embed.weight

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, state = self.lstm(self.dropout(self.embed(x)), state)
        return self.decoder(self.dropout(out)), state


def build_model(
    cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int, vocab_size: int = 0
) -> nn.Module:
    """The network for `cfg.arch` sized for the data."""
    if cfg.arch == "cnn":
        if len(input_shape) != 3:
            raise ConfigError(f"model.arch: cnn needs (C, H, W) images, got shape {input_shape}")
        return SmallCNN(input_shape, num_classes, cfg)
    if cfg.arch.startswith("resnet"):
        net = resnet(cfg.arch, num_classes, cfg)
        if cfg.freeze == "backbone":
            set_backbone_trainable(net, False)
        return net
    if cfg.arch == "lstm":
        return LSTMClassifier(input_shape[-1] if not vocab_size else 0, num_classes, cfg, vocab_size)
    if cfg.arch == "textcnn":
        return TextCNN(vocab_size, num_classes, cfg)
    return LSTMLanguageModel(vocab_size, cfg)
