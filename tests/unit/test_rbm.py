"""RBM kinds without Ray: the CD gradients against hand and exact values, PCD chains and a
DBN's phases through a save and load, the CF-RBM leaving missing ratings out, the
MovieLens readers and the one-line errors of bad input."""

import contextlib
import io
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from raydl.cli import main
from raydl.config import load_experiment
from raydl.errors import ConfigError
from raydl.rbm.models import BernoulliRBM, SoftmaxRBM, one_hot_ratings
from raydl.rbm.ratings import read_ratings, split_ratings
from raydl.rbm.tasks import DBNTask, RBMTask
from raydl.train.loop import Counters, Worker, _train


def _rbm(weight: list[list[float]], visible: list[float], hidden: list[float]) -> BernoulliRBM:
    rbm = BernoulliRBM(len(visible), len(hidden))
    with torch.no_grad():
        rbm.weight.copy_(torch.tensor(weight))
        rbm.visible_bias.copy_(torch.tensor(visible))
        rbm.hidden_bias.copy_(torch.tensor(hidden))
    return rbm


def test_cd1_gradient_matches_a_hand_computation_with_fixed_samples() -> None:
    # Biases of +-50 saturate every unit, so the samples are fixed: h = (1, 0), v1 = (1, 0, 1).
    rbm = _rbm([[0.0] * 3] * 2, [50.0, -50.0, 50.0], [50.0, -50.0])
    v0 = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    cd = rbm.cd(v0, k=1, generator=torch.Generator().manual_seed(0))
    d_weight, d_visible, d_hidden = cd.ascent
    # <h v>_data - <h v>_model with p(h | v) = (1, 0) for every v: row 0 is mean(v0) - v1
    assert torch.allclose(d_weight, torch.tensor([[-0.5, 1.0, -0.5], [0.0, 0.0, 0.0]]))
    assert torch.allclose(d_visible, torch.tensor([-0.5, 1.0, -0.5]))
    assert torch.allclose(d_hidden, torch.zeros(2))
    assert torch.equal(cd.chains, torch.tensor([[1.0, 0.0, 1.0]] * 2))


def _exact_gradient(rbm: BernoulliRBM, v0: torch.Tensor) -> list[torch.Tensor]:
    """The log-likelihood gradient of a tiny RBM, its model expectations by enumeration."""
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=v0.shape[1])))
    p = torch.softmax(-rbm.free_energy(states), 0)
    ph_data, ph_model = rbm.hidden_probs(v0), rbm.hidden_probs(states)
    return [ph_data.t() @ v0 / len(v0) - (ph_model * p[:, None]).t() @ states,
            v0.mean(0) - p @ states, ph_data.mean(0) - p @ ph_model]


@torch.no_grad()
def test_long_chains_give_the_exact_log_likelihood_gradient_and_cd_lowers_the_free_energy() -> None:
    gen = torch.Generator().manual_seed(0)
    rbm = _rbm(torch.randn(2, 3, generator=gen).tolist(), [0.3, -0.2, 0.1], [-0.4, 0.5])
    v0 = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    exact = _exact_gradient(rbm, v0)
    # 20,000 persistent chains run 30 steps: the negative phase samples the model
    chains = torch.bernoulli(torch.full((20_000, 3), 0.5), generator=gen)
    estimate = rbm.cd(v0, k=30, generator=gen, chains=chains).ascent
    for got, want in zip(estimate, exact):
        assert torch.allclose(got, want, atol=0.02), (got, want)
    before = rbm.free_energy(v0).mean() - _log_partition(rbm)
    for _ in range(200):  # CD-1 ascent: the data's negative log-likelihood goes down
        for p, g in zip(rbm.parameters(), rbm.cd(v0, k=1, generator=gen).ascent):
            p += 0.1 * g
    assert rbm.free_energy(v0).mean() - _log_partition(rbm) < before - 0.3


def _log_partition(rbm: BernoulliRBM) -> torch.Tensor:
    """log sum over v of exp(-F(v)) of a tiny RBM: F(v) + log Z is -log p(v)."""
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=rbm.weight.shape[1])))
    return -torch.logsumexp(-rbm.free_energy(states), 0)


def _worker(cfg: object) -> Worker:
    return Worker(cfg, Path("."), rank=0, world=1, device=torch.device("cpu"), group=False)


def _epochs(task: object, worker: Worker, epochs: range) -> None:
    for epoch in epochs:
        task.begin_epoch(epoch)
        _train(task, worker, Counters(epoch=epoch))
        task.epoch_metrics({"recon": 0.0, "pixels": 1.0, "examples": 1.0, "loss": 0.0, "correct": 0.0})


def test_pcd_chains_go_into_the_checkpoint_and_a_restored_task_continues_exactly() -> None:
    cfg = load_experiment("rbm_digits", ["model.n_hidden=8", "train.batch_size=50", "scaling.workers=1"])
    worker = _worker(cfg)
    task = RBMTask(worker)
    _epochs(task, worker, range(1, 2))
    saved = task.state()
    assert saved["chains"].shape == (1, 50, 64)  # (workers, chains per worker, visible units)
    assert torch.equal(saved["chains"][0], task.learner.chains)
    restored = RBMTask(worker)
    restored.load(saved, 1)
    _epochs(task, worker, range(2, 4))
    _epochs(restored, worker, range(2, 4))
    for a, b in zip(task.learner.rbm.parameters(), restored.learner.rbm.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(task.learner.chains, restored.learner.chains)
    assert not torch.equal(task.learner.chains, saved["chains"][0])  # the chains moved on


def test_a_dbn_restored_in_pretraining_goes_through_its_phases_as_one_that_never_stopped() -> None:
    cfg = load_experiment("dbn_digits", ["model.hidden_layers=[16,8]", "train.pretrain_epochs=1",
                                         "train.epochs=3", "train.batch_size=100", "scaling.workers=1"])
    worker = _worker(cfg)
    task = DBNTask(worker)
    _epochs(task, worker, range(1, 2))
    saved = task.state()
    assert set(saved) == {"rbms", "learner"}
    restored = DBNTask(worker)
    restored.load(saved, 1)
    _epochs(task, worker, range(2, 4))  # epoch 2 pretrains the second RBM, epoch 3 fine-tunes
    _epochs(restored, worker, range(2, 4))
    assert task.layer is None and set(task.state()) == {"rbms", "classifier", "optimizer"}
    for a, b in zip(task.classifier.parameters(), restored.classifier.parameters()):
        assert torch.equal(a, b)
    assert 0 <= task.epoch_metrics({"loss": 0.0, "correct": 0.0, "examples": 1.0})["val_accuracy"] <= 1


def test_a_missing_rating_has_no_visible_unit_and_gets_no_gradient() -> None:
    rbm = SoftmaxRBM(n_items=4, k=5, n_hidden=3, generator=torch.Generator().manual_seed(0))
    items = torch.arange(4)
    stars = torch.tensor([[5, 0, 3, 0], [0, 0, 1, 2]])  # item 1: nobody; item 3: the second user only
    hidden = rbm.hidden_probs(one_hot_ratings(stars, 5), items)
    with torch.no_grad():
        rbm.weight[1] = 100.0  # the weights of an unrated item do not reach the hidden units
        rbm.weight[3] += 7.0
    first = rbm.hidden_probs(one_hot_ratings(stars[:1], 5), items)
    assert torch.equal(first, hidden[:1]) and not torch.equal(rbm.hidden_probs(one_hot_ratings(stars, 5), items)[1], hidden[1])
    cd = rbm.cd(stars, items, k=2, generator=torch.Generator().manual_seed(1))
    assert (cd.chains.sum(-1) == (stars > 0)).all()  # one-hot where rated, nothing where missing
    d_weight, d_visible, _ = cd.ascent
    assert not d_weight[1].any() and not d_visible[1].any()
    alone = rbm.cd(stars[:1], items, k=2, generator=torch.Generator().manual_seed(1)).ascent
    assert not alone[0][3].any() and not alone[1][3].any()  # the first user's missing item 3


def test_both_movielens_formats_read_alike_with_half_stars_rounded_up(tmp_path: Path) -> None:
    udata = tmp_path / "u.data"
    udata.write_text("196\t242\t3\t881250949\n186\t302\t1\t891717742\n196\t302\t5\t0\n")
    csv = tmp_path / "ratings.csv"
    csv.write_text("userId,movieId,rating,timestamp\n196,242,2.5,881250949\n186,302,0.5,1\n196,302,5.0,0\n")
    a, b = read_ratings(udata), read_ratings(csv)
    assert a.user_ids.tolist() == b.user_ids.tolist() == [186, 196] and a.item_ids.tolist() == [242, 302]
    assert a.users.tolist() == b.users.tolist() == [1, 0, 1] and a.items.tolist() == [0, 1, 1]
    assert a.stars.tolist() == b.stars.tolist() == [3, 1, 5]  # 2.5 -> 3, 0.5 -> 1


@pytest.mark.parametrize(("text", "message"), [
    ("user,item,rating\n1,2,3\n", r"line 1 is 'user,item,rating'; expected ML-100K's u.data"),
    ("1\t2\t3\t0\n1\t3\tfive\t0\n", r"line 2 is '1\\t3\\tfive\\t0'; expected"),
    ("userId,movieId,rating,timestamp\n1,2,4,0\n1,3\n", r"line 3 is '1,3'; expected"),
    ("1\t2\t6\t0\n", r"line 1: rating 6 is not allowed; allowed: 1 to 5 stars, or half stars"),
    ("userId,movieId,rating,timestamp\n1,2,4,0\n2,2,2.25,0\n", r"line 3: rating 2.25 is not allowed"),
    ("userId,movieId,rating,timestamp\n1,2,0,0\n", r"line 2: rating 0 is not allowed"),
    ("1\t2\t3\t0\n1\t3\t3\t0\n1\t2\t4\t0\n", r"line 3: user 1 rated item 2 before"),
    ("1.5\t2\t3\t0\n", r"line 1: user id 1.5 is not a whole number"),
    ("userId,movieId,rating,timestamp\n", r"holds no ratings"),
])
def test_bad_ratings_files_are_one_line_errors(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "ratings"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        read_ratings(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"data.ratings_file: {path}")


def test_a_split_keeps_validation_ratings(tmp_path: Path) -> None:
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u}\t{i}\t3\t0\n" for u in range(1, 11) for i in range(1, 11)))
    splits = split_ratings(read_ratings(path), 0.1, 0.2, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (70, 10, 20)
    assert sorted(np.concatenate([splits.train, splits.val, splits.test]).tolist()) == list(range(100))
    with pytest.raises(ConfigError, match="leave no validation"):
        split_ratings(read_ratings(path), 0.001, 0.1, seed=0)


@pytest.mark.parametrize(("name", "overrides", "message"), [
    ("rbm_digits", ["train.cd_k=0"], r"^train\.cd_k: expected a number >= 1, got 0"),
    ("rbm_digits", ["data.source=text"], r"^data\.source: 'text' is not images; allowed: digits, mnist"),
    ("rbm_digits", ["train.amp=true"], r"^train\.amp: rbm trains by CD in float32; allowed: false"),
    ("dbn_digits", ["train.epochs=20"], r"^train\.epochs: 20 leaves no fine-tuning after 2 layers x 10 "
                                        r"pretraining epochs; allowed: > 20"),
    ("dbn_digits", ["model.hidden_layers=[]"], r"^model\.hidden_layers: empty"),
    ("rbm_movielens", ["train.persistent=true"], r"^train\.persistent: cf_rbm has one RBM per user"),
    ("rbm_movielens", ["data.val_fraction=0.5", "data.test_fraction=0.5"], r"^data\.test_fraction: with val_fraction"),
])
def test_bad_rbm_experiments_are_one_line_errors(name: str, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_experiment(name, overrides)
    assert "\n" not in str(info.value)


def test_check_without_the_ratings_file_names_where_to_put_it(tmp_path: Path) -> None:
    err = io.StringIO()
    missing = tmp_path / "ml-100k" / "u.data"
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["check", "rbm_movielens", "--set", f"data.ratings_file={missing}"]) == 2
    assert err.getvalue() == (f"raydl: error: data.ratings_file: {missing} not found; put MovieLens ratings "
                              "there (ML-100K's u.data from ml-100k.zip, or ML-latest's ratings.csv) or set "
                              "data.ratings_file\n")
