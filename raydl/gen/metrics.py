"""Offline sample-quality scores for generative models (issue 6), as pure functions.

FID and the Inception Score need Inception weights from the internet; these are their
analogues on a classifier trained by raydl itself:

- `classifier_score`: exp(E_x KL(p(y|x) || p(y))), the Inception Score's formula; 1 when
  every sample looks like the same class, up to the number of classes when samples are
  confidently classified and spread evenly over the classes;
- `frechet_distance`: the FID formula on (penultimate-layer) features,
  ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2));
- `class_coverage`: the share of classes that at least `min_share` of the samples fall in.
"""

from __future__ import annotations

import numpy as np


def classifier_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    """exp of the mean KL divergence between each p(y|x) (rows of `probs`) and their mean."""
    p = np.asarray(probs, dtype=np.float64)
    marginal = p.mean(axis=0, keepdims=True)
    kl = (p * (np.log(p + eps) - np.log(marginal + eps))).sum(axis=1)
    return float(np.exp(kl.mean()))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (rows = samples).

    Tr((S_a S_b)^(1/2)) is computed as the sum of the square roots of the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2), which is symmetric positive semi-definite: no complex
    round-off, no scipy."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (n, d) with the same d, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrt_psd(np.atleast_2d(cov_a))
    middle = root_a @ np.atleast_2d(cov_b) @ root_a
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    distance = ((mu_a - mu_b) ** 2).sum() + np.trace(np.atleast_2d(cov_a)) + np.trace(np.atleast_2d(cov_b)) - 2 * trace_sqrt
    return float(max(distance, 0.0))


def class_coverage(probs: np.ndarray, min_share: float = 0.0) -> float:
    """Share of the classes that more than `min_share` of the samples are assigned to
    (argmax), e.g. 1.0 when every digit 0-9 appears among the samples."""
    p = np.asarray(probs)
    counts = np.bincount(p.argmax(axis=1), minlength=p.shape[1])
    return float((counts > min_share * len(p)).mean())
