"""The epoch loop's task protocol without Ray: each family's task in one process (a
worker group of one), driven by the loop's own training pass on a small image folder."""

import json
import math
from pathlib import Path

import pytest
import torch

from raydl.config import load_experiment
from raydl.errors import TrainingError
from raydl.gen.tasks import GenerativeTask
from raydl.sl.tasks import SupervisedTask
from raydl.train.loop import Counters, EarlyStop, Watched, Worker, _train
from tests.made_data import image_folder

# 48 images, 7 for validation and 7 for test: 34 to train on, four full batches of 8
SMALL_CNN = ["model.channels=[4]", "model.hidden=8", "train.batch_size=8", "scaling.workers=1"]
SMALL_GAN = ["train.batch_size=8", "scaling.workers=1", "model.latent=8", "data.image_size=32",
             "score.classifier=null", "score.grid=4", "model.g_width=8", "model.d_width=8"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """`--set`s that read two classes of 24 32x32 RGB images."""
    return ["data.source=folder", f"data.data_dir={image_folder(tmp_path_factory.mktemp('images'))}"]


def _worker(cfg: object, run_dir: Path) -> Worker:
    return Worker(cfg, run_dir, rank=0, world=1, device=torch.device("cpu"), group=False)


def test_classify_task_trains_an_epoch_and_a_fresh_task_restores_its_state(
    folder: list[str], tmp_path: Path
) -> None:
    cfg = load_experiment("cnn_digits", SMALL_CNN + folder)
    worker = _worker(cfg, tmp_path)
    torch.manual_seed(0)
    task = SupervisedTask(worker)
    task.begin_epoch(1)
    totals, seconds = _train(task, worker, Counters(epoch=1))
    assert totals["n"] == 4 * 8 and 0 <= totals["correct"] <= totals["n"] and seconds > 0
    metrics = task.epoch_metrics(totals)
    assert set(metrics) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"}
    assert metrics["train_loss"] == pytest.approx(totals["loss"] / totals["n"])
    assert task.closing_metrics(1, last=False) == {}
    assert set(task.closing_metrics(1, last=True)) == {"test_loss", "test_accuracy"}

    saved = task.state()
    assert set(saved) == {"model", "optimizer", "scheduler", "warmup"}
    restored = SupervisedTask(worker)
    restored.load(saved, 1)
    restored.model.eval()  # the first task is in eval mode since its validation
    x = next(iter(task.batches()))[0]
    assert torch.equal(task.model(x), restored.model(x))
    task.save_extra(tmp_path)
    assert json.loads((tmp_path / "data.json").read_text())["num_classes"] == 2


def test_a_diverged_model_stops_the_epoch_or_skips_every_update(folder: list[str], tmp_path: Path) -> None:
    for nonfinite in ("stop", "skip"):
        cfg = load_experiment("cnn_digits", SMALL_CNN + folder + [f"train.nonfinite={nonfinite}"])
        worker = _worker(cfg, tmp_path)
        task = SupervisedTask(worker)
        with torch.no_grad():
            next(task.model.parameters()).fill_(float("nan"))
        before = [p.clone() for p in task.model.parameters()][1:]
        counters = Counters(epoch=3)
        if nonfinite == "stop":
            with pytest.raises(TrainingError, match=r"^classify: non-finite loss or gradient at epoch 3, "
                                                    r"batch 1 \(loss nan, grad_norm nan\); set train.nonfinite"):
                _train(task, worker, counters)
            continue
        totals, _ = _train(task, worker, counters)
        assert counters.skipped == 4 and totals == {"loss": 0.0, "n": 0.0, "correct": 0.0}
        params = list(task.model.parameters())
        assert torch.isnan(params[0]).all() and all(torch.equal(a, b) for a, b in zip(params[1:], before))


def test_gan_task_steps_d_every_batch_and_g_every_n_critic_batches(folder: list[str], tmp_path: Path) -> None:
    cfg = load_experiment("dcgan_digits", SMALL_GAN + folder + ["train.n_critic=2"])
    worker = _worker(cfg, tmp_path)
    task = GenerativeTask(worker)
    task.start(0, restored=False)
    totals, _ = _train(task, worker, Counters(epoch=1))
    assert totals["images"] == 4 * 8 and totals["d_steps"] == 4 and totals["g_steps"] == 2
    metrics = task.epoch_metrics(totals)
    assert metrics["d_steps"] == 4 and metrics["g_steps"] == 2 and metrics["replica_divergence"] == 0.0
    assert 0 < metrics["d_real"] < 1 and 0 < metrics["d_fake"] < 1 and math.isfinite(metrics["g_loss"])
    assert task.closing_metrics(1, last=True) == {}  # no scorer named: grids only
    assert (tmp_path / "samples" / "epoch_000001.png").is_file()
    assert set(task.state()) == {"generator", "discriminator", "opt_g", "opt_d", "batches_seen"}
    task.save_extra(tmp_path)
    # dcgan_digits is class-conditional: on this folder, its 2 class sub-folders
    assert json.loads((tmp_path / "data.json").read_text()) == {"channels": 3, "image_size": 32, "latent": 8,
                                                                "classes": 2}


def test_plain_autoencoder_task_validates_and_grids_reconstructions_only(
    folder: list[str], tmp_path: Path
) -> None:
    cfg = load_experiment("vae_digits", SMALL_GAN[:6] + folder + ["model.width=8", "model.variational=false"])
    worker = _worker(cfg, tmp_path)
    task = GenerativeTask(worker)
    task.start(0, restored=False)
    totals, _ = _train(task, worker, Counters(epoch=1))
    metrics = task.epoch_metrics(totals)
    assert {"train_loss", "val_loss", "val_recon"} <= set(metrics) and metrics["train_kl"] == 0.0
    assert task.closing_metrics(2, last=False) == {}
    assert (tmp_path / "reconstructions" / "epoch_000002.png").is_file()
    assert not (tmp_path / "samples").exists()  # no prior to sample from


def test_early_stop_counts_epochs_without_improvement() -> None:
    stop = EarlyStop(Watched("val_accuracy", "max", patience=2))
    assert [stop.update({"val_accuracy": v}) for v in (0.5, 0.6, 0.6, 0.55)] == [False, False, False, True]
    assert stop.state() == {"best": 0.6, "stale": 2}
    never = EarlyStop(Watched("val_loss", "min", patience=0))
    assert not any(never.update({"val_loss": v}) for v in (1.0, 2.0, 3.0)) and never.best == 1.0
    assert not never.update({}) and never.stale == 3  # an epoch without the metric is no improvement
    # state.json's keys, in the order the supervised checkpoints always had them
    assert list(Counters(2, 1, 0, stop).state()) == ["epoch", "best", "stale", "restores", "nonfinite_skipped",
                                                     "train_seconds"]
    assert list(Counters(2, 1, 0).state()) == ["epoch", "restores", "nonfinite_skipped", "train_seconds"]
