"""The guarded optimizer step of the data-parallel kinds: a NaN/inf gradient never
reaches the weights (nor the optimizer's moments), and the caller learns it happened."""

import math

import pytest
import torch
from torch import nn

from raydl.errors import TrainingError
from raydl.gen.gan import GANLossConfig, discriminator_step
from raydl.gen.models import Discriminator, Generator
from raydl.nn import guarded_step, nonfinite_error


def _flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_a_nan_loss_leaves_weights_and_optimizer_state_alone() -> None:
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    params = list(net.parameters())
    opt = torch.optim.Adam(params, 1e-2)
    x = torch.randn(4, 3)
    (loss, norm), stepped = guarded_step(opt, params, net(x).pow(2).mean())
    assert stepped and math.isfinite(loss) and norm > 0
    before, state = _flat(net), {k: v["exp_avg"].clone() for k, v in enumerate(opt.state.values())}
    x[0, 0] = float("nan")
    (loss, norm), stepped = guarded_step(opt, params, net(x).pow(2).mean(), clip=1.0)
    assert not stepped and math.isnan(loss) and math.isnan(norm)
    assert torch.equal(_flat(net), before)
    assert all(torch.equal(v["exp_avg"], state[k]) for k, v in enumerate(opt.state.values()))
    assert all(s["step"].item() == 1 for s in opt.state.values())  # the skipped step is not counted


def test_an_inf_gradient_is_caught_where_the_loss_is_finite() -> None:
    w = nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], 0.1)
    # sqrt at 0: a finite loss whose gradient is inf
    (loss, norm), stepped = guarded_step(opt, [w], torch.sqrt(w - 1.0).sum())
    assert loss == 0.0 and math.isinf(norm) and not stepped and w.item() == 1.0


def test_discriminator_step_skips_a_nan_batch() -> None:
    torch.manual_seed(0)
    g, d = Generator(8, 1, 28, width=8), Discriminator(1, 28, width=8)
    opt = torch.optim.Adam(d.parameters(), 1e-3)
    real = torch.rand(6, 1, 28, 28) * 2 - 1
    real[0, 0, 0, 0] = float("nan")
    before = _flat(d)
    stats = discriminator_step(d, g, real, torch.randn(6, 8), opt, GANLossConfig())
    assert stats["nonfinite"] == 1.0 and math.isnan(stats["d_loss"])
    assert torch.equal(_flat(d), before)


def test_nonfinite_error_is_one_line_naming_kind_place_and_values() -> None:
    exc = nonfinite_error("classify", "epoch 3, batch 7", {"loss": float("nan"), "grad_norm": float("inf")},
                          "train.nonfinite")
    assert isinstance(exc, TrainingError)
    assert str(exc) == ("classify: non-finite loss or gradient at epoch 3, batch 7 (loss nan, grad_norm inf); "
                        "set train.nonfinite: skip to skip such updates instead")
    with pytest.raises(TrainingError):
        raise exc
