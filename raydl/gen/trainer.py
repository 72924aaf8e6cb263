"""The generative kinds' entry points for the registry: `kind: gan` (DCGAN) and
`kind: vae` (VAE / autoencoder).

`GenerativeTrainer.fit` runs a whole run as one Ray Train fit of the epoch loop
(raydl.train.loop) over `GenerativeTask` (raydl.gen.tasks); `sample_command` is
`raydl sample`. The experiment file and its check step are
raydl.gen.experiment.

Quality scores come from a classifier trained by raydl's own CNN trainer: with
`score.classifier: auto` the driver first trains `raydl/experiments/cnn_digits.yaml` (or
cnn_mnist) on the same data into RUN_DIR/scorer, once per run (reused on --resume).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raydl import checkpoint as ckpt
from raydl.checkpoint import latest_epoch_checkpoint
from raydl.config import dump_yaml, load_experiment
from raydl.errors import CheckpointError, ConfigError
from raydl.gen.experiment import SCORER_EXPERIMENTS, GenerativeExperiment
from raydl.gen.models import ConvVAE, Generator, cycled_labels
from raydl.train.loop import run_fit
from raydl.train.plumbing import DATA_FILE, MODEL_FILE

TASK = "raydl.gen.tasks:GenerativeTask"
SCORER_DIR = "scorer"


def _scorer_checkpoint(cfg: GenerativeExperiment, run_dir: Path, progress: bool) -> str | None:
    """The classifier checkpoint that scores samples: the given one, or (auto) one trained
    now by raydl's CNN trainer into RUN_DIR/scorer and reused from there afterwards."""
    from raydl.registry import find_experiment
    from raydl.sl.trainer import SupervisedTrainer

    choice = cfg.score.classifier
    if choice is None or not cfg.scored:
        return None
    if choice != "auto":
        path = Path(choice).expanduser()
        found = latest_epoch_checkpoint(path) if (path / "checkpoints").is_dir() else path
        if found is None or not (found / MODEL_FILE).is_file() or not (found / DATA_FILE).is_file():
            raise ConfigError(f"score.classifier: {path} is not a classify checkpoint or run directory")
        return str(found.resolve())
    scorer_dir = run_dir / SCORER_DIR
    found = latest_epoch_checkpoint(scorer_dir) if scorer_dir.is_dir() else None
    if found is not None and (scorer_dir / "done").is_file():
        return str(found.resolve())
    shutil.rmtree(scorer_dir, ignore_errors=True)  # an interrupted scorer run starts over
    scorer_dir.mkdir(parents=True)
    d = cfg.data
    overrides = [f"data.source={d.source}", f"data.data_dir={d.data_dir}", f"data.download={d.download}",
                 f"data.seed={d.seed}", f"data.val_fraction={d.val_fraction}",
                 f"data.test_fraction={d.test_fraction}", f"scaling.workers={cfg.scaling.workers}",
                 f"scaling.cpus_per_worker={cfg.scaling.cpus_per_worker}", "log.tensorboard=false"]
    if cfg.score.classifier_epochs:
        overrides.append(f"train.epochs={cfg.score.classifier_epochs}")
    scorer_cfg = load_experiment(find_experiment(SCORER_EXPERIMENTS[d.source]), overrides)
    dump_yaml(scorer_cfg, scorer_dir / "config.yaml")
    if progress:
        print(f"raydl: training the scorer ({SCORER_EXPERIMENTS[d.source]}) into {scorer_dir}", flush=True)
    metrics = SupervisedTrainer.fit(scorer_cfg, scorer_dir, resume=False, progress=progress)
    (scorer_dir / "done").write_text(json.dumps({"test_accuracy": metrics.get("test_accuracy")}))
    found = latest_epoch_checkpoint(scorer_dir)
    assert found is not None
    return str(found.resolve())


class GenerativeTrainer:
    """The registry's algorithm class for generative kinds: `fit` runs a whole run."""

    @staticmethod
    def fit(cfg: GenerativeExperiment, run_dir: Path, *, resume: bool, progress: bool,
            callbacks: list[Any] | None = None) -> dict[str, Any]:
        """Train (after the scorer, if one is trained here) to the last epoch; its metrics."""
        return run_fit(cfg, run_dir, TASK, resume=resume, progress=progress, callbacks=callbacks,
                       options=lambda: {"scorer": _scorer_checkpoint(cfg, run_dir, progress)})


def load_generator(directory: Path) -> tuple[GenerativeExperiment, nn.Module]:
    """The experiment and trained generator (GAN) or VAE of an epoch checkpoint."""
    cfg = load_experiment(directory / "config.yaml")
    if not isinstance(cfg, GenerativeExperiment):
        raise ConfigError(f"{directory}: not a generative checkpoint (kind {cfg.kind}); allowed kinds: gan, vae")
    saved = ckpt.load_torch(directory / MODEL_FILE)
    m = cfg.model
    net: nn.Module
    if cfg.kind == "gan":  # the averaged generator, when trained with one, drew the scored samples
        net = Generator(m.latent, cfg.channels, cfg.image_size, m.g_width, generator_classes(directory))
        key = "generator_ema" if "generator_ema" in saved else "generator"
    else:
        net, key = ConvVAE(cfg.channels, cfg.image_size, m.latent, m.width, m.variational), "model"
    try:
        net.load_state_dict(saved[key])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{directory / MODEL_FILE}: does not match its config: {first}") from None
    return cfg, net.eval()


def generator_classes(directory: Path) -> int:
    """The classes a checkpoint's generator is conditioned on (data.json; 0: unconditional)."""
    info = directory / DATA_FILE
    return int(json.loads(info.read_text()).get("classes", 0)) if info.is_file() else 0


def sample_images(cfg: GenerativeExperiment, net: nn.Module, n: int, seed: int = 0) -> torch.Tensor:
    """n new images in [0, 1] from a loaded generator or VAE decoder; a conditional
    generator draws the classes in turn (0, 1, ..., 0, 1, ...)."""
    if cfg.kind == "vae" and not cfg.model.variational:
        raise ConfigError("sample: a plain autoencoder has no prior to sample from; "
                          "train with model.variational: true")
    z = torch.randn(n, cfg.model.latent, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        if isinstance(net, ConvVAE):
            return torch.sigmoid(net.decode(z))
        return (net(z, cycled_labels(n, net.classes)) + 1) / 2


def sample_command(directory: Path, n: int, seed: int, nrow: int, out: Path) -> None:
    """`raydl sample`: a PNG grid of n new images from a gan / vae checkpoint."""
    from raydl.gen.scoring import save_grid

    cfg, net = load_generator(directory)
    classes = getattr(net, "classes", 0)
    save_grid(sample_images(cfg, net, n, seed=seed), out, nrow=nrow)
    if classes and nrow % classes:
        print(f"raydl sample: the images cycle through {classes} classes; --nrow {classes} puts one class per column")
    print(f"raydl sample: {n} images of {cfg.title} from {directory} in {out}")
