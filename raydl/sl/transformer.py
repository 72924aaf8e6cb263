"""Transformers of the supervised kinds, on torch's own attention
(`torch.nn.functional.scaled_dot_product_attention`):

- `TransformerClassifier` (`model.arch: transformer`): an encoder over a document's word
  ids; a key padding mask keeps padding out of every attention and out of the pooling
  (the mean of the real tokens, or a CLS token).
- `TransformerLanguageModel` (`model.arch: transformer_lm`): a decoder-only (causal)
  model over `data.seq_len` tokens, its output layer tied to the embedding on request.

Both are pre-norm (GPT-2 / nanoGPT): x + attn(LN(x)), x + MLP(LN(x)), a final LayerNorm;
weights start from N(0, 0.02), residual projections from N(0, 0.02 / sqrt(2 * layers)).
The language model's `forward(x, state)` has the LSTM's signature and gives no state
back (None), so one task and one evaluation serve both.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from raydl.sl.experiment import ModelConfig

INIT_STD = 0.02


class SelfAttention(nn.Module):
    """Multi-head self-attention: one projection to queries, keys and values, torch's
    scaled dot-product attention, one output projection."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, real: torch.Tensor | None, causal: bool) -> torch.Tensor:
        """`real`: (B, T) true for the tokens keys may come from (None: all)."""
        b, t, width = x.shape
        q, k, v = (part.view(b, t, self.heads, width // self.heads).transpose(1, 2)
                   for part in self.qkv(x).split(width, dim=2))
        mask = real[:, None, None, :] if real is not None else None  # broadcast over heads, queries
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, width))


class Block(nn.Module):
    """A pre-norm transformer block: attention, then a GELU MLP, each a residual branch."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        width = cfg.embedding
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = SelfAttention(width, cfg.heads, cfg.dropout)
        self.mlp = nn.Sequential(nn.Linear(width, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, width))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, real: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), real, causal))
        return x + self.dropout(self.mlp(self.norm2(x)))


class Positions(nn.Module):
    """Position encodings added to the token embeddings: learned (one vector per
    position) or the fixed sinusoids of Vaswani et al. (2017), for up to `context` tokens."""

    def __init__(self, kind: str, context: int, width: int) -> None:
        super().__init__()
        self.learned = nn.Embedding(context, width) if kind == "learned" else None
        position = torch.arange(context, dtype=torch.float32)[:, None]
        rate = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
        table = torch.zeros(context, width)
        table[:, 0::2] = torch.sin(position * rate)
        table[:, 1::2] = torch.cos(position * rate)[:, : width // 2]
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if self.learned is not None:
            return x + self.learned.weight[:t]
        return x + self.table[:t]


class Encoder(nn.Module):
    """Positions, dropout, the blocks, a final LayerNorm: what both transformers do to
    their embedded tokens."""

    def __init__(self, cfg: ModelConfig, context: int) -> None:
        super().__init__()
        self.positions = Positions(cfg.positional, context, cfg.embedding)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.embedding)

    def forward(self, h: torch.Tensor, real: torch.Tensor | None, causal: bool) -> torch.Tensor:
        """`h`: embedded tokens (B, T, E), before the positions."""
        h = self.dropout(self.positions(h))
        for block in self.blocks:
            h = block(h, real, causal)
        return self.norm(h)


def init_weights(net: nn.Module, layers: int) -> None:
    """GPT-2's initialization: N(0, 0.02) for linear and embedding weights, zero biases,
    residual output projections scaled down by sqrt(2 * layers); padding rows zero."""
    for name, module in net.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            residual = name.endswith("attn.proj") or name.endswith("mlp.2")
            std = INIT_STD / math.sqrt(2 * layers) if residual else INIT_STD
            nn.init.normal_(module.weight, 0.0, std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


class TransformerClassifier(nn.Module):
    """Documents (padded word ids and their lengths) -> class logits."""

    def __init__(self, vocab_size: int, num_classes: int, cfg: ModelConfig, context: int) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.embedding)) if cfg.pooling == "cls" else None
        self.embed = nn.Embedding(vocab_size, cfg.embedding, padding_idx=0)  # 0 pads
        self.encoder = Encoder(cfg, context + (self.cls is not None))
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.embedding, num_classes)
        init_weights(self, cfg.layers)
        if self.cls is not None:
            nn.init.normal_(self.cls, 0.0, INIT_STD)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """`lengths` (B,): the real tokens of each row, padding after them (None: no padding)."""
        b, t = x.shape
        real = torch.arange(t, device=x.device)[None, :] < lengths.to(x.device)[:, None] \
            if lengths is not None else None
        h = self.embed(x)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(b, 1, -1), h], dim=1)
            if real is not None:
                real = torch.cat([real.new_ones(b, 1), real], dim=1)
        h = self.encoder(h, real, causal=False)
        if self.cls is not None:
            pooled = h[:, 0]
        elif real is None:
            pooled = h.mean(dim=1)
        else:
            weights = real.unsqueeze(2).to(h.dtype)
            pooled = (h * weights).sum(dim=1) / weights.sum(dim=1)
        return self.head(self.dropout(pooled))


class TransformerLanguageModel(nn.Module):
    """Token ids (B, T), T <= `context` -> next-token logits (B, T, V), each position
    seeing itself and the ones before it only."""

    def __init__(self, vocab_size: int, cfg: ModelConfig, context: int) -> None:
        super().__init__()
        self.context = context
        self.embed = nn.Embedding(vocab_size, cfg.embedding)
        self.encoder = Encoder(cfg, context)
        self.decoder = nn.Linear(cfg.embedding, vocab_size, bias=False)
        init_weights(self, cfg.layers)
        if cfg.tie_weights:  # Press & Wolf (2017), as GPT-2
            self.decoder.weight = self.embed.weight

    def forward(self, x: torch.Tensor, state: None = None) -> tuple[torch.Tensor, None]:
        """(logits, None): a window is all the context there is, no state goes on."""
        return self.decoder(self.encoder(self.embed(x), None, causal=True)), None


def build_transformer(cfg: ModelConfig, num_classes: int, vocab_size: int, context: int) -> nn.Module:
    """`model.arch` transformer (a classifier of `num_classes`) or transformer_lm, over
    `vocab_size` tokens and sequences of up to `context`."""
    if cfg.arch == "transformer_lm":
        return TransformerLanguageModel(vocab_size, cfg, context)
    return TransformerClassifier(vocab_size, num_classes, cfg, context)
