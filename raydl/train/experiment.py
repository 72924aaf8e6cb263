"""The sections every fit experiment shares: Ray Train workers, checkpoints, outputs.

Each family's experiment (raydl.sl.experiment, raydl.gen.experiment) extends
`FitExperiment`, narrows `kind` and adds its own `data:`, `model:` and `train:` sections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from raydl.config import CheckpointConfig, LogConfig, param, section


@dataclass
class ScalingSection:
    """How many Ray Train workers, on what."""

    workers: int = param(2, "data-parallel workers", ge=1)
    use_gpu: bool | Literal["auto"] = param("auto", "GPU per worker: true, false, auto (if the cluster has GPUs)")
    cpus_per_worker: float = param(1.0, "CPUs per worker", gt=0)
    max_failures: int = param(0, "restart the worker group from the newest checkpoint up to N times", ge=0)


@dataclass
class FitExperiment:
    """What every fit experiment file holds; each family narrows `kind` and adds its
    `data`, `model` and `train` sections (a resolved config.yaml lists them after these)."""

    kind: str = param("classify", "registry key")
    seed: int = param(0, "seed of weights, data order and (gan, vae) noise", ge=0)
    scaling: ScalingSection = section(ScalingSection, "Ray Train workers")
    checkpoint: CheckpointConfig = section(CheckpointConfig, "checkpoints (every N epochs, keep N)")
    log: LogConfig = section(LogConfig, "outputs")

    @property
    def time_budget_s(self) -> float:
        """Training time after which the epoch loop stops at an epoch's end, counted across
        restores (0: none). A family with a `train.max_minutes` field returns it."""
        return 0.0
