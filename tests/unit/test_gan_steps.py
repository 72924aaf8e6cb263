"""The GAN update functions and the generative experiment's checks, without Ray."""

import math

import pytest
import torch
from torch import nn

from raydl import registry
from raydl.config import load_experiment
from raydl.errors import ConfigError
from raydl.gen.gan import GANLossConfig, discriminator_step, generator_step
from raydl.gen.models import Discriminator, Generator


class ConstantCritic(nn.Module):
    """D(x) = c for every image: its losses have closed forms."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c.expand(len(x)) + 0 * x.flatten(1).sum(1)


def _nets() -> tuple[Generator, Discriminator]:
    torch.manual_seed(0)
    return Generator(8, 1, 28, width=8), Discriminator(1, 28, width=8)


def _flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_discriminator_step_moves_only_the_discriminator() -> None:
    g, d = _nets()
    g_before, d_before = _flat(g), _flat(d)
    opt = torch.optim.Adam(d.parameters(), 1e-3)
    stats = discriminator_step(d, g, torch.rand(6, 1, 28, 28) * 2 - 1, torch.randn(6, 8), opt, GANLossConfig())
    assert torch.equal(_flat(g), g_before)
    assert not torch.equal(_flat(d), d_before)
    assert all(p.grad is None for p in g.parameters())  # G ran without gradients
    assert 0 < stats["d_real"] < 1 and 0 < stats["d_fake"] < 1


def test_generator_step_moves_only_the_generator_and_leaves_no_critic_gradients() -> None:
    g, d = _nets()
    g_before, d_before = _flat(g), _flat(d)
    opt = torch.optim.Adam(g.parameters(), 1e-3)
    generator_step(g, d, torch.randn(6, 8), opt, GANLossConfig())
    assert not torch.equal(_flat(g), g_before)
    assert torch.equal(_flat(d), d_before)
    # no stale D gradients for the next D step to apply, and D trainable again
    assert all(p.grad is None and p.requires_grad for p in d.parameters())


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_discriminator_loss_with_one_sided_label_smoothing(smoothing: float) -> None:
    g, _ = _nets()
    c = 0.7
    critic = ConstantCritic(c)
    opt = torch.optim.SGD(critic.parameters(), 0.0)
    stats = discriminator_step(critic, g, torch.zeros(4, 1, 28, 28), torch.randn(4, 8), opt,
                               GANLossConfig(label_smoothing=smoothing))
    p = 1 / (1 + math.exp(-c))
    expected = -(1 - smoothing) * math.log(p) - smoothing * math.log(1 - p) - math.log(1 - p)
    assert stats["d_loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("non_saturating", "formula"), [
    (True, lambda p: -math.log(p)),  # -log D(G(z))
    (False, lambda p: math.log(1 - p)),  # log(1 - D(G(z))), the minimax game's
])
def test_generator_loss_forms(non_saturating: bool, formula) -> None:
    g, _ = _nets()
    c = -1.3
    opt = torch.optim.SGD(g.parameters(), 0.0)
    stats = generator_step(g, ConstantCritic(c), torch.randn(4, 8), opt, GANLossConfig(non_saturating=non_saturating))
    assert stats["g_loss"] == pytest.approx(formula(1 / (1 + math.exp(-c))), rel=1e-5)


@pytest.mark.parametrize(("data", "message"), [
    ({"data": {"image_size": 28, "normalize": True}}, r"data\.normalize: generative models scale pixels themselves"),
    ({"data": {}}, r"data\.image_size: digits images are 8 px; .*28, 32, 64"),
    ({"data": {"image_size": 28, "source": "text"}}, r"data\.source: 'text' is not images"),
    ({"train": {"beta": 2.0}}, r"train\.beta: applies to kind vae only"),
    ({"kind": "vae", "train": {"n_critic": 5}}, r"train\.n_critic: applies to kind gan only"),
    ({"kind": "vae", "model": {"conditional": True}}, r"model\.conditional: applies to kind gan only"),
    ({"data": {"source": "cifar10"}}, r"score\.classifier: auto trains a scorer on digits"),
    ({"kind": "vae", "model": {"variational": False}, "score": {"classifier": "runs/x"}},
     r"score\.classifier: a plain autoencoder has no prior"),
])
def test_generative_experiment_refuses_what_cannot_work(data: dict, message: str) -> None:
    base = {"kind": "gan", "data": {"image_size": 28}}
    with pytest.raises(ConfigError, match=message):
        load_experiment({**base, **data})


def test_generative_experiment_sizes_follow_the_source() -> None:
    cfg = load_experiment({"kind": "gan", "data": {"source": "cifar10"},
                           "score": {"classifier": None}})
    assert (cfg.image_size, cfg.channels) == (32, 3)
    assert registry.headline(cfg) == "g_loss"
    vae = load_experiment({"kind": "vae", "data": {"image_size": 28}})
    assert (vae.image_size, vae.channels, registry.headline(vae)) == (28, 1, "classifier_score")


def test_a_plain_autoencoder_is_not_scored_by_default() -> None:
    cfg = load_experiment({"kind": "vae", "data": {"image_size": 28}, "model": {"variational": False}})
    assert cfg.score.classifier == "auto" and not cfg.scored and registry.headline(cfg) == "val_loss"


def test_conditional_steps_train_the_class_vectors_of_the_labels_seen() -> None:
    torch.manual_seed(0)
    g, d = Generator(8, 1, 28, width=8, classes=5), Discriminator(1, 28, width=8, classes=5)
    real, real_y, fake_y = torch.rand(6, 1, 28, 28) * 2 - 1, torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([1] * 6)
    before = d.embed.weight.detach().clone()
    opt_d = torch.optim.SGD(d.parameters(), 0.1)
    discriminator_step(d, g, real, torch.randn(6, 8), opt_d, GANLossConfig(), (real_y, fake_y))
    moved = (d.embed.weight.detach() - before).abs().sum(dim=1) > 0
    assert moved.tolist() == [True, True, True, False, False]  # classes 3 and 4 were in no batch
    g_before = g.project[0].weight.detach().clone()
    opt_g = torch.optim.SGD(g.parameters(), 0.1)
    generator_step(g, d, torch.randn(6, 8), opt_g, GANLossConfig(), torch.tensor([4] * 6))
    rows = (g.project[0].weight.detach() - g_before).abs().sum(dim=(1, 2, 3)) > 0
    # ConvTranspose2d's weight is (in, out, k, k): of the one-hot inputs only class 4's row moved
    assert rows[8:].tolist() == [False, False, False, False, True] and rows[:8].all()
