"""The supervised kinds' entry points for the registry: `kind: classify` and
`kind: language_model`.

`SupervisedTrainer.fit` runs a whole run as one Ray Train fit of the epoch loop
(raydl.train.loop) over `SupervisedTask` (raydl.sl.tasks). The experiment file and
its check step are raydl.sl.experiment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raydl.sl.experiment import SupervisedExperiment
from raydl.train.loop import run_fit

TASK = "raydl.sl.tasks:SupervisedTask"


class SupervisedTrainer:
    """The registry's algorithm class for supervised kinds: `fit` runs a whole run."""

    @staticmethod
    def fit(cfg: SupervisedExperiment, run_dir: Path, *, resume: bool, progress: bool,
            callbacks: list[Any] | None = None) -> dict[str, Any]:
        """Train to the last epoch (or early stop); the last epoch's metrics."""
        return run_fit(cfg, run_dir, TASK, resume=resume, progress=progress, callbacks=callbacks)
