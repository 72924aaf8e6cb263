"""The GAN's D and G steps under DDP (2 gloo processes, no Ray): each step applies
exactly the all-worker mean gradient of its own network, once, and leaves the other
network untouched, with no gradients behind."""

import multiprocessing as mp
import os
import socket
import traceback
from copy import deepcopy

import torch
from torch import nn

from raydl.gen.gan import GANLossConfig, discriminator_step, generator_step
from raydl.gen.models import Discriminator, Generator

WORLD = 2


def _flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _mean_grad(module: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    """What DDP should apply: this rank's gradient averaged over ranks by hand."""
    import torch.distributed as dist

    grads = torch.autograd.grad(loss, [p for p in module.parameters() if p.requires_grad])
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    return flat / WORLD


def _worker(rank: int, port: int, errors: "mp.Queue[str]") -> None:
    try:
        import torch.distributed as dist
        from torch.nn.functional import binary_cross_entropy_with_logits as bce
        from torch.nn.parallel import DistributedDataParallel as DDP

        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=WORLD)
        torch.manual_seed(0)
        g, d = Generator(8, 1, 28, width=8), Discriminator(1, 28, width=8)
        g_ref, d_ref = deepcopy(g), deepcopy(d)  # plain copies for the expected gradients
        gw, dw = DDP(g), DDP(d)
        loss_cfg = GANLossConfig(label_smoothing=0.1)
        lr = 0.5  # plain SGD: the parameter change is exactly -lr * applied gradient

        # this rank's own batch and noise: the ranks' gradients differ
        gen = torch.Generator().manual_seed(100 + rank)
        real = torch.rand(4, 1, 28, 28, generator=gen) * 2 - 1
        z_d, z_g = torch.randn(4, 8, generator=gen), torch.randn(4, 8, generator=gen)

        # -------- D step
        with torch.no_grad():
            fake = g_ref(z_d)
        logits_r, logits_f = d_ref(real), d_ref(fake)
        expected_d = _mean_grad(d_ref, bce(logits_r, torch.full_like(logits_r, 0.9))
                                + bce(logits_f, torch.zeros_like(logits_f)))
        g_before, d_before = _flat(g), _flat(d)
        discriminator_step(dw, gw, real, z_d, torch.optim.SGD(dw.parameters(), lr), loss_cfg)
        torch.testing.assert_close((d_before - _flat(d)) / lr, expected_d, rtol=1e-4, atol=1e-6)
        assert torch.equal(_flat(g), g_before), "the D step changed G"

        # -------- G step (the reference D takes the same D update first)
        d_ref.load_state_dict(d.state_dict())
        g_ref.load_state_dict(g.state_dict())
        logits = d_ref(g_ref(z_g))
        for p in d_ref.parameters():
            p.requires_grad_(False)
        expected_g = _mean_grad(g_ref, bce(logits, torch.ones_like(logits)))
        g_before, d_before = _flat(g), _flat(d)
        d_grads = [p.grad.clone() for p in d.parameters()]  # what the D step left
        generator_step(gw, dw, z_g, torch.optim.SGD(gw.parameters(), lr), loss_cfg)
        torch.testing.assert_close((g_before - _flat(g)) / lr, expected_g, rtol=1e-4, atol=1e-6)
        assert torch.equal(_flat(d), d_before), "the G step changed D"
        assert all(torch.equal(p.grad, before) for p, before in zip(d.parameters(), d_grads)), \
            "the G step added D gradients"
        dist.destroy_process_group()
    except BaseException:  # noqa: BLE001 - the parent reports it
        errors.put(f"rank {rank}: {traceback.format_exc()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gan_steps_apply_each_networks_mean_gradient_once_under_ddp() -> None:
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, errors)) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert not failures, "\n".join(failures)
    assert all(p.exitcode == 0 for p in procs)
