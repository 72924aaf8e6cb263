"""A supervised checkpoint as an exportable module: input -> class probabilities.

Image classifiers take float32 images (N, C, H, W) with pixels in [0, 1], at the size
and channels the model was trained on (`data.image_size`, `data.channels`): the
training set's mean/std standardization and the rows-as-sequence reshaping of
`data.sequence` are inside the graph. Text classifiers take token ids (N, T) of
equal-length documents (the vocabulary of the checkpoint's run; no padding, so no
lengths) and language models take token ids (N, T) and give next-token probabilities
(N, T, V), from a fresh LSTM state. A transformer takes up to its context of tokens
(`data.max_tokens`, a language model's `data.seq_len`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raydl.export import Exportable
from raydl.sl.data import DOCUMENT_SOURCES
from raydl.sl.evaluate import load_checkpoint
from raydl.sl.experiment import TRANSFORMER_ARCHS
from raydl.sl.models import LSTMClassifier, LSTMLanguageModel


class Probabilities(nn.Module):
    """Softmax over the last axis of `net`'s logits, after the input preparation that
    training applied per example (standardization, rows as a sequence)."""

    def __init__(self, net: nn.Module, mean: list[float] | None = None,
                 std: list[float] | None = None, sequence: bool = False) -> None:
        super().__init__()
        self.net, self.sequence = net, sequence
        self.standardize = mean is not None and std is not None
        shape = (1, len(mean or [0.0]), 1, 1)
        self.register_buffer("mean", torch.tensor(mean or [0.0]).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std or [1.0]).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardize:
            x = (x - self.mean) / self.std
        if self.sequence:  # (N, C, H, W) -> (N, H, C*W): one time step per image row
            x = x.permute(0, 2, 1, 3).reshape(x.shape[0], x.shape[2], -1)
        out = self.net(x)
        logits = out[0] if isinstance(out, tuple) else out  # a language model's (logits, state)
        return torch.softmax(logits, dim=-1)


def exportable(directory: Path, cfg: Any) -> Exportable:
    """The classifier or language model of an epoch checkpoint (registry entry point)."""
    loaded = load_checkpoint(directory)
    data = cfg.data
    if loaded.vocab is not None or data.source in DOCUMENT_SOURCES:
        vocab = len(loaded.vocab) if loaded.vocab is not None else _saved(directory)["vocab_size"]
        # ids from 1: 0 is padding; a sequence long enough for every TextCNN kernel, and
        # twice it (the export's check) within a transformer's context
        length = min(8, cfg.text_context // 2) if cfg.model.arch in TRANSFORMER_ARCHS else 8
        tokens = torch.arange(3 * length).remainder(max(vocab - 1, 1)).add(1).view(3, length)
        per_token = loaded.vocab is not None  # a language model: (N, T, V)
        return Exportable(Probabilities(loaded.net).eval(), (tokens,), ("tokens",),
                          ("probabilities",), dynamic_axes=((0, 1),),
                          output_axes=((0, 1),) if per_token else None,
                          what=f"{cfg.kind} over {vocab} tokens",
                          dynamo=not isinstance(loaded.net, (LSTMClassifier, LSTMLanguageModel)))
    saved = _saved(directory)
    mean, std = saved["mean"], saved["std"]
    channels = data.channels or len(mean)
    if channels == 3 and len(mean) == 1:  # grey data shown as RGB, as the training transform
        mean, std = mean * 3, std * 3
    shape = tuple(saved["input_shape"])
    if data.sequence:  # the model saw (H, C*W) rows; the graph takes the image
        shape = (channels, shape[0], shape[1] // channels)
    images = torch.rand((3, *shape), generator=torch.Generator().manual_seed(0))
    module = Probabilities(loaded.net, mean if data.normalize else None,
                           std if data.normalize else None, data.sequence).eval()
    return Exportable(module, (images,), ("image",), ("probabilities",),
                      what=f"classifier of {saved['num_classes']} classes")


def _saved(directory: Path) -> dict[str, Any]:
    """data.json of a classifier checkpoint: input shape, classes, pixel statistics."""
    return json.loads((directory / "data.json").read_text())
