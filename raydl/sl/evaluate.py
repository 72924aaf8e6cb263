"""Evaluation of supervised checkpoints: test accuracy of one model or an ensemble
(averaged probabilities), and text generation from a language model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from raydl import checkpoint as ckpt
from raydl.config import ConfigError, load_experiment, to_dict
from raydl.sl.data import (
    DOCUMENT_SOURCES,
    CharVocab,
    WordVocab,
    document_splits,
    image_splits,
    load_vocab,
    pad_batch,
)
from raydl.sl.models import build_model
from raydl.sl.trainer import MODEL_FILE, VOCAB_FILE


@dataclass
class Loaded:
    cfg: Any
    net: nn.Module
    vocab: CharVocab | WordVocab | None
    directory: Path


def load_checkpoint(directory: Path) -> Loaded:
    """The experiment and trained network stored in an epoch checkpoint."""
    cfg = load_experiment(directory / "config.yaml")
    vocab = None
    if cfg.kind == "language_model":
        vocab = load_vocab(directory / VOCAB_FILE)
        net = build_model(cfg.model, (), 0, vocab_size=len(vocab))
    else:
        data = json.loads((directory / "data.json").read_text())
        net = build_model(cfg.model, tuple(data["input_shape"]), data["num_classes"],
                          vocab_size=data.get("vocab_size", 0))
    state = ckpt.load_torch(directory / MODEL_FILE)
    try:
        net.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ckpt.CheckpointError(f"{directory / MODEL_FILE}: does not match its config: {first}") from None
    return Loaded(cfg, net.eval(), vocab, directory)


def _probabilities(net: nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    probs, labels = [], []
    with torch.no_grad():
        for batch in loader:
            *inputs, y = batch  # images, or padded documents and their lengths
            probs.append(torch.softmax(net(*inputs).float(), dim=1))
            labels.append(y)
    return torch.cat(probs), torch.cat(labels)


def evaluate_classifiers(models: list[Loaded], split: str = "test") -> dict[str, Any]:
    """Accuracy of each model and of their ensemble (mean of the class probabilities) on
    the held-out split of the first model's data; every model must use the same data."""
    base = to_dict(models[0].cfg.data)
    for m in models[1:]:
        if to_dict(m.cfg.data) != base:
            raise ConfigError(
                f"{m.directory}: its data section differs from {models[0].directory}'s; an "
                "ensemble is evaluated on one held-out set"
            )
    data = models[0].cfg.data
    if data.source in DOCUMENT_SOURCES:
        # the vocabulary is rebuilt from the same training split, so ids match the model's
        docs = document_splits(data)
        dataset = docs.test if split == "test" and docs.test is not None else docs.val
        loader = DataLoader(dataset, batch_size=256, collate_fn=pad_batch)
    else:
        splits = image_splits(data)
        dataset = splits.test if split == "test" and splits.test is not None else splits.val
        loader = DataLoader(dataset, batch_size=256)
    each, probs_sum, labels = [], None, None
    for m in models:
        probs, labels = _probabilities(m.net, loader)
        each.append(float((probs.argmax(1) == labels).float().mean()))
        probs_sum = probs if probs_sum is None else probs_sum + probs
    assert probs_sum is not None and labels is not None
    ensemble = float((probs_sum.argmax(1) == labels).float().mean())
    return {"split": split, "examples": len(labels), "accuracies": each, "ensemble_accuracy": ensemble}


def generate(loaded: Loaded, prompt: str, length: int, temperature: float = 0.8, seed: int = 0) -> str:
    """`length` characters sampled after `prompt` (temperature-scaled softmax)."""
    assert loaded.vocab is not None
    generator = torch.Generator().manual_seed(seed)
    ids = loaded.vocab.encode_text(prompt or "\n").unsqueeze(0)
    out: list[int] = []
    with torch.no_grad():
        logits, state = loaded.net(ids)
        for _ in range(length):
            probs = torch.softmax(logits[0, -1] / max(temperature, 1e-4), dim=0)
            nxt = int(torch.multinomial(probs, 1, generator=generator))
            out.append(nxt)
            logits, state = loaded.net(torch.tensor([[nxt]]), state)
    joiner = " " if isinstance(loaded.vocab, WordVocab) and prompt else ""
    return prompt + joiner + loaded.vocab.decode(out)
