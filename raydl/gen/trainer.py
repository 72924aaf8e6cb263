"""Generative kinds on Ray Train: `kind: gan` (DCGAN) and `kind: vae` (VAE / autoencoder).

The same infrastructure as the supervised kinds (raydl/sl/trainer.py): a TorchTrainer over
`scaling.workers` workers, checkpoints under RUN_DIR/checkpoints/epoch_NNNNNN, restart
from the newest one, metrics rows written by rank 0. Per worker:

    G, D = prepare_model(Generator), prepare_model(Discriminator)    # or the VAE
    for epoch:
        for each real batch (DistributedSampler shard):
            D step; every n_critic-th batch also a G step           # raydl/gen/gan.py
        all-reduce the loss sums; check that every worker holds the same weights
        rank 0: grid PNG of samples from fixed noise (and reconstructions for the VAE),
                quality scores next to the real-data reference, checkpoint

Quality scores come from a classifier trained by raydl's own CNN trainer: with
`score.classifier: auto` the driver first trains `experiments/cnn_digits.yaml` (or
cnn_mnist) on the same data into RUN_DIR/scorer, once per run (reused on --resume).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

from raydl import registry
from raydl.checkpoint import latest_epoch_checkpoint
from raydl.config import CheckpointConfig, LogConfig, dump_yaml, param, section, to_dict
from raydl.errors import CheckpointError, ConfigError
from raydl.gen.gan import GANLossConfig, discriminator_step, generator_step, unwrap
from raydl.gen.models import SIZES, ConvVAE, Discriminator, Generator, vae_loss
from raydl.nn import Nonfinite, guarded_step, nonfinite_error
from raydl.sl.data import DataConfig, check_data, image_splits, shard
from raydl.sl.trainer import (
    MODEL_FILE,
    STATE_FILE,
    ScalingSection,
    _all_reduce,
    check_resources,
    report_epoch,
    restore_epoch_checkpoint,
    run_torch_trainer,
    worker_setup,
)

NATIVE_SIZE = {"digits": 8, "mnist": 28, "fashion_mnist": 28, "cifar10": 32, "folder": 64}
NATIVE_CHANNELS = {"digits": 1, "mnist": 1, "fashion_mnist": 1, "cifar10": 3, "folder": 3}
SCORER_EXPERIMENTS = {"digits": "cnn_digits", "mnist": "cnn_mnist", "fashion_mnist": "cnn_mnist"}
SCORER_DIR = "scorer"
DATA_FILE = "data.json"


@dataclass
class GenDataConfig(DataConfig):
    """The images to learn (pixels are scaled by the model, not standardized)."""

    normalize: bool = param(False, "must stay false: pixels go to [-1, 1] (gan) or [0, 1] (vae)")


@dataclass
class GenModelConfig:
    """Network sizes."""

    latent: int = param(100, "latent dimensions: GAN noise z, VAE code", ge=1)
    g_width: int = param(64, "gan: generator channels before its output layer (DCGAN's ngf)", ge=1)
    d_width: int = param(64, "gan: discriminator channels after its input layer (DCGAN's ndf)", ge=1)
    d_norm: Literal["batch", "spectral"] = param(
        "batch", "gan: discriminator normalization, DCGAN's BatchNorm or spectral norm (Miyato et al. 2018)")
    width: int = param(32, "vae: channels of the first encoder layer", ge=1)
    variational: bool = param(True, "vae: a VAE (reparameterized z, KL term); false: a plain autoencoder")


@dataclass
class GenTrainConfig:
    """Optimization (Adam, as in the DCGAN paper)."""

    epochs: int = param(25, "passes over the training images", ge=1)
    batch_size: int = param(64, "images per batch per worker", ge=1)
    lr: float = param(2e-4, "Adam learning rate (the generator's, or the VAE's)", gt=0)
    d_lr: float | None = param(None, "gan: discriminator learning rate (none: lr)", gt=0)
    beta1: float = param(0.5, "Adam beta1 (DCGAN: 0.5)", ge=0, lt=1)
    beta2: float = param(0.999, "Adam beta2", ge=0, lt=1)
    n_critic: int = param(1, "gan: discriminator steps per generator step", ge=1)
    label_smoothing: float = param(0.0, "gan: one-sided label smoothing, real targets 1 - s", ge=0, lt=0.5)
    g_loss: Literal["non_saturating", "minimax"] = param(
        "non_saturating", "gan: generator loss, -log D(G(z)) or the paper's log(1 - D(G(z)))")
    instance_noise: float = param(
        0.0, "gan: std of Gaussian noise on every image the discriminator sees (small datasets)", ge=0)
    beta: float = param(1.0, "vae: weight of the KL term (beta-VAE)", ge=0)
    denoise_std: float = param(0.0, "vae: Gaussian noise on the inputs, clean targets (denoising AE)", ge=0)
    amp: bool = param(False, "bfloat16 autocast (GPU workers only)")
    threads_per_worker: int = param(1, "torch threads per worker (0: torch's default)", ge=0)
    nonfinite: Nonfinite = param(
        "stop", "a NaN/inf gradient: stop the run with an error, or skip that batch's updates "
        "(counted in nonfinite_skipped)")


GAN_ONLY = ("d_lr", "n_critic", "label_smoothing", "g_loss", "instance_noise")
VAE_ONLY = ("beta", "denoise_std")


@dataclass
class ScoreConfig:
    """Sample grids and quality scores."""

    classifier: str | None = param(
        "auto", "classify checkpoint (or its run directory) that scores samples; auto: train "
        "raydl's CNN on the same data into RUN_DIR/scorer (digits, mnist, fashion_mnist); none: no scores")
    classifier_epochs: int = param(0, "auto: epochs of the scorer (0: its experiment file's)", ge=0)
    samples: int = param(1000, "generated images scored (as many held-out real images, at most, for the reference)", ge=2)
    every: int = param(1, "score every N epochs (0: the last epoch only)", ge=0)
    grid: int = param(64, "images in each epoch's sample grid PNG (0: none)", ge=0)
    inception_weights: str | None = param(
        None, "FID from torchmetrics' InceptionV3 with this local weights file (none: no FID)")


@dataclass
class GenerativeExperiment:
    """A DCGAN or VAE experiment file."""

    kind: Literal["gan", "vae"] = param("gan", "registry key")
    seed: int = param(0, "seed of weights, noise and data order", ge=0)
    data: GenDataConfig = section(GenDataConfig, "images")
    model: GenModelConfig = section(GenModelConfig, "networks")
    train: GenTrainConfig = section(GenTrainConfig, "optimization")
    score: ScoreConfig = section(ScoreConfig, "sample grids and quality scores")
    scaling: ScalingSection = section(ScalingSection, "Ray Train workers")
    checkpoint: CheckpointConfig = section(CheckpointConfig, "checkpoints (every N epochs, keep N)")
    log: LogConfig = section(LogConfig, "outputs")

    @property
    def image_size(self) -> int:
        return self.data.image_size or NATIVE_SIZE.get(self.data.source, 0)

    @property
    def channels(self) -> int:
        return self.data.channels or NATIVE_CHANNELS.get(self.data.source, 0)

    def validate(self) -> None:
        source = self.data.source
        if source not in NATIVE_SIZE:
            raise ConfigError(f"data.source: {source!r} is not images; allowed: {', '.join(NATIVE_SIZE)}")
        if self.data.normalize:
            raise ConfigError("data.normalize: generative models scale pixels themselves "
                              "([-1, 1] for gan, [0, 1] for vae); allowed: false")
        if self.data.sequence:
            raise ConfigError("data.sequence: generative models take whole images; allowed: false")
        if self.image_size not in SIZES:
            raise ConfigError(
                f"data.image_size: {source} images are {self.image_size} px; the networks take "
                f"{', '.join(map(str, SIZES))} px: set data.image_size to one of them")
        defaults = GenTrainConfig()
        other = VAE_ONLY if self.kind == "gan" else GAN_ONLY
        for name in other:
            if getattr(self.train, name) != getattr(defaults, name):
                raise ConfigError(f"train.{name}: applies to kind {'vae' if self.kind == 'gan' else 'gan'} "
                                  f"only; this experiment is kind {self.kind}")
        if self.kind == "gan" and self.model.variational is not GenModelConfig().variational:
            raise ConfigError("model.variational: applies to kind vae only; this experiment is kind gan")
        if self.kind == "vae" and self.model.d_norm != GenModelConfig().d_norm:
            raise ConfigError("model.d_norm: applies to kind gan only; this experiment is kind vae")
        if self.score.classifier == "auto" and source not in SCORER_EXPERIMENTS:
            raise ConfigError(
                f"score.classifier: auto trains a scorer on {', '.join(SCORER_EXPERIMENTS)}; for "
                f"{source} give a classify checkpoint or none")
        if self.kind == "vae" and not self.model.variational and self.score.classifier not in (None, "auto"):
            raise ConfigError("score.classifier: a plain autoencoder has no prior to sample from, "
                              "so nothing to score; allowed: auto or none (or model.variational: true)")
        if self.kind == "vae" and not self.model.variational and self.score.inception_weights:
            raise ConfigError("score.inception_weights: a plain autoencoder has no prior to sample "
                              "from, so no FID; allowed: none (or model.variational: true)")

    @property
    def scored(self) -> bool:
        """Samples are scored: a classifier is named, or auto and there is a prior to sample."""
        if self.kind == "vae" and not self.model.variational:
            return False  # auto: a plain autoencoder has nothing to sample
        return self.score.classifier is not None

    @property
    def title(self) -> str:
        net = "dcgan" if self.kind == "gan" else ("vae" if self.model.variational else "autoencoder")
        return f"{self.kind} {net} on {self.data.source} ({self.image_size} px)"


# ----------------------------------------------------------------------------- worker side


class GANTask:
    """DCGAN: a D step per real batch, a G step every n_critic batches."""

    def __init__(self, cfg: GenerativeExperiment) -> None:
        import ray.train.torch

        m = cfg.model
        self.cfg = cfg
        self.g = ray.train.torch.prepare_model(Generator(m.latent, cfg.channels, cfg.image_size, m.g_width))
        self.d = ray.train.torch.prepare_model(Discriminator(cfg.channels, cfg.image_size, m.d_width, m.d_norm))
        t = cfg.train
        self.opt_g = torch.optim.Adam(self.g.parameters(), t.lr, betas=(t.beta1, t.beta2))
        self.opt_d = torch.optim.Adam(self.d.parameters(), t.d_lr or t.lr, betas=(t.beta1, t.beta2))
        self.loss_cfg = GANLossConfig(t.label_smoothing, t.g_loss == "non_saturating", t.instance_noise)
        self.batches_seen = 0

    def modules(self) -> list[nn.Module]:
        return [self.g, self.d]

    def train_batch(self, x: torch.Tensor) -> dict[str, float]:
        real = x * 2 - 1  # the generator's tanh range
        n, latent = len(real), self.cfg.model.latent
        stats = discriminator_step(self.d, self.g, real, torch.randn(n, latent, device=real.device),
                                   self.opt_d, self.loss_cfg)
        self.batches_seen += 1
        if stats["nonfinite"]:
            return stats  # no G step against a D whose update was dropped
        stats["d_steps"] = 1.0
        if self.batches_seen % self.cfg.train.n_critic == 0:
            stats.update(generator_step(self.g, self.d, torch.randn(n, latent, device=real.device),
                                        self.opt_g, self.loss_cfg))
            if not stats["nonfinite"]:
                stats["g_steps"] = 1.0
        return stats

    def epoch_metrics(self, sums: dict[str, float], world: int) -> dict[str, float]:
        """Means over every worker's steps; step counts per worker (steps are in lockstep)."""
        d_steps, g_steps = max(sums.get("d_steps", 0), 1), max(sums.get("g_steps", 0), 1)
        return {"d_loss": sums.get("d_loss", 0) / d_steps, "d_real": sums.get("d_real", 0) / d_steps,
                "d_fake": sums.get("d_fake", 0) / d_steps, "g_loss": sums.get("g_loss", 0) / g_steps,
                "d_steps": sums.get("d_steps", 0) / world, "g_steps": sums.get("g_steps", 0) / world}

    def evaluate(self, val: Any, rank: int, world: int, device: torch.device) -> dict[str, float]:
        return {}

    @torch.no_grad()
    def sample(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from noise, with BatchNorm's running statistics (eval mode)."""
        g = unwrap(self.g)
        g.eval()
        try:
            return (g(z) + 1) / 2
        finally:
            g.train()

    def state(self) -> dict[str, Any]:
        return {"generator": unwrap(self.g).state_dict(), "discriminator": unwrap(self.d).state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "batches_seen": self.batches_seen}

    def load(self, saved: dict[str, Any]) -> None:
        unwrap(self.g).load_state_dict(saved["generator"])
        unwrap(self.d).load_state_dict(saved["discriminator"])
        self.opt_g.load_state_dict(saved["opt_g"])
        self.opt_d.load_state_dict(saved["opt_d"])
        self.batches_seen = int(saved["batches_seen"])


class VAETask:
    """VAE (or plain / denoising autoencoder): reconstruction + beta * KL per image."""

    def __init__(self, cfg: GenerativeExperiment) -> None:
        import ray.train.torch

        m = cfg.model
        self.cfg = cfg
        self.model = ray.train.torch.prepare_model(
            ConvVAE(cfg.channels, cfg.image_size, m.latent, m.width, m.variational))
        t = cfg.train
        self.opt = torch.optim.Adam(self.model.parameters(), t.lr, betas=(t.beta1, t.beta2))

    def modules(self) -> list[nn.Module]:
        return [self.model]

    def _corrupt(self, x: torch.Tensor) -> torch.Tensor:
        std = self.cfg.train.denoise_std
        return (x + std * torch.randn_like(x)).clamp(0, 1) if std > 0 else x

    def train_batch(self, x: torch.Tensor) -> dict[str, float]:
        logits, mu, logvar = self.model(self._corrupt(x))
        loss, recon, kl = vae_loss(logits, x, mu, logvar, self.cfg.train.beta)
        (loss_v, _, recon_v, kl_v), stepped = guarded_step(
            self.opt, list(self.model.parameters()), loss, extra=(recon.detach(), kl.detach()))
        n = float(len(x))  # sums of per-image losses, so epochs average over images
        return {"loss": loss_v * n, "recon": recon_v * n, "kl": kl_v * n, "n": n,
                "nonfinite": float(not stepped)}

    def epoch_metrics(self, sums: dict[str, float], world: int) -> dict[str, float]:
        n = max(sums.get("n", 0), 1)
        return {"train_loss": sums.get("loss", 0) / n, "train_recon": sums.get("recon", 0) / n,
                "train_kl": sums.get("kl", 0) / n}

    @torch.no_grad()
    def evaluate(self, val: Any, rank: int, world: int, device: torch.device) -> dict[str, float]:
        """Exact validation loss over all workers' shards (z = mu: deterministic)."""
        net = unwrap(self.model)
        net.eval()
        sums = [0.0, 0.0, 0.0, 0.0]
        for x, _ in DataLoader(shard(val, rank, world), batch_size=256):
            x = x.to(device)
            logits, mu, logvar = net(self._corrupt(x))
            loss, recon, kl = vae_loss(logits, x, mu, logvar, self.cfg.train.beta)
            for i, v in enumerate((loss, recon, kl)):
                sums[i] += float(v) * len(x)
            sums[3] += len(x)
        net.train()
        loss, recon, kl, n = _all_reduce(sums, device)
        return {"val_loss": loss / max(n, 1), "val_recon": recon / max(n, 1), "val_kl": kl / max(n, 1)}

    @torch.no_grad()
    def sample(self, z: torch.Tensor) -> torch.Tensor:
        net = unwrap(self.model)
        net.eval()
        try:
            return torch.sigmoid(net.decode(z[:, : net.latent]))
        finally:
            net.train()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        net = unwrap(self.model)
        net.eval()
        try:
            return torch.sigmoid(net(self._corrupt(x))[0])
        finally:
            net.train()

    def state(self) -> dict[str, Any]:
        return {"model": unwrap(self.model).state_dict(), "optimizer": self.opt.state_dict()}

    def load(self, saved: dict[str, Any]) -> None:
        unwrap(self.model).load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["optimizer"])


def replica_divergence(modules: list[nn.Module], device: torch.device) -> float:
    """Largest difference of any weight between workers: 0 when DDP kept them in sync."""
    import torch.distributed as dist

    flat = torch.cat([p.detach().flatten().float() for m in modules for p in m.parameters()])
    if not (dist.is_available() and dist.is_initialized()):
        return 0.0
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).max())


class _Judge:
    """Rank 0's scoring: the scorer, the real-data reference (computed once), noise."""

    def __init__(self, cfg: GenerativeExperiment, scorer_dir: str | None, splits: Any) -> None:
        from raydl.gen.scoring import Scorer, _stack, check_inception

        self.cfg = cfg
        self.scorer = Scorer(Path(scorer_dir)) if scorer_dir else None
        held_out = ConcatDataset([s for s in (splits.val, splits.test) if s is not None and len(s)])
        self.real = _stack(held_out, cfg.score.samples, cfg.seed)
        self.reference: dict[str, float] = {}
        self.weights = check_inception(cfg.score.inception_weights) if cfg.score.inception_weights else None
        generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.noise = torch.randn(len(self.real), cfg.model.latent, generator=generator)
        if self.scorer is not None:
            train = _stack(splits.train, 10_000, cfg.seed)
            self.train_features = self.scorer.outputs(train)[1]
            self.reference = self.scorer.scores(self.real, self.train_features, prefix="real_")

    def __call__(self, sample: Any) -> dict[str, float]:
        fake = torch.cat([sample(self.noise[i : i + 500]).cpu() for i in range(0, len(self.noise), 500)])
        out: dict[str, float] = {}
        if self.scorer is not None:
            out.update(self.scorer.scores(fake, self.train_features))
        if self.weights is not None:
            from raydl.gen.scoring import inception_fid

            out["inception_fid"] = inception_fid(self.real, fake, self.weights)
        return out


def gen_loop(config: dict[str, Any]) -> None:
    """The per-worker training function given to TorchTrainer."""
    import ray.train.torch

    from raydl.gen.scoring import save_grid
    from raydl.metrics import MetricsWriter

    cfg: GenerativeExperiment
    cfg, run_dir, rank, world = worker_setup(GenerativeExperiment, config)
    splits = image_splits(cfg.data)
    task: GANTask | VAETask = GANTask(cfg) if cfg.kind == "gan" else VAETask(cfg)
    loader = DataLoader(splits.train, batch_size=cfg.train.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed),
                        drop_last=len(splits.train) // world > cfg.train.batch_size)
    loader = ray.train.torch.prepare_data_loader(loader)
    device = ray.train.torch.get_device()
    epoch, restores, skipped = 0, 0, 0
    restored = restore_epoch_checkpoint(device)
    if restored is not None:
        saved, state = restored
        task.load(saved)
        epoch, restores = state["epoch"], state["restores"]
        skipped = state.get("nonfinite_skipped", 0)  # absent in older checkpoints
    # Noise differs per worker (each generates for its own shard) and per epoch after a
    # restore, so a resumed run does not replay the noise of its first pass.
    torch.manual_seed(cfg.seed + 1000 * rank + 7919 * epoch)

    writer = judge = None
    grid_z = torch.randn(cfg.score.grid, cfg.model.latent, generator=torch.Generator().manual_seed(cfg.seed + 2))
    grid_x = None
    if rank == 0:
        writer = MetricsWriter(run_dir, cfg.log.tensorboard, cfg.log.curve)
        writer.truncate_after(epoch)
        judge = _Judge(cfg, config.get("scorer"), splits) if (cfg.scored or cfg.score.inception_weights) else None
        if cfg.kind == "vae" and cfg.score.grid:
            grid_x = torch.stack([splits.val[i][0] for i in range(min(cfg.score.grid // 2, len(splits.val)))])
    amp = cfg.train.amp and device.type == "cuda"
    try:
        while epoch < cfg.train.epochs:
            epoch += 1
            sampler = getattr(loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            sums: dict[str, float] = {"images": 0.0}
            start = time.perf_counter()
            for index, (x, _) in enumerate(loader):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    stats = task.train_batch(x.to(device))
                if stats.pop("nonfinite"):  # the step already left the weights alone
                    if cfg.train.nonfinite == "stop":
                        losses = {k: v for k, v in stats.items() if k.endswith("loss")}
                        raise nonfinite_error(cfg.kind, f"epoch {epoch}, batch {index + 1}",
                                              losses, "train.nonfinite")
                    skipped += 1
                    # NaN losses would poison the epoch's means; an applied D step still counts.
                    stats = {k: v for k, v in stats.items() if k.endswith("_steps")}
                for key, value in stats.items():
                    sums[key] = sums.get(key, 0.0) + value
                sums["images"] += len(x)
            train_time = time.perf_counter() - start
            totals = dict(zip(sums, _all_reduce(list(sums.values()), device)))
            metrics: dict[str, Any] = {
                "iteration": epoch, "epoch": epoch, **task.epoch_metrics(totals, world),
                **task.evaluate(splits.val, rank, world, device),
                "images_per_s": totals["images"] / train_time if train_time > 0 else None,
                "epoch_time_s": train_time, "workers": world, "restores": restores,
                "replica_divergence": replica_divergence(task.modules(), device),
                "nonfinite_skipped": skipped,  # cumulative: batches whose updates were skipped
            }
            last = epoch == cfg.train.epochs
            if rank == 0:
                every = cfg.score.every
                if judge is not None and (last or (every and epoch % every == 0)):
                    metrics.update(judge.reference)
                    metrics.update(judge(lambda z: task.sample(z.to(device))))
                if cfg.score.grid and (cfg.kind == "gan" or cfg.model.variational):
                    save_grid(task.sample(grid_z.to(device)).cpu(), run_dir / "samples" / f"epoch_{epoch:06d}.png")
                if grid_x is not None:
                    assert isinstance(task, VAETask)
                    pairs = torch.stack([grid_x, task.reconstruct(grid_x.to(device)).cpu()], dim=1)
                    save_grid(pairs.flatten(0, 1), run_dir / "reconstructions" / f"epoch_{epoch:06d}.png")
            save = last or bool(cfg.checkpoint.every and epoch % cfg.checkpoint.every == 0)

            def write(directory: Path) -> None:
                torch.save(task.state(), directory / MODEL_FILE)
                dump_yaml(cfg, directory / "config.yaml")
                (directory / DATA_FILE).write_text(json.dumps(
                    {"channels": cfg.channels, "image_size": cfg.image_size, "latent": cfg.model.latent}))
                (directory / STATE_FILE).write_text(json.dumps(
                    {"epoch": epoch, "restores": restores, "nonfinite_skipped": skipped,
                     "metrics": metrics}))

            report_epoch(metrics, epoch, save=save, rank=rank, writer=writer, write=write)
            if writer is not None and (save or last):
                writer.plot(registry.headline(cfg), x="epoch")
    finally:
        if writer is not None:
            writer.close()


# ----------------------------------------------------------------------------- driver side


def _scorer_checkpoint(cfg: GenerativeExperiment, run_dir: Path, progress: bool) -> str | None:
    """The classifier checkpoint that scores samples: the given one, or (auto) one trained
    now by raydl's CNN trainer into RUN_DIR/scorer and reused from there afterwards."""
    from raydl.config import load_experiment
    from raydl.registry import find_experiment
    from raydl.sl.trainer import SupervisedTrainer

    choice = cfg.score.classifier
    if choice is None or not cfg.scored:
        return None
    if choice != "auto":
        path = Path(choice).expanduser()
        found = latest_epoch_checkpoint(path) if (path / "checkpoints").is_dir() else path
        if found is None or not (found / MODEL_FILE).is_file() or not (found / "data.json").is_file():
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


def check(cfg: GenerativeExperiment) -> None:
    """The check step of kinds gan and vae: the images are there (or may be downloaded),
    the Inception weights file, if one is named, loads."""
    from raydl.gen.scoring import check_inception

    check_data(cfg.data)
    if cfg.score.inception_weights:
        check_inception(cfg.score.inception_weights)


class GenerativeTrainer:
    """The registry's algorithm class for generative kinds: `fit` runs a whole run."""

    @staticmethod
    def fit(cfg: GenerativeExperiment, run_dir: Path, *, resume: bool, progress: bool,
            callbacks: list[Any] | None = None) -> dict[str, Any]:
        use_gpu = check_resources(cfg.scaling, run_dir, resume)
        if cfg.train.amp and not use_gpu:
            raise ConfigError("train.amp: mixed precision needs GPU workers and none are used here; allowed: false")
        scorer = _scorer_checkpoint(cfg, run_dir, progress)
        return run_torch_trainer(
            gen_loop, {"experiment": to_dict(cfg), "scorer": scorer}, scaling=cfg.scaling,
            use_gpu=use_gpu, keep=cfg.checkpoint.keep, run_dir=run_dir, epochs=cfg.train.epochs,
            headline=registry.headline(cfg), progress=progress, callbacks=callbacks,
        )


def load_generator(directory: Path) -> tuple[GenerativeExperiment, nn.Module]:
    """The experiment and trained generator (GAN) or VAE of an epoch checkpoint."""
    from raydl import checkpoint as ckpt
    from raydl.config import load_experiment

    cfg = load_experiment(directory / "config.yaml")
    if cfg.kind not in ("gan", "vae"):
        raise ConfigError(f"{directory}: not a generative checkpoint (kind {cfg.kind}); allowed kinds: gan, vae")
    saved = ckpt.load_torch(directory / MODEL_FILE)
    m = cfg.model
    net: nn.Module
    if cfg.kind == "gan":
        net, key = Generator(m.latent, cfg.channels, cfg.image_size, m.g_width), "generator"
    else:
        net, key = ConvVAE(cfg.channels, cfg.image_size, m.latent, m.width, m.variational), "model"
    try:
        net.load_state_dict(saved[key])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{directory / MODEL_FILE}: does not match its config: {first}") from None
    return cfg, net.eval()


def sample_images(cfg: GenerativeExperiment, net: nn.Module, n: int, seed: int = 0) -> torch.Tensor:
    """n new images in [0, 1] from a loaded generator or VAE decoder."""
    if cfg.kind == "vae" and not cfg.model.variational:
        raise ConfigError("sample: a plain autoencoder has no prior to sample from; "
                          "train with model.variational: true")
    z = torch.randn(n, cfg.model.latent, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        if isinstance(net, ConvVAE):
            return torch.sigmoid(net.decode(z))
        return (net(z) + 1) / 2


def sample_command(directory: Path, n: int, seed: int, nrow: int, out: Path) -> None:
    """`raydl sample`: a PNG grid of n new images from a gan / vae checkpoint."""
    from raydl.gen.scoring import save_grid

    cfg, net = load_generator(directory)
    save_grid(sample_images(cfg, net, n, seed=seed), out, nrow=nrow)
    print(f"raydl sample: {n} images of {cfg.title} from {directory} in {out}")
