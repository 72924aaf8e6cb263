"""Reproducible seeds: one base seed per experiment, a distinct stream per worker."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

# Runner r gets base + RUNNER_STRIDE * (r + 1); its env i gets that + i. The stride keeps
# streams apart for any realistic number of envs per runner, and the driver (r = -1)
# keeps the base seed itself.
RUNNER_STRIDE = 10_000


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def global_rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's global generator states, JSON-ready (a checkpoint
    restores them, so a resumed in-driver run continues bit for bit)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
    }


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Set the generators back to a `global_rng_state()`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def runner_seed(base: int, runner_index: int) -> int:
    """The seed of runner `runner_index` (-1: the driver's in-process runner)."""
    return base + RUNNER_STRIDE * (runner_index + 1)


def env_seeds(base: int, runner_index: int, num_envs: int, generation: int = 0) -> list[int]:
    """Seeds of the envs of one runner; `generation` counts resumes so a resumed run
    does not replay the episodes it already saw."""
    start = runner_seed(base, runner_index) + generation * 1_000_003
    return [start + i for i in range(num_envs)]


# A replaced runner (its actor died) folds its restart count into the generation it seeds
# its envs with, so it never replays the episodes its predecessors saw; resumes stay below
# the stride, so (generation, restarts) pairs never collide.
RESTART_STRIDE = 1_000


def restart_generation(generation: int, restarts: int) -> int:
    """The env-seed generation of a runner replaced `restarts` times (0: `generation`)."""
    return generation + RESTART_STRIDE * restarts


def restart_rng_state(
    base: int, runner_index: int, generation: int, restarts: int
) -> dict[str, Any]:
    """A fresh RNG state for a replaced runner: a stream distinct from its predecessors'
    (they start from `runner_seed`), so it does not repeat their actions either."""
    rng = np.random.default_rng([runner_seed(base, runner_index), generation, restarts])
    return rng.bit_generator.state
