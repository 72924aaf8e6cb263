"""DCGAN and VAE building blocks: shapes, the paper's rules, the VAE loss by hand."""

import math

import pytest
import torch
from torch import nn

from raydl.gen.models import ConvVAE, Discriminator, Generator, vae_loss


@pytest.mark.parametrize(("size", "channels"), [(28, 1), (32, 3), (64, 3)])
def test_dcgan_shapes_output_range_and_init(size: int, channels: int) -> None:
    torch.manual_seed(0)
    g, d = Generator(32, channels, size, width=16), Discriminator(channels, size, width=16)
    images = g(torch.randn(5, 32))
    assert images.shape == (5, channels, size, size)
    assert images.abs().max() <= 1.0  # tanh output
    assert d(images).shape == (5,)
    # no BatchNorm right after the discriminator's input convolution
    assert isinstance(d.body[0], nn.Conv2d) and isinstance(d.body[1], nn.LeakyReLU)
    assert d.body[1].negative_slope == 0.2
    weights = torch.cat([m.weight.detach().flatten() for m in g.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(float(weights.std()) - 0.02) < 0.002  # N(0, 0.02)
    with pytest.raises(ValueError, match="allowed 28, 32, 64"):
        Generator(32, 1, 48)


def test_vae_reparameterization_and_loss_by_hand() -> None:
    torch.manual_seed(0)
    vae = ConvVAE(1, 28, latent=4)
    x = torch.rand(3, 1, 28, 28)
    logits, mu, logvar = vae(x)
    assert logits.shape == x.shape and mu.shape == (3, 4) and logvar is not None
    loss, recon, kl = vae_loss(logits, x, mu, logvar)
    loss.backward()
    assert vae.to_stats.weight.grad is not None  # gradients reach mu and sigma through z
    # KL of N(mu, sigma^2) against N(0, 1) for one image, one latent: by hand
    mu1, logvar1 = torch.tensor([[1.0]]), torch.tensor([[math.log(4.0)]])
    _, _, kl1 = vae_loss(torch.zeros(1, 1), torch.zeros(1, 1), mu1, logvar1)
    assert kl1.item() == pytest.approx(-0.5 * (1 + math.log(4.0) - 1.0 - 4.0))
    plain = ConvVAE(1, 28, latent=4, variational=False).eval()
    out, code, none = plain(x)
    assert none is None and code.shape == (3, 4)
    assert vae_loss(out, x, code, None)[2].item() == 0.0


def test_spectral_norm_discriminator_has_no_batchnorm_and_unit_spectral_norm() -> None:
    from raydl.gen.models import Discriminator

    torch.manual_seed(0)
    d = Discriminator(1, 28, width=8, norm="spectral")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    d.train()
    for _ in range(20):  # power iterations converge during training forwards
        d(torch.randn(4, 1, 28, 28))
    d.eval()
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert float(sigma) == pytest.approx(1.0, abs=0.05)


def test_conditional_generator_draws_the_asked_class_and_needs_labels() -> None:
    torch.manual_seed(0)
    g = Generator(8, 1, 28, width=8, classes=10).eval()
    z = torch.randn(1, 8).expand(10, 8)  # one noise vector, ten classes
    images = g(z, torch.arange(10))
    assert images.shape == (10, 1, 28, 28)
    assert all(not torch.equal(images[0], images[k]) for k in range(1, 10))  # the class is an input
    assert torch.equal(g(z[:2], torch.tensor([3, 3]))[0], g(z[:2], torch.tensor([3, 3]))[1])
    with pytest.raises(ValueError, match="needs the labels"):
        g(z)
    # the one-hot code widens only the first layer's input
    assert g.project[0].in_channels == 8 + 10


@pytest.mark.parametrize("norm", ["batch", "spectral"])
def test_projection_discriminator_adds_class_embedding_times_pooled_features(norm: str) -> None:
    torch.manual_seed(0)
    d = Discriminator(1, 28, width=8, norm=norm, classes=10).eval()
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 3, 3, 9])
    h = d.body(x)
    by_hand = d.head(h).view(-1) + (d.embed(y) * h.sum(dim=(2, 3))).sum(dim=1)
    assert torch.allclose(d(x, y), by_hand, atol=1e-6)
    assert not torch.allclose(d(x, y), d(x, torch.tensor([1, 1, 1, 1])))  # the label changes the verdict
    with pytest.raises(ValueError, match="needs the labels"):
        d(x)
    plain = Discriminator(1, 28, width=8, norm=norm)  # unconditional: no embedding, old state dicts load
    assert not any(k.startswith("embed") for k in plain.state_dict())
