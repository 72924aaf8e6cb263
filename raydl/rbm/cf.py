"""`cf_rbm` as a task of the epoch loop (raydl.train.loop): Salakhutdinov, Mnih & Hinton's
RBM for collaborative filtering (2007) on MovieLens ratings.

A batch is a set of users; each is an RBM over the items they rated in the training split
(softmax visible units over 1..5 stars), all sharing the weights. Each worker takes its
shard of the users, computes the batch's CD-k gradient (raydl.rbm.models.SoftmaxRBM.cd)
and the workers average it by hand (raydl.rbm.learner). Each epoch reports the RMSE of
the held-out validation ratings, predicted from the user's training ratings, beside the
item-mean baseline's; the last epoch adds the test ratings'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from raydl.gen.tasks import replica_divergence
from raydl.rbm.experiment import CFRBMExperiment
from raydl.rbm.learner import ORDER, CDLearner, epoch_seed
from raydl.rbm.models import SoftmaxRBM, one_hot_ratings
from raydl.rbm.ratings import STARS, Ratings, item_means, read_ratings, rmse, split_ratings
from raydl.rbm.tasks import shuffled_loader
from raydl.train.loop import Step, Worker
from raydl.train.plumbing import DATA_FILE, all_reduce


@dataclass(frozen=True)
class UserRatings:
    """Ratings grouped by user: user u's are rows offsets[u]:offsets[u + 1] of items/stars."""

    offsets: torch.Tensor
    items: torch.Tensor
    stars: torch.Tensor

    @classmethod
    def of(cls, ratings: Ratings, index: np.ndarray) -> UserRatings:
        """The ratings `index` picks out of `ratings`, grouped by user."""
        users = ratings.users[index]
        order = np.argsort(users, kind="stable")
        offsets = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=ratings.n_users))])
        return cls(torch.as_tensor(offsets), torch.as_tensor(ratings.items[index][order]),
                   torch.as_tensor(ratings.stars[index][order]))

    def rated(self) -> torch.Tensor:
        """The users with at least one rating."""
        return torch.nonzero(self.offsets[1:] > self.offsets[:-1]).flatten()

    def batch(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(stars (len(users), len(items)), 0 where a user has no rating; items: the
        distinct items any of these users rated, sorted)."""
        users = users.cpu()
        starts, lengths = self.offsets[users], self.offsets[users + 1] - self.offsets[users]
        rows = torch.repeat_interleave(torch.arange(len(users)), lengths)
        first = torch.repeat_interleave(starts - (lengths.cumsum(0) - lengths), lengths)
        index = first + torch.arange(len(rows))
        items, columns = torch.unique(self.items[index], return_inverse=True)
        stars = torch.zeros(len(users), len(items), dtype=torch.long)
        stars[rows, columns] = self.stars[index]
        return stars, items


@torch.no_grad()
def hidden_of(rbm: SoftmaxRBM, given: UserRatings, users: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """p(h = 1 | V) of each of `users`, V their ratings in `given`."""
    device = rbm.hidden_bias.device
    parts = []
    for start in range(0, len(users), chunk):
        stars, items = given.batch(users[start:start + chunk])
        parts.append(rbm.hidden_probs(one_hot_ratings(stars.to(device), rbm.k), items.to(device)))
    return torch.cat(parts) if parts else torch.zeros(0, len(rbm.hidden_bias), device=device)


@torch.no_grad()
def predict(rbm: SoftmaxRBM, given: UserRatings, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Expected ratings of (user, item) pairs, from each user's ratings in `given`."""
    distinct, which = torch.unique(users, return_inverse=True)
    h = hidden_of(rbm, given, distinct)
    device = h.device
    return torch.cat([rbm.expected_ratings(rbm.pair_logits(h[which[s:s + 4096]].to(device),
                                                           items[s:s + 4096].to(device)))
                      for s in range(0, len(items), 4096)] or [torch.zeros(0, device=device)])


def _star_counts(ratings: Ratings, train: np.ndarray) -> torch.Tensor:
    """(items, K): how often each item got each star in the training ratings."""
    flat = ratings.items[train] * STARS + ratings.stars[train] - 1
    return torch.as_tensor(np.bincount(flat, minlength=ratings.n_items * STARS).reshape(-1, STARS),
                           dtype=torch.float32)


class CFRBMTask:
    """The epoch loop's task for `cf_rbm` (raydl.train.loop.Task)."""

    unit = counted = "users"
    watched = None

    def __init__(self, worker: Worker) -> None:
        cfg: CFRBMExperiment = worker.cfg
        self.cfg, self.worker = cfg, worker
        d = cfg.data
        self.ratings = read_ratings(d.ratings_file)
        splits = split_ratings(self.ratings, d.val_fraction, d.test_fraction, d.seed)
        self.given = UserRatings.of(self.ratings, splits.train)
        means = item_means(self.ratings, splits.train)
        r = self.ratings
        self.held = {name: (torch.as_tensor(r.users[idx]), torch.as_tensor(r.items[idx]), r.stars[idx])
                     for name, idx in (("val", splits.val), ("test", splits.test))}
        self.baseline = {name: rmse(means[r.items[idx]], r.stars[idx])
                         for name, idx in (("val", splits.val), ("test", splits.test)) if len(idx)}
        rbm = SoftmaxRBM(r.n_items, STARS, cfg.model.n_hidden, torch.Generator().manual_seed(cfg.seed))
        rbm.init_visible_bias(_star_counts(r, splits.train))
        self.learner = CDLearner(rbm, cfg.train, worker)
        self.order = torch.Generator()
        self.loader = shuffled_loader(TensorDataset(self.given.rated()), worker, self.order)

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
        return {"users": 0.0, "ratings": 0.0}

    def batches(self) -> Any:
        return iter(self.loader)

    def train_step(self, batch: Any) -> Step:
        """One CD-k update from a batch of users' training ratings."""
        stars, items = self.given.batch(batch[0])
        device = self.worker.device
        rbm: SoftmaxRBM = self.learner.rbm  # type: ignore[assignment]
        cd = rbm.cd(stars.to(device), items.to(device), self.cfg.train.cd_k, self.learner.noise)
        counts = {"users": float(len(stars)), "ratings": float((stars > 0).sum())}
        return Step(counts, nonfinite=self.learner.apply(cd.ascent))

    def _rmse(self, split: str) -> float:
        """RMSE of a held-out split over all workers (each predicts its users' ratings)."""
        users, items, stars = self.held[split]
        mine = (users % self.worker.world == self.worker.rank).numpy()
        rbm: SoftmaxRBM = self.learner.rbm  # type: ignore[assignment]
        predicted = predict(rbm, self.given, users[mine], items[mine]).double().cpu().numpy()
        sq, n = all_reduce([float(((predicted - stars[mine]) ** 2).sum()), float(mine.sum())], self.worker.device)
        return float(np.sqrt(sq / max(n, 1)))

    def epoch_metrics(self, totals: dict[str, float]) -> dict[str, Any]:
        """Validation RMSE beside the item-mean baseline's; the replicas' difference."""
        return {"val_rmse": self._rmse("val"), "baseline_val_rmse": self.baseline["val"],
                "ratings_per_user": totals["ratings"] / max(totals["users"], 1),
                "replica_divergence": replica_divergence([self.learner.rbm], self.worker.device)}

    def closing_metrics(self, epoch: int, last: bool) -> dict[str, Any]:
        """The test ratings' RMSE, once: on the last epoch."""
        if not last or "test" not in self.baseline:
            return {}
        return {"test_rmse": self._rmse("test"), "baseline_test_rmse": self.baseline["test"]}

    def save_extra(self, directory: Path) -> None:
        """data.json: what `raydl eval` checks the ratings file it reads again against."""
        r = self.ratings
        (directory / DATA_FILE).write_text(json.dumps(
            {"ratings": len(r), "n_users": r.n_users, "n_items": r.n_items}))
