"""Models of the supervised kinds: a small CNN, LSTMs, TextCNN, and any torchvision
classification model as a transfer-learning backbone (raydl.sl.backbones)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from raydl.errors import ConfigError
from raydl.sl.backbones import build_backbone
from raydl.sl.experiment import TRANSFORMER_ARCHS, ModelConfig, is_backbone


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
    cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int, vocab_size: int = 0,
    context: int = 0,
) -> nn.Module:
    """The network for `cfg.arch` sized for the data (`context`: the most tokens a
    transformer reads at once, SupervisedExperiment.text_context)."""
    if cfg.arch == "cnn":
        if len(input_shape) != 3:
            raise ConfigError(f"model.arch: cnn needs (C, H, W) images, got shape {input_shape}")
        return SmallCNN(input_shape, num_classes, cfg)
    if is_backbone(cfg.arch):
        return build_backbone(cfg, num_classes)
    if cfg.arch == "lstm":
        return LSTMClassifier(input_shape[-1] if not vocab_size else 0, num_classes, cfg, vocab_size)
    if cfg.arch == "textcnn":
        return TextCNN(vocab_size, num_classes, cfg)
    if cfg.arch in TRANSFORMER_ARCHS:
        from raydl.sl.transformer import build_transformer

        return build_transformer(cfg, num_classes, vocab_size, context)
    return LSTMLanguageModel(vocab_size, cfg)
