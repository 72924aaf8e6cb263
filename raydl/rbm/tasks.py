"""The image kinds of raydl.rbm as tasks of the epoch loop (raydl.train.loop):

- `RBMTask` (`rbm`): a Bernoulli RBM trained by CD-k or PCD-k; rank 0 judges its hidden
  probabilities as features with scikit-learn's LogisticRegression (val and test accuracy).
- `DBNTask` (`dbn`): stacked RBMs, each trained by CD on the hidden probabilities of the
  ones below for `train.pretrain_epochs` epochs, bottom up; then the stack with a softmax
  head fine-tuned as a classifier by backpropagation under DDP, as the classify kind is.

The CD updates are averaged over the workers by hand (raydl.rbm.learner); every metric
over a split is exact: each worker takes its shard, and the sums are all-reduced.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from raydl.gen.gan import unwrap
from raydl.gen.tasks import replica_divergence
from raydl.nn import guarded_step, make_optimizer
from raydl.rbm.experiment import DBNExperiment, RBMExperiment, RBMScoreConfig
from raydl.rbm.learner import ORDER, CDLearner, epoch_seed
from raydl.rbm.models import BernoulliRBM, stacked_classifier
from raydl.sl.data import ImageTensors, image_splits
from raydl.train.loop import Step, Worker
from raydl.train.plumbing import DATA_FILE, all_reduce


@dataclass
class FlatImages:
    """Each split's images as rows of pixels in [0, 1], and their labels."""

    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    num_classes: int

    @property
    def n_visible(self) -> int:
        return self.x["train"].shape[1]

    def train_set(self) -> TensorDataset:
        return TensorDataset(self.x["train"], self.y["train"])


def _stack(ds: Dataset | None, batched: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A split's images as rows and its labels; `batched`: its transform takes all the
    images at once (30x faster than one by one)."""
    if ds is None or len(ds) == 0:  # type: ignore[arg-type]
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    if batched and isinstance(ds, ImageTensors):
        x = ds.transform(ds.images) if ds.transform else ds.images
        return x.flatten(1), ds.labels.long()
    xs, ys = zip(*(ds[i] for i in range(len(ds))))  # type: ignore[arg-type]
    return torch.stack(xs).flatten(1), torch.as_tensor(ys, dtype=torch.long)


def flat_images(data: Any) -> FlatImages:
    """The splits of raydl.sl.data.image_splits (so the same images and split as the
    classify kind's), read once into tensors: small, and the RBM wants them flat."""
    splits = image_splits(data)
    batched = data.channels != 3  # the 1-to-3-channel expansion takes one image at a time
    x, y = {}, {}
    for name, ds in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        x[name], y[name] = _stack(ds, batched)
    return FlatImages(x, y, splits.num_classes)


def shuffled_loader(data: Dataset, worker: Worker, order: torch.Generator) -> DataLoader:
    """This worker's shard of `data` in batches, reshuffled each epoch: by the worker
    group's DistributedSampler, or outside a group by `order` (reseeded each epoch)."""
    batch = worker.cfg.train.batch_size
    loader = DataLoader(data, batch_size=batch, shuffle=True, generator=order,
                        drop_last=len(data) // worker.world > batch)  # type: ignore[arg-type]
    return worker.prepare_loader(loader)


def _shard(x: torch.Tensor, worker: Worker) -> torch.Tensor:
    return x[worker.rank::worker.world].to(worker.device)


@torch.no_grad()
def recon_error(rbm: BernoulliRBM, x: torch.Tensor, worker: Worker) -> float:
    """Mean squared pixel error of the one-step reconstructions of a whole split."""
    mine = _shard(x, worker)
    total, pixels = all_reduce([float(rbm.reconstruction_error(mine).sum()), float(mine.numel())], worker.device)
    return total / max(pixels, 1)


def logistic_accuracy(features: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
                      score: RBMScoreConfig) -> dict[str, float]:
    """scikit-learn's LogisticRegression fitted on the training features: its accuracy on
    the other splits (`val_accuracy`, `test_accuracy`). newton-cg, as in scikit-learn's
    RBM example: with a large C, lbfgs takes hundreds of iterations to get as far."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=score.C, solver="newton-cg", tol=score.tol, max_iter=score.max_iter)
        clf.fit(features["train"].cpu().numpy(), labels["train"].numpy())
    return {f"{name}_accuracy": float(clf.score(features[name].cpu().numpy(), labels[name].numpy()))
            for name in ("val", "test") if len(labels[name])}


class RBMTask:
    """The epoch loop's task for `rbm` (raydl.train.loop.Task)."""

    unit = counted = "examples"
    watched = None  # no early stopping: the judged accuracy comes every score.every epochs

    def __init__(self, worker: Worker) -> None:
        cfg: RBMExperiment = worker.cfg
        self.cfg, self.worker = cfg, worker
        self.images = flat_images(cfg.data)
        rbm = BernoulliRBM(self.images.n_visible, cfg.model.n_hidden, torch.Generator().manual_seed(cfg.seed))
        rbm.init_visible_bias(self.images.x["train"])
        self.learner = CDLearner(rbm, cfg.train, worker)
        self.order = torch.Generator()
        self.loader = shuffled_loader(self.images.train_set(), worker, self.order)

    def state(self) -> dict[str, Any]:
        return self.learner.state()

    def load(self, saved: dict[str, Any], epoch: int) -> None:
        self.learner.load(saved)

    def start(self, epoch: int, restored: bool) -> None:
        pass  # the Gibbs noise is seeded per epoch

    def begin_epoch(self, epoch: int) -> None:
        self.order.manual_seed(epoch_seed(self.cfg.seed, epoch, ORDER))
        self.learner.begin_epoch(epoch, self.cfg.seed)

    def new_sums(self) -> dict[str, float]:
        return {"recon": 0.0, "examples": 0.0, "pixels": 0.0}

    def batches(self) -> Any:
        return iter(self.loader)

    def train_step(self, batch: Any) -> Step:
        return self.learner.step(batch[0].to(self.worker.device))

    def epoch_metrics(self, totals: dict[str, float]) -> dict[str, Any]:
        """Reconstruction errors (training batches, whole validation split); the chains
        gathered for the checkpoint; the largest weight difference between workers."""
        self.learner.gather_chains()
        rbm = self.learner.rbm
        return {"train_recon_error": totals["recon"] / max(totals["pixels"], 1),
                "val_recon_error": recon_error(rbm, self.images.x["val"], self.worker),
                "replica_divergence": replica_divergence([rbm], self.worker.device)}

    def closing_metrics(self, epoch: int, last: bool) -> dict[str, Any]:
        """Rank 0, every score.every epochs and last: logistic regression on p(h | v)."""
        every = self.cfg.score.every
        if self.worker.rank != 0 or not (last or (every and epoch % every == 0)):
            return {}
        rbm = self.learner.rbm
        with torch.no_grad():
            features = {name: rbm.hidden_probs(x.to(self.worker.device)) for name, x in self.images.x.items()}
        return logistic_accuracy(features, self.images.y, self.cfg.score)

    def save_extra(self, directory: Path) -> None:
        (directory / DATA_FILE).write_text(json.dumps(
            {"n_visible": self.images.n_visible, "num_classes": self.images.num_classes}))


class DBNTask:
    """The epoch loop's task for `dbn`: epochs 1..P train RBM 1, P+1..2P RBM 2, ... (P =
    train.pretrain_epochs); the remaining epochs fine-tune the stack as a classifier."""

    unit = counted = "examples"
    watched = None  # val_accuracy only exists once fine-tuning starts

    def __init__(self, worker: Worker) -> None:
        cfg: DBNExperiment = worker.cfg
        self.cfg, self.worker = cfg, worker
        self.images = flat_images(cfg.data)
        sizes = [self.images.n_visible, *cfg.model.hidden_layers]
        generator = torch.Generator().manual_seed(cfg.seed)
        self.rbms = [BernoulliRBM(a, b, generator).to(worker.device) for a, b in zip(sizes, sizes[1:])]
        self.order = torch.Generator()
        self.loader = shuffled_loader(self.images.train_set(), worker, self.order)
        self.layer: int | None = None  # the RBM being pretrained (0-based); None: fine-tuning
        self.learner: CDLearner | None = None
        self.classifier: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def _layer_of(self, epoch: int) -> int | None:
        """The RBM that `epoch` pretrains (None: a fine-tuning epoch)."""
        return (epoch - 1) // self.cfg.train.pretrain_epochs if epoch <= self.cfg.pretrain_epochs else None

    def _enter(self, epoch: int) -> None:
        """Set up the phase of `epoch` unless it is already set up: a new RBM's learner
        (fresh momentum and chains), or the classifier built from the pretrained RBMs."""
        layer = self._layer_of(epoch)
        if layer is not None and (self.learner is None or self.layer != layer):
            x = self._features(self.images.x["train"].to(self.worker.device), layer)
            self.rbms[layer].init_visible_bias(x)  # all the training data: the same on every worker
            self.layer, self.learner = layer, CDLearner(self.rbms[layer], self.cfg.train, self.worker)
        elif layer is None and self.classifier is None:
            t = self.cfg.train
            head = torch.Generator().manual_seed(self.cfg.seed + 1)  # the same head on every worker
            net = stacked_classifier(self.rbms, self.images.num_classes, head).to(self.worker.device)
            self.classifier = self.worker.prepare_model(net)
            self.optimizer = make_optimizer(t.finetune_optimizer, self.classifier.parameters(), t.finetune_lr,
                                            momentum=t.momentum, weight_decay=t.weight_decay)
            self.layer, self.learner = None, None

    def state(self) -> dict[str, Any]:
        """model.pt: every RBM, the current one's learner state or the classifier's."""
        out: dict[str, Any] = {"rbms": [rbm.state_dict() for rbm in self.rbms]}
        if self.learner is not None:
            out["learner"] = self.learner.state()
        if self.classifier is not None and self.optimizer is not None:
            out["classifier"] = unwrap(self.classifier).state_dict()
            out["optimizer"] = self.optimizer.state_dict()
        return out

    def load(self, saved: dict[str, Any], epoch: int) -> None:
        """Restore the RBMs and the phase `epoch` ended in."""
        for rbm, state in zip(self.rbms, saved["rbms"]):
            rbm.load_state_dict(state)
        self._enter(epoch)
        if self.learner is not None:
            self.learner.load(saved["learner"])
        elif self.classifier is not None and self.optimizer is not None:
            unwrap(self.classifier).load_state_dict(saved["classifier"])
            self.optimizer.load_state_dict(saved["optimizer"])

    def start(self, epoch: int, restored: bool) -> None:
        pass  # the Gibbs noise is seeded per epoch; fine-tuning draws no noise

    def begin_epoch(self, epoch: int) -> None:
        self.order.manual_seed(epoch_seed(self.cfg.seed, epoch, ORDER))
        self._enter(epoch)
        if self.learner is not None:
            self.learner.begin_epoch(epoch, self.cfg.seed)
        elif self.classifier is not None:
            self.classifier.train()

    def new_sums(self) -> dict[str, float]:
        return {"recon": 0.0, "examples": 0.0, "pixels": 0.0, "loss": 0.0, "correct": 0.0}

    def batches(self) -> Any:
        return iter(self.loader)

    @torch.no_grad()
    def _features(self, x: torch.Tensor, layers: int) -> torch.Tensor:
        """The hidden probabilities of the first `layers` RBMs, bottom up: what RBM
        `layers` is trained on."""
        for rbm in self.rbms[:layers]:
            x = rbm.hidden_probs(x)
        return x

    def train_step(self, batch: Any) -> Step:
        """A CD step of the current RBM, or a guarded backpropagation step."""
        x, y = (t.to(self.worker.device) for t in batch)
        if self.learner is not None and self.layer is not None:
            return self.learner.step(self._features(x, self.layer))
        assert self.classifier is not None and self.optimizer is not None
        with self.worker.autocast():
            logits = self.classifier(x).float()
        loss = nn.functional.cross_entropy(logits, y)
        (loss_value, norm), stepped = guarded_step(self.optimizer, list(self.classifier.parameters()), loss)
        if not stepped:
            return Step({"examples": float(len(y))}, nonfinite={"loss": loss_value, "grad_norm": norm})
        return Step({"loss": loss_value * len(y), "correct": float((logits.argmax(1) == y).sum()),
                     "examples": float(len(y))})

    def _classify(self, split: str) -> dict[str, float]:
        """Loss and accuracy of the classifier over a whole split (all workers' shards)."""
        assert self.classifier is not None
        net = unwrap(self.classifier).eval()
        with torch.no_grad():
            logits = net(_shard(self.images.x[split], self.worker)).float()
            y = _shard(self.images.y[split], self.worker)
            sums = [float(nn.functional.cross_entropy(logits, y, reduction="sum")),
                    float((logits.argmax(1) == y).sum()), float(len(y))]
        loss, correct, n = all_reduce(sums, self.worker.device)
        return {f"{split}_loss": loss / max(n, 1), f"{split}_accuracy": correct / max(n, 1)}

    def epoch_metrics(self, totals: dict[str, float]) -> dict[str, Any]:
        """Pretraining: the layer and its reconstruction errors; fine-tuning: loss and
        accuracy (training batches, whole validation split). Both: replica divergence."""
        modules: list[nn.Module] = list(self.rbms)
        if self.learner is not None and self.layer is not None:
            self.learner.gather_chains()
            out: dict[str, Any] = {
                "layer": self.layer + 1, "train_recon_error": totals["recon"] / max(totals["pixels"], 1),
                "val_recon_error": recon_error(self.rbms[self.layer],
                                               self._features(self.images.x["val"], self.layer), self.worker)}
        else:
            assert self.classifier is not None
            modules.append(self.classifier)
            n = max(totals["examples"], 1)
            out = {"train_loss": totals["loss"] / n, "train_accuracy": totals["correct"] / n, **self._classify("val")}
        return {**out, "replica_divergence": replica_divergence(modules, self.worker.device)}

    def closing_metrics(self, epoch: int, last: bool) -> dict[str, Any]:
        """The test split, once: on the run's last epoch (a fine-tuning one)."""
        if not last or self.classifier is None or not len(self.images.y["test"]):
            return {}
        return self._classify("test")

    def save_extra(self, directory: Path) -> None:
        (directory / DATA_FILE).write_text(json.dumps(
            {"n_visible": self.images.n_visible, "num_classes": self.images.num_classes}))
