"""The generative kinds as tasks of the epoch loop (raydl.train.loop).

`GenerativeTask` is what the loop drives for `gan` and `vae`: the sharded image loader,
the per-rank noise seeding, the replica-divergence check, and rank 0's per-epoch sample
grids (reconstructions for the VAE) and quality scores (`_Judge`). It holds one model:

- `GANTask`: DCGAN; it steps its own two optimizers, a D step per real batch and a G
  step every n_critic batches (raydl.gen.gan).
- `VAETask`: VAE, or plain / denoising autoencoder; reconstruction + beta * KL.

Quality scores come from a classifier trained by raydl's own CNN trainer (the driver
trains it, raydl.gen.trainer) beside the same scores of held-out real images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

from raydl.gen.experiment import GenerativeExperiment, augment_policies
from raydl.gen.gan import GANLossConfig, GeneratorAverage, discriminator_step, generator_step, unwrap
from raydl.gen.models import ConvVAE, Discriminator, Generator, cycled_labels, vae_loss
from raydl.errors import CheckpointError
from raydl.nn import guarded_step
from raydl.sl.data import image_splits, shard
from raydl.train.loop import Step, Worker
from raydl.train.plumbing import DATA_FILE, all_reduce


class GANTask:
    """DCGAN: a D step per real batch, a G step every n_critic batches; class-conditional
    (`classes` > 0) on the real images' labels, G drawing uniformly chosen classes."""

    has_prior = True  # images can be drawn from noise

    def __init__(self, worker: Worker, classes: int = 0) -> None:
        cfg: GenerativeExperiment = worker.cfg
        m = cfg.model
        self.cfg, self.classes = cfg, classes
        self.g = worker.prepare_model(Generator(m.latent, cfg.channels, cfg.image_size, m.g_width, classes))
        self.d = worker.prepare_model(Discriminator(cfg.channels, cfg.image_size, m.d_width, m.d_norm, classes))
        t = cfg.train
        self.opt_g = torch.optim.Adam(self.g.parameters(), t.lr, betas=(t.beta1, t.beta2))
        self.opt_d = torch.optim.Adam(self.d.parameters(), t.d_lr or t.lr, betas=(t.beta1, t.beta2))
        self.loss_cfg = GANLossConfig(t.label_smoothing, t.g_loss == "non_saturating", t.instance_noise,
                                      augment_policies(t.diff_augment))
        self.average = GeneratorAverage(self.g, t.g_ema) if t.g_ema > 0 else None
        self.batches_seen = 0

    def modules(self) -> list[nn.Module]:
        """The networks whose weights must agree on every worker."""
        return [self.g, self.d] + ([self.average.module] if self.average is not None else [])

    def _drawn_labels(self, n: int, device: torch.device) -> torch.Tensor | None:
        """Classes for G to draw (conditional): uniform, from this worker's seeded stream."""
        return torch.randint(self.classes, (n,), device=device) if self.classes else None

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """A D step on images in [0, 1] (labels y), then a G step if it is the n_critic-th
        batch; the losses, mean D outputs, steps taken and `nonfinite` (1.0: an update was
        dropped)."""
        real = x * 2 - 1  # the generator's tanh range
        n, latent, device = len(real), self.cfg.model.latent, real.device
        real_y = y if self.classes else None
        stats = discriminator_step(self.d, self.g, real, torch.randn(n, latent, device=device),
                                   self.opt_d, self.loss_cfg, (real_y, self._drawn_labels(n, device)))
        self.batches_seen += 1
        if stats["nonfinite"]:
            return stats  # no G step against a D whose update was dropped
        stats["d_steps"] = 1.0
        if self.batches_seen % self.cfg.train.n_critic == 0:
            stats.update(generator_step(self.g, self.d, torch.randn(n, latent, device=device),
                                        self.opt_g, self.loss_cfg, self._drawn_labels(n, device)))
            if not stats["nonfinite"]:
                stats["g_steps"] = 1.0
                if self.average is not None:
                    self.average.update(self.g)
        return stats

    def epoch_metrics(self, sums: dict[str, float], world: int) -> dict[str, float]:
        """Means over every worker's steps; step counts per worker (steps are in lockstep)."""
        d_steps, g_steps = max(sums.get("d_steps", 0), 1), max(sums.get("g_steps", 0), 1)
        return {"d_loss": sums.get("d_loss", 0) / d_steps, "d_real": sums.get("d_real", 0) / d_steps,
                "d_fake": sums.get("d_fake", 0) / d_steps, "g_loss": sums.get("g_loss", 0) / g_steps,
                "d_steps": sums.get("d_steps", 0) / world, "g_steps": sums.get("g_steps", 0) / world}

    def evaluate(self, val: Any, rank: int, world: int, device: torch.device) -> dict[str, float]:
        """No validation loss: a GAN's losses on held-out images say little."""
        return {}

    @torch.no_grad()
    def sample(self, z: torch.Tensor, labels: torch.Tensor | None = None, averaged: bool = True) -> torch.Tensor:
        """Images in [0, 1] from noise (of these classes, when conditional), with BatchNorm's
        running statistics (eval mode), by the averaged generator when there is one (and
        `averaged`)."""
        g = self.average.module if self.average is not None and averaged else unwrap(self.g)
        g.eval()
        try:
            return (g(z, labels) + 1) / 2
        finally:
            g.train()

    def state(self) -> dict[str, Any]:
        """model.pt: both networks, both optimizers, the batch count that paces G steps,
        and the averaged generator (with its update count) when there is one."""
        return {"generator": unwrap(self.g).state_dict(), "discriminator": unwrap(self.d).state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "batches_seen": self.batches_seen,
                **(self.average.state() if self.average is not None else {})}

    def load(self, saved: dict[str, Any]) -> None:
        unwrap(self.g).load_state_dict(saved["generator"])
        unwrap(self.d).load_state_dict(saved["discriminator"])
        self.opt_g.load_state_dict(saved["opt_g"])
        self.opt_d.load_state_dict(saved["opt_d"])
        self.batches_seen = int(saved["batches_seen"])
        if self.average is not None:
            if "generator_ema" not in saved:
                raise CheckpointError("model.pt holds no averaged generator: resume with train.g_ema: 0 "
                                      "as the run was trained")
            self.average.load(saved)


class VAETask:
    """VAE (or plain / denoising autoencoder): reconstruction + beta * KL per image."""

    def __init__(self, worker: Worker) -> None:
        cfg: GenerativeExperiment = worker.cfg
        m = cfg.model
        self.cfg = cfg
        self.model = worker.prepare_model(ConvVAE(cfg.channels, cfg.image_size, m.latent, m.width, m.variational))
        t = cfg.train
        self.opt = torch.optim.Adam(self.model.parameters(), t.lr, betas=(t.beta1, t.beta2))
        self.has_prior = m.variational  # a plain autoencoder has nothing to sample from

    def modules(self) -> list[nn.Module]:
        """The network whose weights must agree on every worker."""
        return [self.model]

    def _corrupt(self, x: torch.Tensor) -> torch.Tensor:
        std = self.cfg.train.denoise_std
        return (x + std * torch.randn_like(x)).clamp(0, 1) if std > 0 else x

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One guarded step on images in [0, 1] (labels unused); sums of the per-image
        losses and `nonfinite` (1.0: the update was dropped)."""
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
        loss, recon, kl, n = all_reduce(sums, device)
        return {"val_loss": loss / max(n, 1), "val_recon": recon / max(n, 1), "val_kl": kl / max(n, 1)}

    @torch.no_grad()
    def sample(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] decoded from prior noise (its first `latent` dimensions)."""
        net = unwrap(self.model)
        net.eval()
        try:
            return torch.sigmoid(net.decode(z[:, : net.latent]))
        finally:
            net.train()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstructions of (corrupted, when denoising) images in [0, 1]."""
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


def _to(labels: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if labels is None else labels.to(device)


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

    def __init__(self, cfg: GenerativeExperiment, scorer_dir: str | None, splits: Any, classes: int) -> None:
        from raydl.gen.scoring import Scorer, _stack, check_inception

        self.cfg = cfg
        self.scorer = Scorer(Path(scorer_dir)) if scorer_dir else None
        held_out = ConcatDataset([s for s in (splits.val, splits.test) if s is not None and len(s)])
        self.real = _stack(held_out, cfg.score.samples, cfg.seed)
        self.reference: dict[str, float] = {}
        self.weights = check_inception(cfg.score.inception_weights) if cfg.score.inception_weights else None
        generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.noise = torch.randn(len(self.real), cfg.model.latent, generator=generator)
        self.labels = cycled_labels(len(self.real), classes)
        if self.scorer is not None:
            train = _stack(splits.train, 10_000, cfg.seed)
            self.train_features = self.scorer.outputs(train)[1]
            self.reference = self.scorer.scores(self.real, self.train_features, prefix="real_")

    def __call__(self, sample: Any) -> dict[str, float]:
        """The scores of the samples that `sample(noise, labels)` draws."""
        y = self.labels
        fake = torch.cat([sample(self.noise[i : i + 500], None if y is None else y[i : i + 500]).cpu()
                          for i in range(0, len(self.noise), 500)])
        out: dict[str, float] = {}
        if self.scorer is not None:
            out.update(self.scorer.scores(fake, self.train_features, labels=y))
        if self.weights is not None:
            from raydl.gen.scoring import inception_fid

            out["inception_fid"] = inception_fid(self.real, fake, self.weights)
        return out



class GenerativeTask:
    """The epoch loop's task for `gan` and `vae` (raydl.train.loop.Task): one model, its
    sharded image loader, and rank 0's sample grids and scores."""

    unit = counted = "images"
    watched = None  # no early stopping: a generator's losses do not say it got better

    def __init__(self, worker: Worker) -> None:
        cfg: GenerativeExperiment = worker.cfg
        self.cfg, self.worker = cfg, worker
        self.splits = image_splits(cfg.data)
        self.classes = self.splits.num_classes if cfg.kind == "gan" and cfg.model.conditional else 0
        self.net: GANTask | VAETask = GANTask(worker, self.classes) if cfg.kind == "gan" else VAETask(worker)
        loader = DataLoader(self.splits.train, batch_size=cfg.train.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(cfg.seed),
                            drop_last=len(self.splits.train) // worker.world > cfg.train.batch_size)
        self.loader = worker.prepare_loader(loader)
        # The same noise every epoch, so the grids show one generator learning.
        self.grid_z = torch.randn(cfg.score.grid, cfg.model.latent,
                                  generator=torch.Generator().manual_seed(cfg.seed + 2))
        self.grid_y = cycled_labels(cfg.score.grid, self.classes)
        self.grid_x: torch.Tensor | None = None
        self.judge: _Judge | None = None

    def state(self) -> dict[str, Any]:
        return self.net.state()

    def load(self, saved: dict[str, Any], epoch: int) -> None:
        self.net.load(saved)

    def start(self, epoch: int, restored: bool) -> None:
        """Seed this worker's noise; rank 0 sets up its judge and reconstruction grid."""
        cfg, rank = self.cfg, self.worker.rank
        # Noise differs per worker (each generates for its own shard) and per epoch after a
        # restore, so a resumed run does not replay the noise of its first pass.
        torch.manual_seed(cfg.seed + 1000 * rank + 7919 * epoch)
        if rank != 0:
            return
        if cfg.scored or cfg.score.inception_weights:
            self.judge = _Judge(cfg, self.worker.options.get("scorer"), self.splits, self.classes)
        if isinstance(self.net, VAETask) and cfg.score.grid:
            val = self.splits.val
            self.grid_x = torch.stack([val[i][0] for i in range(min(cfg.score.grid // 2, len(val)))])

    def begin_epoch(self, epoch: int) -> None:
        pass  # the networks stay in training mode; sampling switches them briefly

    def new_sums(self) -> dict[str, float]:
        return {"images": 0.0}

    def batches(self) -> Any:
        return iter(self.loader)

    def train_step(self, batch: Any) -> Step:
        """The model's step(s) on a batch of real images and their labels."""
        x, y = batch
        device = self.worker.device
        with self.worker.autocast():
            stats = self.net.train_batch(x.to(device), y.to(device))
        images = float(len(x))
        if stats.pop("nonfinite"):  # the step already left the weights alone
            losses = {k: v for k, v in stats.items() if k.endswith("loss")}
            # NaN losses would poison the epoch's means; an applied D step still counts.
            steps = {k: v for k, v in stats.items() if k.endswith("_steps")}
            return Step({**steps, "images": images}, nonfinite=losses)
        return Step({**stats, "images": images})

    def epoch_metrics(self, totals: dict[str, float]) -> dict[str, Any]:
        """Loss means, validation (VAE) and whether DDP kept every worker's weights equal."""
        device, world = self.worker.device, self.worker.world
        return {**self.net.epoch_metrics(totals, world),
                **self.net.evaluate(self.splits.val, self.worker.rank, world, device),
                "replica_divergence": replica_divergence(self.net.modules(), device)}

    def closing_metrics(self, epoch: int, last: bool) -> dict[str, Any]:
        """Rank 0: scores every `score.every` epochs and last; this epoch's grid PNGs."""
        if self.worker.rank != 0:
            return {}
        from raydl.gen.scoring import save_grid

        cfg, device, out = self.cfg, self.worker.device, {}
        every = cfg.score.every
        if self.judge is not None and (last or (every and epoch % every == 0)):
            out.update(self.judge.reference)
            out.update(self.judge(lambda z, y: self.net.sample(z.to(device), _to(y, device))))
            if isinstance(self.net, GANTask) and self.net.average is not None:  # what the average adds
                live = self.judge(lambda z, y: self.net.sample(z.to(device), _to(y, device), averaged=False))
                out.update({f"unaveraged_{k}": v for k, v in live.items()})
        run_dir = self.worker.run_dir
        if cfg.score.grid and self.net.has_prior:
            grid = self.net.sample(self.grid_z.to(device), _to(self.grid_y, device)).cpu()
            save_grid(grid, run_dir / "samples" / f"epoch_{epoch:06d}.png", nrow=self.classes or 8)
        if self.grid_x is not None:
            assert isinstance(self.net, VAETask)
            pairs = torch.stack([self.grid_x, self.net.reconstruct(self.grid_x.to(device)).cpu()], dim=1)
            save_grid(pairs.flatten(0, 1), run_dir / "reconstructions" / f"epoch_{epoch:06d}.png")
        return out

    def save_extra(self, directory: Path) -> None:
        """data.json: what `raydl sample` builds the network for."""
        cfg = self.cfg
        info = {"channels": cfg.channels, "image_size": cfg.image_size, "latent": cfg.model.latent}
        if cfg.kind == "gan":
            info["classes"] = self.classes  # 0: unconditional
        (directory / DATA_FILE).write_text(json.dumps(info))
