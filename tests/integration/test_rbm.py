"""RBM kinds on a real Ray Train: 2 CPU workers averaging their CD gradients by hand (the
replicas stay identical), an exact resume with PCD chains, a DBN through its phases and a
CF-RBM that finds a planted taste structure, each then read back by `raydl eval`."""

from pathlib import Path

import numpy as np
import pytest
import torch

from raydl.cli import main
from raydl.metrics import read_metrics
from raydl.rbm.ratings import planted_ratings, write_udata
from raydl.run import train

pytestmark = pytest.mark.usefixtures("ray_session")

QUIET = ["log.tensorboard=false", "log.curve=false", "scaling.workers=2", "checkpoint.every=1"]
SMALL_RBM = QUIET + ["model.n_hidden=32", "train.batch_size=25", "score.every=0"]


def _model(checkpoint: Path) -> dict:
    return torch.load(checkpoint / "model.pt", weights_only=True)


def test_pcd_on_two_workers_keeps_the_replicas_equal_and_resumes_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    straight = train("rbm_digits", SMALL_RBM + ["train.epochs=2"], out=tmp_path / "a", progress=False, echo=False)
    rows = read_metrics(straight.run_dir)
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["replica_divergence"] == 0.0 for r in rows)
    assert rows[-1]["workers"] == 2 and rows[-1]["train_recon_error"] < rows[0]["train_recon_error"]
    assert 0.6 < rows[-1]["test_accuracy"] <= 1.0 and "test_accuracy" not in rows[0]  # scored last only
    first = train("rbm_digits", SMALL_RBM + ["train.epochs=1"], out=tmp_path / "b", progress=False, echo=False)
    resumed = train(resume=first.run_dir, overrides=["train.epochs=2"], progress=False, echo=False)
    assert resumed.metrics["restores"] == 1 and resumed.metrics["epoch"] == 2
    want, got = _model(straight.checkpoint), _model(resumed.checkpoint)
    assert got["chains"].shape == (2, 25, 64)  # both workers' persistent chains
    assert torch.equal(got["chains"], want["chains"])
    for name, tensor in want["rbm"].items():
        assert torch.equal(got["rbm"][name], tensor), name
    for a, b in zip(want["optimizer"]["state"].values(), got["optimizer"]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert resumed.metrics["test_accuracy"] == rows[-1]["test_accuracy"]
    capsys.readouterr()
    assert main(["eval", str(straight.run_dir)]) == 0  # the same regression on the same features
    assert f"features {rows[-1]['test_accuracy']:.4f}" in capsys.readouterr().out


def test_dbn_pretrains_layer_by_layer_then_fine_tunes_under_ddp(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # 4 CD epochs per RBM, 4 of fine-tuning; momentum 0.9 gets this far in so few epochs
    run = train("dbn_digits", QUIET + ["model.hidden_layers=[64,32]", "train.pretrain_epochs=4", "train.epochs=12",
                                       "train.batch_size=10", "train.momentum=0.9", "checkpoint.every=0"],
                out=tmp_path, progress=False, echo=False)
    rows = read_metrics(run.run_dir)
    assert [r.get("layer") for r in rows] == [1] * 4 + [2] * 4 + [None] * 4
    assert all(r["replica_divergence"] == 0.0 for r in rows)  # CD by hand, then DDP
    assert "val_accuracy" not in rows[7] and rows[-1]["val_accuracy"] > 0.6
    assert rows[3]["train_recon_error"] < rows[0]["train_recon_error"]
    assert 0.6 < run.metrics["test_accuracy"] <= 1.0
    capsys.readouterr()
    assert main(["eval", str(run.run_dir)]) == 0
    assert f"test accuracy of the fine-tuned DBN {run.metrics['test_accuracy']:.4f}" in capsys.readouterr().out


def test_cf_rbm_beats_the_item_means_on_planted_tastes_and_recommends_unrated_items(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rows = planted_ratings(n_users=200, n_items=100, rank=2, observed=0.3, seed=0)
    ratings = write_udata(tmp_path / "ml" / "u.data", rows)
    run = train("rbm_movielens", QUIET + [f"data.ratings_file={ratings}", "train.epochs=15", "train.batch_size=8"],
                out=tmp_path / "runs", progress=False, echo=False)
    history = read_metrics(run.run_dir)
    assert all(r["replica_divergence"] == 0.0 for r in history)
    m = run.metrics
    assert m["val_rmse"] < 0.85 * m["baseline_val_rmse"] and m["test_rmse"] < 0.85 * m["baseline_test_rmse"]
    capsys.readouterr()
    assert main(["eval", str(run.run_dir), "--top", "3", "--user", "7"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("user 7: ") and out[-1].startswith("raydl eval: top 3 unrated items of 1 users")
    recommended = [int(part.split(" (")[0]) for part in out[0][len("user 7: "):].split(", ")]
    rated = set(rows[rows[:, 0] == 7, 1].tolist())
    assert len(recommended) == 3 and not rated & set(recommended)
    scores = [float(part.split("(")[1].rstrip(")")) for part in out[0].split(", ")]
    assert scores == sorted(scores, reverse=True) and all(1 <= s <= 5 for s in scores)
    assert np.isfinite(scores).all()
    assert main(["eval", str(run.run_dir), "--user", "999"]) == 2
    assert capsys.readouterr().err == ("raydl: error: --user 999: no such user in the ratings file; its users "
                                       "are 1 to 200 (200 of them)\n")
