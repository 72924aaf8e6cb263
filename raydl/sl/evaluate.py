"""Evaluation of supervised checkpoints: test accuracy of one model or an ensemble (of
any architectures and input sizes; averaged probabilities or majority vote), and text
generation from a language model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from raydl import checkpoint as ckpt
from raydl.config import load_experiment
from raydl.errors import CheckpointError, ConfigError
from raydl.registry import EvalOptions
from raydl.sl.data import (
    DOCUMENT_SOURCES,
    CharVocab,
    WordVocab,
    document_splits,
    image_splits,
    load_vocab,
    pad_batch,
)
from raydl.sl.backbones import input_spec
from raydl.sl.models import build_model
from raydl.sl.tasks import VOCAB_FILE
from raydl.sl.transformer import TransformerLanguageModel
from raydl.train.plumbing import MODEL_FILE


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
        net = build_model(cfg.model, (), 0, vocab_size=len(vocab), context=cfg.text_context)
    else:
        data = json.loads((directory / "data.json").read_text())
        net = build_model(cfg.model, tuple(data["input_shape"]), data["num_classes"],
                          vocab_size=data.get("vocab_size", 0), context=cfg.text_context)
    state = ckpt.load_torch(directory / MODEL_FILE)
    try:
        net.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{directory / MODEL_FILE}: does not match its config: {first}") from None
    return Loaded(cfg, net.eval(), vocab, directory)


def _probabilities(net: nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    probs, labels = [], []
    with torch.no_grad():
        for batch in loader:
            *inputs, y = batch  # images, or padded documents and their lengths
            probs.append(torch.softmax(net(*inputs).float(), dim=1))
            labels.append(y)
    return torch.cat(probs), torch.cat(labels)


# What picks the examples and their split: every member of an ensemble must agree on it.
# How each model sees them (size, channels, normalization, vocabulary size) may differ.
SPLIT_FIELDS = ("source", "data_dir", "text_file", "csv_file", "val_fraction", "test_fraction", "seed")


def _held_out(model: Loaded, split: str) -> DataLoader:
    """The held-out split as `model` was trained to see it (its own preprocessing)."""
    data = model.cfg.data
    if data.source in DOCUMENT_SOURCES:
        # the vocabulary is rebuilt from the same training split, so ids match the model's
        docs = document_splits(data)
        dataset = docs.test if split == "test" and docs.test is not None else docs.val
        return DataLoader(dataset, batch_size=256, collate_fn=pad_batch)
    splits = image_splits(data, input_spec(model.cfg.model))
    dataset = splits.test if split == "test" and splits.test is not None else splits.val
    return DataLoader(dataset, batch_size=64)


def vote(probs: list[torch.Tensor], how: str = "soft") -> torch.Tensor:
    """The ensemble's classes: the highest mean probability (soft), or the most models'
    argmax (hard; a tie goes to the tied class with the highest mean probability)."""
    mean = torch.stack(probs).mean(0)
    if how == "soft":
        return mean.argmax(1)
    counts = sum(nn.functional.one_hot(p.argmax(1), mean.shape[1]) for p in probs)
    return (counts.float() + mean / (len(probs) + 1)).argmax(1)  # mean < 1 vote: ties only


def evaluate_classifiers(models: list[Loaded], split: str = "test", how: str = "soft") -> dict[str, Any]:
    """Accuracy of each model and of their ensemble on the held-out split they share;
    models may differ in architecture, input size and preprocessing."""
    base = {f: getattr(models[0].cfg.data, f) for f in SPLIT_FIELDS}
    for m in models[1:]:
        other = {f: getattr(m.cfg.data, f) for f in SPLIT_FIELDS}
        if other != base:
            field = next(f for f in SPLIT_FIELDS if other[f] != base[f])
            raise ConfigError(
                f"{m.directory}: data.{field} is {other[field]!r}, {models[0].directory}'s is "
                f"{base[field]!r}; an ensemble is evaluated on one held-out set (allowed to differ: "
                "image_size, channels, normalize, augment, and the models)")
    each, probs, labels = [], [], None
    for m in models:
        p, y = _probabilities(m.net, _held_out(m, split))
        if labels is not None and not torch.equal(y, labels):
            raise ConfigError(f"{m.directory}: its held-out examples differ from {models[0].directory}'s")
        labels = y
        probs.append(p)
        each.append(float((p.argmax(1) == y).float().mean()))
    assert labels is not None
    ensemble = float((vote(probs, how) == labels).float().mean())
    return {"split": split, "examples": len(labels), "accuracies": each, "ensemble_accuracy": ensemble,
            "vote": how}


def generate(loaded: Loaded, prompt: str, length: int, temperature: float = 0.8, seed: int = 0) -> str:
    """`length` characters sampled after `prompt` (temperature-scaled softmax). An LSTM
    reads the prompt, then one token at a time with its state; a transformer rereads the
    last `data.seq_len` tokens (its context) for every new one."""
    assert loaded.vocab is not None
    generator = torch.Generator().manual_seed(seed)
    ids = loaded.vocab.encode_text(prompt or "\n").unsqueeze(0)
    window = loaded.cfg.text_context if isinstance(loaded.net, TransformerLanguageModel) else 0
    out: list[int] = []
    with torch.no_grad():
        logits, state = loaded.net(ids[:, -window:])
        for _ in range(length):
            probs = torch.softmax(logits[0, -1] / max(temperature, 1e-4), dim=0)
            nxt = int(torch.multinomial(probs, 1, generator=generator))
            out.append(nxt)
            if window:
                ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)[:, -window:]
                logits, _ = loaded.net(ids)
            else:
                logits, state = loaded.net(torch.tensor([[nxt]]), state)
    joiner = " " if isinstance(loaded.vocab, WordVocab) and prompt else ""
    return prompt + joiner + loaded.vocab.decode(out)


def eval_command(cfg: Any, directories: list[Path], options: EvalOptions) -> None:
    """`raydl eval` of classify / language_model checkpoints: test accuracy of one model
    or an ensemble, or text generated by a language model."""
    models = [load_checkpoint(d) for d in directories]
    if cfg.kind == "language_model":
        if len(models) > 1:
            raise ConfigError("eval: give one language-model checkpoint")
        if options.generate < 1:
            raise ConfigError("eval: a language model needs --generate N (characters to print)")
        print(generate(models[0], options.prompt, options.generate, options.temperature, options.seed))
        return
    if any(m.cfg.kind != "classify" for m in models):
        raise ConfigError("eval: an ensemble takes classifier checkpoints only")
    report = evaluate_classifiers(models, how=options.vote)
    for d, m, acc in zip(directories, models, report["accuracies"]):
        shape = json.loads((m.directory / "data.json").read_text())["input_shape"]
        size = "x".join(map(str, shape)) or "tokens"
        print(f"{d}: {m.cfg.model.arch} on {size}, {report['split']} accuracy {acc:.4f}")
    line = f"raydl eval: {report['examples']} {report['split']} examples"
    if len(models) > 1:
        line += f", ensemble of {len(models)} accuracy {report['ensemble_accuracy']:.4f}"
        line += f" ({report['vote']} vote; best single {max(report['accuracies']):.4f})"
    else:
        line += f", accuracy {report['accuracies'][0]:.4f}"
    print(line)
