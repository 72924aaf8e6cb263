"""One RBM trained by contrastive divergence on a Ray Train worker, data-parallel by hand.

CD's gradient is not the gradient of a loss autograd could differentiate, so DDP has
nothing to hook: each worker computes its CD estimate on its own shard's batch, the
estimates are averaged over the workers by one all-reduce (`average_over_workers`), and
every worker applies that same mean to the same weights with the same optimizer, so the
replicas stay identical (the tasks report `replica_divergence` each epoch to show it).

What a checkpoint needs of a CD learner: the RBM, the optimizer (momentum buffers) and,
with PCD, every worker's persistent chains (gathered to every worker at each epoch's end,
so that rank 0 writes them all and each worker takes its own back on a restore). The
Gibbs noise is reseeded at each epoch's start from (seed, epoch, rank), and so is the
data order outside a worker group (in one, the DistributedSampler's order is the
epoch's), so an epoch run after a restore draws what it would have drawn without one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from raydl.errors import CheckpointError
from raydl.rbm.experiment import CDTrainConfig
from raydl.train.loop import Step, Worker


def _group_size() -> int:
    """The number of workers in this process's group (1 outside a group)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def average_over_workers(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's mean over the workers (the tensors themselves outside a group): one
    all-reduce of their concatenation, so every worker gets the same numbers."""
    import torch.distributed as dist

    world = _group_size()
    if world == 1:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def gather_over_workers(tensor: torch.Tensor) -> torch.Tensor:
    """Every worker's `tensor`, stacked in rank order (world, ...), on every worker."""
    import torch.distributed as dist

    world = _group_size()
    if world == 1:
        return tensor.unsqueeze(0)
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.stack(parts)


def epoch_seed(seed: int, epoch: int, *stream: int) -> int:
    """A seed for one epoch of one stream of random numbers (a worker's Gibbs noise, the
    data order): what that epoch draws does not depend on the epochs before it."""
    return int(np.random.SeedSequence([seed, epoch, *stream]).generate_state(1)[0])


NOISE, ORDER = 0, 1  # the streams: a worker's Gibbs noise (and its rank), the data order


class CDLearner:
    """An RBM's CD updates on one worker: SGD with momentum on the workers' mean CD
    gradient, L2 weight decay on the weights only (Hinton's guide, section 10), the
    worker's Gibbs noise and, with PCD, its persistent chains."""

    def __init__(self, rbm: nn.Module, train: CDTrainConfig, worker: Worker) -> None:
        self.rbm, self.train, self.worker = rbm.to(worker.device), train, worker
        self.params = list(self.rbm.parameters())
        biases = [p for name, p in self.rbm.named_parameters() if name != "weight"]
        # SGD's momentum buffer b <- m b + g, step -lr b: Hinton's dW <- m dW + lr g for a fixed lr
        self.optimizer = torch.optim.SGD(
            [{"params": [self.rbm.weight], "weight_decay": train.weight_decay},
             {"params": biases, "weight_decay": 0.0}], lr=train.lr, momentum=train.momentum)
        self.noise = torch.Generator(device=worker.device)
        self.chains: torch.Tensor | None = None  # PCD: this worker's persistent visible states
        self.all_chains: torch.Tensor | None = None  # every worker's, for the checkpoint

    def begin_epoch(self, epoch: int, seed: int) -> None:
        """Reseed the Gibbs noise for this worker and epoch."""
        self.noise.manual_seed(epoch_seed(seed, epoch, NOISE, self.worker.rank))

    def start_chains(self, shape: tuple[int, ...]) -> None:
        """PCD: fresh chains of random binary states, unless a restore brought them back."""
        if self.train.persistent and self.chains is None:
            self.chains = torch.bernoulli(torch.full(shape, 0.5, device=self.worker.device), generator=self.noise)

    def apply(self, ascent: list[torch.Tensor]) -> dict[str, float] | None:
        """Average a CD estimate over the workers and step down its negative; the
        gradient norm when it is not finite (no update then, on any worker), else None."""
        mean = average_over_workers(ascent)
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in mean])))
        if not np.isfinite(norm):
            return {"grad_norm": norm}
        for p, g in zip(self.params, mean):
            p.grad = -g  # ascent on the log-likelihood is descent on its negative
        self.optimizer.step()
        return None

    def step(self, v0: torch.Tensor) -> Step:
        """One CD-k (PCD-k) update of a BernoulliRBM on visible data v0: the batch's
        summed reconstruction error and its example and pixel counts."""
        self.start_chains((self.train.batch_size, v0.shape[1]))
        cd = self.rbm.cd(v0, self.train.cd_k, self.noise, self.chains)
        nonfinite = self.apply(cd.ascent)
        if nonfinite is not None:
            return Step({"examples": float(len(v0))}, nonfinite=nonfinite)
        if self.train.persistent:
            self.chains = cd.chains
        with torch.no_grad():
            recon = float(self.rbm.reconstruction_error(v0).sum())
        return Step({"recon": recon, "examples": float(len(v0)), "pixels": float(v0.numel())})

    def gather_chains(self) -> None:
        """Every worker: collect all workers' chains for the checkpoint (PCD only)."""
        if self.chains is not None:
            self.all_chains = gather_over_workers(self.chains)

    def state(self) -> dict[str, Any]:
        """The RBM, the optimizer and (PCD) every worker's chains."""
        out: dict[str, Any] = {"rbm": self.rbm.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.all_chains is not None:
            out["chains"] = self.all_chains
        return out

    def load(self, saved: dict[str, Any]) -> None:
        """Restore `state()`; this worker takes its own chains back."""
        self.rbm.load_state_dict(saved["rbm"])
        self.optimizer.load_state_dict(saved["optimizer"])
        chains = saved.get("chains")
        if chains is None:
            return
        if len(chains) != self.worker.world:
            raise CheckpointError(f"checkpoint: persistent chains of {len(chains)} workers, this run has "
                                  f"{self.worker.world}; resume with scaling.workers={len(chains)}")
        self.chains = chains[self.worker.rank].to(self.worker.device)
