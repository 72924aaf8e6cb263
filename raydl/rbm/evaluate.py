"""`raydl eval` of the RBM kinds' checkpoints:

- `cf_rbm`: the top-N items each user has not rated, by their expected rating under the
  model given all of the user's ratings in the file (`--top N`, `--user ID` repeatable;
  every user without --user), one line per user;
- `dbn`: the fine-tuned classifier's test accuracy;
- `rbm`: the test accuracy of a logistic regression on the RBM's hidden probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from raydl import checkpoint as ckpt
from raydl.errors import CheckpointError, ConfigError, matching_checkpoint
from raydl.rbm.cf import UserRatings, hidden_of
from raydl.rbm.models import BernoulliRBM, SoftmaxRBM, stacked_classifier
from raydl.rbm.ratings import STARS, Ratings, read_ratings
from raydl.rbm.tasks import flat_images, logistic_accuracy
from raydl.registry import EvalOptions
from raydl.train.plumbing import DATA_FILE, MODEL_FILE


def _data(directory: Path) -> dict[str, Any]:
    return ckpt.load_json(directory / DATA_FILE)


def _cf_model(cfg: Any, directory: Path, saved: dict[str, Any]) -> tuple[SoftmaxRBM, Ratings]:
    """The trained CF-RBM and the ratings it was trained on (read again, checked to match)."""
    ratings = read_ratings(cfg.data.ratings_file)
    data = _data(directory)
    if (len(ratings), ratings.n_users, ratings.n_items) != (data["ratings"], data["n_users"], data["n_items"]):
        raise CheckpointError(
            f"{cfg.data.ratings_file}: {len(ratings)} ratings of {ratings.n_users} users on {ratings.n_items} "
            f"items; {directory} was trained on {data['ratings']} of {data['n_users']} on {data['n_items']}")
    rbm = SoftmaxRBM(ratings.n_items, STARS, cfg.model.n_hidden)
    with matching_checkpoint(directory / MODEL_FILE):
        rbm.load_state_dict(saved["rbm"])
    return rbm, ratings


def _users(ratings: Ratings, wanted: tuple[int, ...]) -> torch.Tensor:
    """The indices of the users asked for (every user when none is)."""
    if not wanted:
        return torch.arange(ratings.n_users)
    index = {int(u): i for i, u in enumerate(ratings.user_ids)}
    missing = [u for u in wanted if u not in index]
    if missing:
        raise ConfigError(f"--user {missing[0]}: no such user in the ratings file; its users are "
                          f"{ratings.user_ids[0]} to {ratings.user_ids[-1]} ({ratings.n_users} of them)")
    return torch.tensor([index[u] for u in wanted])


@torch.no_grad()
def top_items(rbm: SoftmaxRBM, given: UserRatings, users: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(item indices, expected ratings) of each user's `top` best unrated items, best first."""
    n_items = len(rbm.visible_bias)
    everything = torch.arange(n_items)
    chunk = max(1, 2_000_000 // (n_items * rbm.k))  # users per pass: (users, items, K) logits
    found, scores = [], []
    for start in range(0, len(users), chunk):
        part = users[start:start + chunk]
        expected = rbm.expected_ratings(rbm.visible_logits(hidden_of(rbm, given, part), everything))
        stars, items = given.batch(part)
        rated = torch.zeros_like(expected, dtype=torch.bool)
        rated[:, items] = stars > 0
        value, index = expected.masked_fill(rated, -np.inf).topk(min(top, n_items), dim=1)
        found.append(index)
        scores.append(value)
    return torch.cat(found), torch.cat(scores)


def recommend(cfg: Any, directory: Path, saved: dict[str, Any], options: EvalOptions) -> None:
    """Print each user's top-N unrated items (file ids) with their expected ratings."""
    rbm, ratings = _cf_model(cfg, directory, saved)
    users = _users(ratings, options.users)
    given = UserRatings.of(ratings, np.arange(len(ratings)))
    found, scores = top_items(rbm, given, users, options.top)
    for user, items, values in zip(users.tolist(), found.tolist(), scores.tolist()):
        shown = ", ".join(f"{ratings.item_ids[i]} ({v:.2f})" for i, v in zip(items, values) if v > -np.inf)
        print(f"user {ratings.user_ids[user]}: {shown}")
    print(f"raydl eval: top {options.top} unrated items of {len(users)} users by expected rating, "
          f"from {directory}")


def _test_images(cfg: Any) -> Any:
    """The experiment's images (the same split as in training); a test split is needed."""
    images = flat_images(cfg.data)
    if not len(images.y["test"]):
        raise ConfigError("eval: the experiment holds out no test images (data.test_fraction: 0)")
    return images


def _dbn_accuracy(cfg: Any, directory: Path, saved: dict[str, Any]) -> float:
    if "classifier" not in saved:
        raise ConfigError(f"eval: {directory} is from pretraining (epochs 1-{cfg.pretrain_epochs}); "
                          "a classifier exists from the first fine-tuning epoch on")
    data = _data(directory)
    sizes = [data["n_visible"], *cfg.model.hidden_layers]
    rbms = [BernoulliRBM(a, b) for a, b in zip(sizes, sizes[1:])]
    net = stacked_classifier(rbms, data["num_classes"], torch.Generator())
    with matching_checkpoint(directory / MODEL_FILE):
        net.load_state_dict(saved["classifier"])
    images = _test_images(cfg)
    with torch.no_grad():
        return float((net.eval()(images.x["test"]).argmax(1) == images.y["test"]).float().mean())


def _rbm_accuracy(cfg: Any, directory: Path, saved: dict[str, Any]) -> float:
    data = _data(directory)
    rbm = BernoulliRBM(data["n_visible"], cfg.model.n_hidden)
    with matching_checkpoint(directory / MODEL_FILE):
        rbm.load_state_dict(saved["rbm"])
    images = _test_images(cfg)
    with torch.no_grad():
        features = {name: rbm.hidden_probs(x) for name, x in images.x.items()}
    return logistic_accuracy(features, images.y, cfg.score)["test_accuracy"]


def eval_command(cfg: Any, directories: list[Path], options: EvalOptions) -> None:
    """`raydl eval` of one rbm, dbn or cf_rbm checkpoint."""
    if len(directories) > 1:
        raise ConfigError(f"eval: give one {cfg.kind} checkpoint (ensembles are for classify)")
    directory = directories[0]
    saved = ckpt.load_torch(directory / MODEL_FILE)
    if cfg.kind == "cf_rbm":
        recommend(cfg, directory, saved, options)
        return
    if cfg.kind == "dbn":
        accuracy, what = _dbn_accuracy(cfg, directory, saved), "the fine-tuned DBN"
    else:
        accuracy, what = _rbm_accuracy(cfg, directory, saved), "a logistic regression on the RBM's features"
    print(f"raydl eval: test accuracy of {what} {accuracy:.4f} ({directory})")
