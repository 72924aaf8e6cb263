"""Generative kinds on a real Ray Train: 2 CPU workers, one short epoch on data made here."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raydl.errors import ConfigError
from tests.made_data import image_folder, write_idx
from raydl.metrics import read_metrics
from raydl.run import train

pytestmark = pytest.mark.usefixtures("ray_session")

QUIET = ["log.tensorboard=false", "log.curve=false", "scaling.workers=2"]
SMALL_GAN = ["model.g_width=16", "model.d_width=16", "train.batch_size=16", "train.instance_noise=0.1"]




def _made_mnist(root: Path) -> Path:
    """torchvision's raw MNIST files holding made-up digits: a bar whose row is the label."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 240), ("t10k", 60)):
        labels = rng.integers(0, 10, n)
        images = np.zeros((n, 28, 28), np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def test_dcgan_epoch_with_scores_then_resume_and_sample(tmp_path: Path) -> None:
    data = _made_mnist(tmp_path / "data")
    args = QUIET + SMALL_GAN + ["train.epochs=1", f"data.data_dir={data}", "score.classifier_epochs=1",
                                "score.samples=60", "score.grid=16"]
    first = train("dcgan_mnist", args, out=tmp_path / "runs", progress=False, echo=False)
    m, run_dir = first.metrics, first.run_dir
    assert m["workers"] == 2 and m["epoch"] == 1 and m["restores"] == 0
    assert m["replica_divergence"] == 0.0  # DDP kept G and D identical on both workers
    assert m["d_steps"] == m["g_steps"] == 216 // 2 // 16  # per worker: its shard of the 90% train split / batch
    assert 0 < m["d_real"] < 1 and 0 < m["d_fake"] < 1
    # the scores of 60 samples beside those of 60 held-out real images
    assert 1.0 <= m["classifier_score"] <= 10.0 and 1.0 <= m["real_classifier_score"] <= 10.0
    assert 0.0 <= m["class_coverage"] <= 1.0 and m["real_class_coverage"] > 0.5
    assert m["real_frechet_distance"] < m["frechet_distance"]  # a one-epoch generator vs real images
    # the scorer was trained by raydl's CNN trainer into the run directory
    done = run_dir / "scorer" / "done"
    assert done.is_file() and list((run_dir / "scorer" / "checkpoints").glob("epoch_*/model.pt"))
    with Image.open(run_dir / "samples" / "epoch_000001.png") as grid:
        assert grid.size == (8 * 30 + 2, 2 * 30 + 2)  # 16 images, 8 per row, 2 px padding
    assert (first.checkpoint / "model.pt").is_file()

    stamp = done.stat().st_mtime_ns
    second = train(resume=run_dir, overrides=["train.epochs=2"], progress=False, echo=False)
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2]
    assert second.metrics["restores"] == 1 and second.metrics["replica_divergence"] == 0.0
    assert done.stat().st_mtime_ns == stamp  # the cached scorer was reused, not retrained
    assert json.loads((second.checkpoint / "state.json").read_text())["epoch"] == 2

    out = tmp_path / "new.png"
    cli = subprocess.run([sys.executable, "-m", "raydl", "sample", str(run_dir), "--n", "10", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert "10 images" in cli.stdout
    with Image.open(out) as img:
        assert img.size == (8 * 30 + 2, 2 * 30 + 2)




def test_dcgan_with_diff_augment_and_weight_average_keeps_replicas_identical(tmp_path: Path) -> None:
    import torch

    from raydl.gen.trainer import load_generator

    run = train("dcgan_digits", QUIET + SMALL_GAN + [
        "train.epochs=1", "train.batch_size=64", "train.diff_augment=color,translation,cutout",
        "train.g_ema=0.99", "score.classifier=null", "score.grid=0"],
        out=tmp_path / "runs", progress=False, echo=False)
    m = run.metrics
    # each worker augments its own images with its own randomness; the gradients, the
    # weights and their average still agree on both workers
    assert m["replica_divergence"] == 0.0 and m["g_steps"] > 0
    saved = torch.load(run.checkpoint / "model.pt", weights_only=True)
    assert saved["ema_updates"] == m["g_steps"]  # one update per G step
    _, net = load_generator(run.checkpoint)  # `raydl sample` draws with the average
    assert all(torch.equal(a, saved["generator_ema"][k]) for k, a in net.state_dict().items())
    assert any(not torch.equal(saved["generator"][k], v) for k, v in saved["generator_ema"].items())


def test_conditional_dcgan_draws_and_scores_every_class(tmp_path: Path) -> None:
    data = _made_mnist(tmp_path / "data")
    run = train("dcgan_mnist", QUIET + SMALL_GAN + [
        "model.conditional=true", "train.epochs=1", f"data.data_dir={data}", "score.classifier_epochs=1",
        "score.samples=60", "score.grid=20"], out=tmp_path / "runs", progress=False, echo=False)
    m = run.metrics
    # the projection discriminator's class vectors are all-reduced like every other weight
    assert m["replica_divergence"] == 0.0 and m["g_steps"] == 216 // 2 // 16
    # the scorer's agreement with the classes the 60 samples were drawn as (6 of each)
    assert 0.0 <= m["label_accuracy"] <= 1.0 and "real_label_accuracy" not in m
    assert 1.0 <= m["classifier_score"] <= 10.0
    assert json.loads((run.checkpoint / "data.json").read_text())["classes"] == 10
    with Image.open(run.run_dir / "samples" / "epoch_000001.png") as grid:
        assert grid.size == (10 * 30 + 2, 2 * 30 + 2)  # 20 images, one class per column
    out = tmp_path / "new.png"
    cli = subprocess.run([sys.executable, "-m", "raydl", "sample", str(run.run_dir), "--n", "16", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert "--nrow 10 puts one class per column" in cli.stdout
    with Image.open(out) as img:
        assert img.size == (8 * 30 + 2, 2 * 30 + 2)


def test_denoising_vae_epoch_on_made_colour_images(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "images")
    run = train("vae_digits", QUIET + [
        "train.epochs=1", "data.source=folder", f"data.data_dir={folder}", "data.image_size=32",
        "score.classifier=null", "score.grid=8", "train.denoise_std=0.2", "train.batch_size=8",
    ], out=tmp_path / "runs", progress=False, echo=False)
    m = run.metrics
    assert m["epoch"] == 1 and m["replica_divergence"] == 0.0
    assert m["train_kl"] > 0 and m["train_recon"] > 0  # both terms of the ELBO are trained
    assert 0 < m["val_loss"] < m["train_loss"] * 3
    with Image.open(run.run_dir / "reconstructions" / "epoch_000001.png") as grid:
        assert grid.mode == "RGB" and grid.size[0] == 8 * 34 + 2  # originals beside reconstructions
    assert (run.run_dir / "samples" / "epoch_000001.png").is_file()
    saved = json.loads((run.checkpoint / "data.json").read_text())
    assert saved == {"channels": 3, "image_size": 32, "latent": 16}


def test_missing_dataset_is_one_line_and_leaves_no_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mnist is not in .*nowhere.*put torchvision's MNIST files there"):
        train("vae_mnist", QUIET + [f"data.data_dir={tmp_path / 'nowhere'}"], out=tmp_path / "runs",
              progress=False, echo=False)
    # refused by the check step, before the output directory is even made
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
