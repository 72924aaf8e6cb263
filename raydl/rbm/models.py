"""Restricted Boltzmann machines and their contrastive-divergence gradients, pure torch.

- `BernoulliRBM`: binary visible and hidden units (pixels in [0, 1] are taken as the
  visible units' probabilities, as scikit-learn's BernoulliRBM takes them).
- `SoftmaxRBM`: the RBM for collaborative filtering of Salakhutdinov, Mnih & Hinton (2007):
  each visible unit is a softmax over K rating values; each user is an RBM over the items
  they rated, all users sharing the weights. A missing rating has no visible unit: it
  adds nothing to the hidden units' input and gets no gradient.
- `stacked_classifier`: a DBN's RBMs as a feed-forward net (sigmoid layers) with a
  softmax head, for fine-tuning by backpropagation.

A gradient here is the CD estimate of the log-likelihood's gradient (ascent direction),
averaged over the batch (`CD.ascent`, in the order of `parameters()`): the positive phase
at the data, the negative phase after k Gibbs steps from the data (CD-k) or from
persistent chains (PCD-k). Hidden units driven by data are sampled as binary states; the
statistics use their probabilities (Hinton's guide, section 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class CD:
    """One CD estimate: the ascent direction per parameter and where the chains ended."""

    ascent: list[torch.Tensor]
    chains: torch.Tensor


def _init_weight(shape: tuple[int, ...], generator: torch.Generator | None) -> nn.Parameter:
    # N(0, 0.01^2), as in Hinton's guide and scikit-learn's BernoulliRBM
    return nn.Parameter(torch.randn(shape, generator=generator) * 0.01)


class BernoulliRBM(nn.Module):
    """Binary visible units v, binary hidden units h; E(v, h) = -v.b - h.c - h W v.
    `weight` has nn.Linear's layout (hidden x visible), so a DBN layer copies it as is."""

    def __init__(self, n_visible: int, n_hidden: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.weight = _init_weight((n_hidden, n_visible), generator)
        self.visible_bias = nn.Parameter(torch.zeros(n_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden))

    @torch.no_grad()
    def init_visible_bias(self, v: torch.Tensor) -> None:
        """b_i = log(p_i / (1 - p_i)), p_i the mean of visible unit i over the training data
        `v` (Hinton's guide, section 8), clipped to [0.001, 0.999] for units always off or on:
        the weights then need not learn the mean image first, the same in every hidden unit."""
        p = v.mean(0).clamp(1e-3, 1 - 1e-3)
        self.visible_bias.copy_(torch.log(p / (1 - p)))

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """p(h_j = 1 | v) = sigmoid(c_j + W_j . v)."""
        return torch.sigmoid(F.linear(v, self.weight, self.hidden_bias))

    def visible_probs(self, h: torch.Tensor) -> torch.Tensor:
        """p(v_i = 1 | h) = sigmoid(b_i + h . W_:i)."""
        return torch.sigmoid(F.linear(h, self.weight.t(), self.visible_bias))

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -v.b - sum_j softplus(c_j + W_j . v), per row: p(v) is proportional to exp(-F(v))."""
        return -(v @ self.visible_bias) - F.softplus(F.linear(v, self.weight, self.hidden_bias)).sum(-1)

    def gibbs(self, v: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
        """k steps of block Gibbs sampling from visible states v: binary visible states."""
        for _ in range(k):
            h = torch.bernoulli(self.hidden_probs(v), generator=generator)
            v = torch.bernoulli(self.visible_probs(h), generator=generator)
        return v

    def reconstruction_error(self, v: torch.Tensor) -> torch.Tensor:
        """Summed squared error of the mean-field one-step reconstruction, per row."""
        return ((v - self.visible_probs(self.hidden_probs(v))) ** 2).sum(-1)

    @torch.no_grad()
    def cd(self, v0: torch.Tensor, k: int, generator: torch.Generator | None,
           chains: torch.Tensor | None = None) -> CD:
        """The CD-k gradient at data v0 (PCD-k: the negative phase runs on from `chains`):
        <v h>_data - <v h>_model for W, and the same for the biases, batch means."""
        ph0 = self.hidden_probs(v0)
        vk = self.gibbs(v0 if chains is None else chains, k, generator)
        phk = self.hidden_probs(vk)
        d_weight = ph0.t() @ v0 / len(v0) - phk.t() @ vk / len(vk)
        d_visible = v0.mean(0) - vk.mean(0)
        d_hidden = ph0.mean(0) - phk.mean(0)
        return CD([d_weight, d_visible, d_hidden], vk)


def one_hot_ratings(stars: torch.Tensor, k: int) -> torch.Tensor:
    """Ratings 1..k (0: missing) as the softmax units' one-hot states, zero where missing."""
    return F.one_hot(stars.long(), k + 1)[..., 1:].float()


class SoftmaxRBM(nn.Module):
    """Softmax visible units over K ratings per item, binary hidden units (Salakhutdinov,
    Mnih & Hinton 2007, eqs. 1-2): p(v_i^k = 1 | h) = softmax_k(b_i^k + sum_j h_j W_ij^k),
    p(h_j = 1 | V) = sigmoid(c_j + sum over rated i, k of v_i^k W_ij^k).

    `visible` is a batch of users' ratings on a set of items, (users, items, K) one-hot,
    zero rows where a user has no rating; `items` names the columns (a batch touches only
    the items its users rated, so the rest of the weights neither act nor change)."""

    def __init__(self, n_items: int, k: int, n_hidden: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.k = k
        self.weight = _init_weight((n_items, k, n_hidden), generator)
        self.visible_bias = nn.Parameter(torch.zeros(n_items, k))
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden))

    def hidden_probs(self, visible: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """p(h = 1 | V) of each user, from their rated items only (missing rows are zero)."""
        return torch.sigmoid(torch.einsum("uik,ikf->uf", visible, self.weight[items]) + self.hidden_bias)

    def visible_logits(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """b_i^k + sum_j h_j W_ij^k for each user and item of `items`: (users, items, K)."""
        return torch.einsum("uf,ikf->uik", h, self.weight[items]) + self.visible_bias[items]

    def pair_logits(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """b_i^k + sum_j h_j W_ij^k for pairs: row p of h with item items[p], (pairs, K)."""
        return torch.einsum("pf,pkf->pk", h, self.weight[items]) + self.visible_bias[items]

    def expected_ratings(self, logits: torch.Tensor) -> torch.Tensor:
        """E[rating] = sum_k k softmax_k(logits) for ratings 1..K; at the logits of the
        hidden probabilities p(h | V), the paper's mean-field prediction."""
        values = torch.arange(1, self.k + 1, dtype=logits.dtype, device=logits.device)
        return torch.softmax(logits, -1) @ values

    def sample_visible(self, h: torch.Tensor, items: torch.Tensor, rated: torch.Tensor,
                       generator: torch.Generator | None) -> torch.Tensor:
        """One-hot samples of the softmax units, only where `rated` (users, items)."""
        probs = torch.softmax(self.visible_logits(h, items), -1)
        u = torch.rand(probs.shape[:-1], generator=generator, device=probs.device).unsqueeze(-1)
        index = (probs.cumsum(-1) < u).sum(-1).clamp(max=self.k - 1)  # inverse-CDF sampling
        return F.one_hot(index, self.k).float() * rated.unsqueeze(-1)

    @torch.no_grad()
    def cd(self, stars: torch.Tensor, items: torch.Tensor, k: int, generator: torch.Generator | None) -> CD:
        """The CD-k gradient of a batch of users' ratings `stars` (users, len(items)), 1..K,
        0 where missing: per user summed over their rated items, averaged over users;
        rows of items no user rated stay zero. `chains` of the result: the final V."""
        v0 = one_hot_ratings(stars, self.k)
        rated = stars > 0
        ph0 = self.hidden_probs(v0, items)
        h = ph0
        vk = v0
        for _ in range(k):
            h = torch.bernoulli(h, generator=generator)
            vk = self.sample_visible(h, items, rated, generator)
            h = self.hidden_probs(vk, items)
        n = len(stars)
        d_weight = torch.zeros_like(self.weight)
        d_weight[items] = (torch.einsum("uik,uf->ikf", v0, ph0) - torch.einsum("uik,uf->ikf", vk, h)) / n
        d_visible = torch.zeros_like(self.visible_bias)
        d_visible[items] = (v0 - vk).sum(0) / n
        d_hidden = (ph0 - h).mean(0)
        return CD([d_weight, d_visible, d_hidden], vk)

    @torch.no_grad()
    def init_visible_bias(self, counts: torch.Tensor) -> None:
        """b_i^k = log of item i's smoothed share of rating k (Hinton's guide, section 8:
        log p_i / (1 - p_i) for binary units; a softmax needs only log p_i^k): before
        any training the model predicts each item's rating distribution."""
        self.visible_bias.copy_(torch.log((counts + 1) / (counts.sum(-1, keepdim=True) + self.k)))


def stacked_classifier(rbms: list[BernoulliRBM], n_classes: int, generator: torch.Generator) -> nn.Sequential:
    """A DBN as a classifier: each RBM's weights and hidden biases as a sigmoid layer,
    then a linear softmax head (initialized from `generator`, the same on every worker)."""
    layers: list[nn.Module] = []
    for rbm in rbms:
        linear = nn.Linear(rbm.weight.shape[1], rbm.weight.shape[0])
        with torch.no_grad():
            linear.weight.copy_(rbm.weight)
            linear.bias.copy_(rbm.hidden_bias)
        layers += [linear, nn.Sigmoid()]
    head = nn.Linear(rbms[-1].weight.shape[0], n_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.01)
        head.bias.zero_()
    return nn.Sequential(*layers, head)
