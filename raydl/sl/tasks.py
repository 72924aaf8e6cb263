"""The supervised kinds as tasks of the epoch loop (raydl.train.loop).

`SupervisedTask` is what the loop drives for `classify` and `language_model`: the model
prepared for DDP (gloo on CPU, NCCL on GPU), its optimizer stepped through
`raydl.nn.guarded_step`, the learning-rate warm-up (raydl.sl.warmup) and schedule,
`model.unfreeze_after`, pretrained word vectors (raydl.sl.embeddings) and the watched
metric. It holds one problem, which knows the data, the network and its metrics:

- `ClassifyTask`: images, image rows or documents -> class; accuracy is the headline.
- `LanguageModelTask`: characters (or words) -> the next one, truncated BPTT; bits per
  character (or perplexity) is the headline.

Validation and test metrics are exact over the whole split: each worker evaluates its
shard and the sums are all-reduced.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from raydl.nn import guarded_step, make_optimizer
from raydl.sl.data import (
    DOCUMENT_SOURCES,
    CharVocab,
    WordVocab,
    bptt_batches,
    document_splits,
    image_splits,
    pad_batch,
    shard,
    text_splits,
)
from raydl.sl.experiment import SupervisedExperiment, TrainConfig
from raydl.sl.backbones import input_spec, logits_and_aux, set_backbone_trainable
from raydl.sl.embeddings import load_pretrained
from raydl.sl.models import build_model
from raydl.sl.warmup import Warmup
from raydl.train.loop import Step, Watched, Worker
from raydl.train.plumbing import DATA_FILE, all_reduce

VOCAB_FILE = "vocab.json"


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


class ClassifyTask:
    """Images (or image rows, or documents) -> class; accuracy is the headline."""

    unit = "examples"

    def __init__(self, worker: Worker) -> None:
        cfg: SupervisedExperiment = worker.cfg
        self.cfg, self.rank, self.world = cfg, worker.rank, worker.world
        self.documents = cfg.data.source in DOCUMENT_SOURCES
        self.collate = pad_batch if self.documents else None
        if self.documents:
            self.docs = document_splits(cfg.data)
            self.train_set, self.val_set, self.test_set = self.docs.train, self.docs.val, self.docs.test
            self.net = build_model(cfg.model, (), len(self.docs.labels), vocab_size=len(self.docs.vocab),
                                   context=cfg.text_context)
        else:
            self.splits = image_splits(cfg.data, input_spec(cfg.model))
            self.train_set, self.val_set, self.test_set = self.splits.train, self.splits.val, self.splits.test
            self.net = build_model(cfg.model, self.splits.input_shape, self.splits.num_classes)
        generator = torch.Generator().manual_seed(cfg.seed)
        # A last batch of one example breaks BatchNorm (ResNets) and is noise anyway: drop
        # the remainder whenever each worker still gets a full batch.
        drop_last = len(self.train_set) // worker.world > cfg.train.batch_size  # type: ignore[arg-type]
        loader = DataLoader(self.train_set, batch_size=cfg.train.batch_size, shuffle=True,
                            generator=generator, collate_fn=self.collate, drop_last=drop_last)
        self.loader = worker.prepare_loader(loader)

    def batches(self) -> Iterator[Any]:
        """This worker's shard of the training set, shuffled anew each epoch."""
        return iter(self.loader)

    def forward(self, model: nn.Module, batch: Any, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, labels) of a batch: images, or padded documents with their lengths."""
        if device is not None:
            batch = [t.to(device) for t in batch]
        if self.documents:
            x, lengths, y = batch
            return model(x, lengths), y
        x, y = batch
        return model(x), y

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """The mean loss of a batch and its counts (examples, correct ones); Inception's
        and GoogLeNet's auxiliary classifiers add their weighted losses."""
        out, y = self.forward(model, batch)
        logits, aux = logits_and_aux(out)
        loss = nn.functional.cross_entropy(logits.float(), y)
        for weight, aux_logits in aux:
            loss = loss + weight * nn.functional.cross_entropy(aux_logits.float(), y)
        return loss, {"n": len(y), "correct": float((logits.argmax(1) == y).sum())}

    def train_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {"train_loss": sums["loss"] / max(sums["n"], 1),
                "train_accuracy": sums["correct"] / max(sums["n"], 1)}

    def evaluate(self, model: nn.Module, split: str, device: torch.device) -> dict[str, float]:
        """Loss and accuracy over the whole `split` ("val" or "test"), all workers' shards."""
        ds = self.val_set if split == "val" else self.test_set
        if ds is None or len(ds) == 0:  # type: ignore[arg-type]
            return {}
        loader = DataLoader(shard(ds, self.rank, self.world), batch_size=256, collate_fn=self.collate)
        loss_sum, correct, total = 0.0, 0.0, 0.0
        with torch.no_grad():
            for batch in loader:
                logits, y = self.forward(model, batch, device)
                logits = logits.float()
                loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
                correct += float((logits.argmax(1) == y).sum())
                total += len(y)
        loss_sum, correct, total = all_reduce([loss_sum, correct, total], device)
        return {f"{split}_loss": loss_sum / max(total, 1), f"{split}_accuracy": correct / max(total, 1)}

    def training_words(self) -> tuple[list[str], torch.Tensor]:
        """The documents' vocabulary and the training split's token ids."""
        return self.docs.vocab.words, torch.cat(self.docs.train.docs)

    def save_extra(self, directory: Path) -> None:
        """data.json (classes, input shape, normalization) and, for documents, vocab.json."""
        if self.documents:
            self.docs.vocab.save(directory / VOCAB_FILE)
            info = {"num_classes": len(self.docs.labels), "labels": self.docs.labels,
                    "input_shape": [], "vocab_size": len(self.docs.vocab)}
        else:
            info = {"num_classes": self.splits.num_classes, "input_shape": list(self.splits.input_shape),
                    "mean": self.splits.mean, "std": self.splits.std, "vocab_size": 0}
        (directory / DATA_FILE).write_text(json.dumps(info))


class LanguageModelTask:
    """Characters -> next character with truncated BPTT; bits per character is the
    headline (cross-entropy in nats / ln 2), perplexity is exp(loss)."""

    unit = "tokens"
    loader = None  # each worker reads its own slice of the stream: no sampler

    def __init__(self, worker: Worker) -> None:
        cfg: SupervisedExperiment = worker.cfg
        rank, world = worker.rank, worker.world
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, worker.device
        self.splits = text_splits(cfg.data)
        self.vocab: CharVocab | WordVocab = self.splits.vocab
        self.net = build_model(cfg.model, (), 0, vocab_size=len(self.vocab), context=cfg.text_context)
        # Each worker trains on its own contiguous slice of the stream.
        train = self.splits.train
        size = len(train) // world
        self.stream = train[rank * size : (rank + 1) * size]
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(input, target) windows of this worker's slice, in order, on its device."""
        self.state = None  # each epoch reads the stream from its start, with a fresh state
        for x, y in bptt_batches(self.stream, self.cfg.train.batch_size, self.cfg.data.seq_len):
            yield x.to(self.device), y.to(self.device)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """The mean loss of a window and its token count; an LSTM's state goes on."""
        x, y = batch
        state = self.state
        if state is not None and state[0].shape[1] != len(x):
            state = None
        logits, new_state = model(x, state)
        # Carry the state into the next window but cut the gradient there (truncated BPTT);
        # a transformer gives none back: each window is all the context it has.
        self.state = None if new_state is None else (new_state[0].detach(), new_state[1].detach())
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, {"n": y.numel()}

    def train_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        loss = sums["loss"] / max(sums["n"], 1)
        return {"train_loss": loss, "train_bpc": loss / math.log(2),
                "train_perplexity": math.exp(min(loss, 50.0))}

    def evaluate(self, model: nn.Module, split: str, device: torch.device) -> dict[str, float]:
        """Loss, bits per character and perplexity over the whole `split` stream."""
        stream = self.splits.val if split == "val" else self.splits.test
        size = len(stream) // self.world
        mine = stream[self.rank * size : (self.rank + 1) * size]
        loss_sum, tokens = 0.0, 0.0
        state = None
        with torch.no_grad():
            for x, y in bptt_batches(mine, 16, self.cfg.data.seq_len):
                logits, state = model(x.to(device), state)
                loss_sum += float(nn.functional.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]), y.to(device).reshape(-1), reduction="sum"))
                tokens += y.numel()
        loss_sum, tokens = all_reduce([loss_sum, tokens], device)
        loss = loss_sum / max(tokens, 1)
        return {f"{split}_loss": loss, f"{split}_bpc": loss / math.log(2),
                f"{split}_perplexity": math.exp(min(loss, 50.0))}

    def training_words(self) -> tuple[list[str], torch.Tensor]:
        """The word vocabulary and the training stream."""
        assert isinstance(self.vocab, WordVocab)  # experiment validation: data.level word
        return self.vocab.words, self.splits.train

    def save_extra(self, directory: Path) -> None:
        self.vocab.save(directory / VOCAB_FILE)


def restore_schedule(scheduler: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any], epochs: int) -> None:
    """Load a saved schedule; a cosine one then ends at this run's `train.epochs`, which a
    resume may have raised. Its saved horizon would make the rate climb back up after the
    old last epoch; with the new one it keeps falling from where it is to its minimum at
    the new last epoch (torch's recursive cosine step telescopes to exactly that)."""
    scheduler.load_state_dict(state)
    if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        scheduler.T_max = epochs


def _scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size, cfg.step_gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


class SupervisedTask:
    """The epoch loop's task for `classify` and `language_model` (raydl.train.loop.Task):
    one problem's network under DDP, its optimizer, schedule and watched metric."""

    counted = "n"

    def __init__(self, worker: Worker) -> None:
        cfg: SupervisedExperiment = worker.cfg
        self.cfg, self.worker = cfg, worker
        self.problem: ClassifyTask | LanguageModelTask = (
            LanguageModelTask if cfg.kind == "language_model" else ClassifyTask
        )(worker)
        self.unit, self.loader = self.problem.unit, self.problem.loader
        self.first_row = self._pretrained_embeddings()  # before DDP sees which weights train
        self.model = worker.prepare_model(self.problem.net)
        self.params = list(self.model.parameters())
        t = cfg.train
        self.optimizer = make_optimizer(t.optimizer, self.params, t.lr, momentum=t.momentum,
                                        weight_decay=t.weight_decay)
        self.scheduler = _scheduler(t, self.optimizer)
        self.warmup, self.lr_factor = Warmup(t.warmup_steps), 1.0
        metric, mode = cfg.watched
        self.watched = Watched(metric, "max" if mode == "max" else "min", t.early_stop_patience)

    def _pretrained_embeddings(self) -> dict[str, float]:
        """`model.embeddings_file`'s vectors in the network's token table; their coverage
        for the first epoch's metrics row (rank 0 prints it once)."""
        model = self.cfg.model
        if not model.embeddings_file:
            return {}
        words, ids = self.problem.training_words()
        coverage, line = load_pretrained(self.problem.net.embed, words, ids, model.embeddings_file,
                                         model.freeze_embeddings, self.cfg.seed)
        if self.worker.rank == 0:
            print(f"raydl: {model.embeddings_file}: {line}", flush=True)
        return coverage

    def _unfreeze(self) -> None:
        # DDP fixes its gradient hooks at wrap time: unfreeze, then wrap again.
        set_backbone_trainable(_unwrap(self.model), True)
        self.model = self.worker.prepare_model(_unwrap(self.model))

    def state(self) -> dict[str, Any]:
        """model.pt: the network, the optimizer, the schedule and the warm-up's steps."""
        return {"model": _unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "warmup": self.warmup.state_dict()}

    def load(self, saved: dict[str, Any], epoch: int) -> None:
        """Restore model.pt; a backbone unfrozen before `epoch` is unfrozen again."""
        _unwrap(self.model).load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        restore_schedule(self.scheduler, saved["scheduler"], self.cfg.train.epochs)
        if "warmup" in saved:  # absent in older checkpoints
            self.warmup.load_state_dict(saved["warmup"])
        after = self.cfg.model.unfreeze_after
        if after and epoch > after:
            self._unfreeze()

    def start(self, epoch: int, restored: bool) -> None:
        """After a restore, reseed: a fresh start keeps the seed every worker was given."""
        if restored:
            torch.manual_seed(self.cfg.seed + 7919 * epoch)  # dropout masks differ from the first pass
            self.first_row = {}  # the run's first row has it

    def begin_epoch(self, epoch: int) -> None:
        """Unfreeze the backbone when `model.unfreeze_after` epochs are done; train mode."""
        after = self.cfg.model.unfreeze_after
        if after and epoch == after + 1:
            self._unfreeze()
        self.model.train()

    def new_sums(self) -> dict[str, float]:
        return {"loss": 0.0, "n": 0.0, "correct": 0.0}

    def batches(self) -> Iterator[Any]:
        return iter(self.problem.batches())

    def train_step(self, batch: Any) -> Step:
        """Forward (in bfloat16 with `train.amp`), then one guarded optimizer step."""
        with self.worker.autocast():
            loss, stats = self.problem.loss(self.model, batch)
        with self.warmup.scaled(self.optimizer) as factor:
            (loss_value, norm_value), stepped = guarded_step(self.optimizer, self.params, loss, self.cfg.train.grad_clip)
        if not stepped:  # a NaN/inf gradient (the same on every rank): no update, no sums
            return Step({}, nonfinite={"loss": loss_value, "grad_norm": norm_value})
        self.warmup.stepped()
        self.lr_factor = factor
        return Step({"loss": loss_value * stats["n"], **stats})

    def epoch_metrics(self, totals: dict[str, float]) -> dict[str, Any]:
        """Training means, the learning rate of the epoch's last step (then the schedule
        steps), validation; the first epoch adds the pretrained embeddings' coverage."""
        lr = self.optimizer.param_groups[0]["lr"] * self.lr_factor
        self.scheduler.step()
        self.model.eval()
        first, self.first_row = self.first_row, {}
        return {**self.problem.train_metrics(totals), **self.problem.evaluate(self.model, "val", self.worker.device),
                "lr": lr, **first}

    def closing_metrics(self, epoch: int, last: bool) -> dict[str, Any]:
        """The test split, once: on the run's last epoch."""
        return self.problem.evaluate(self.model, "test", self.worker.device) if last else {}

    def save_extra(self, directory: Path) -> None:
        self.problem.save_extra(directory)
