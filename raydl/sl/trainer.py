"""The supervised kinds' entry points for the registry: `kind: classify` and
`kind: language_model`.

`check` looks at the world once before a run (data files, pretrained weights);
`SupervisedTrainer.fit` runs a whole run as one Ray Train fit of the epoch loop
(raydl.train.loop) over `SupervisedTask` (raydl.sl.tasks). The experiment file is
raydl.sl.experiment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raydl.sl.data import check_data
from raydl.sl.experiment import SupervisedExperiment
from raydl.sl.models import check_pretrained
from raydl.train.loop import run_fit

TASK = "raydl.sl.tasks:SupervisedTask"


def check(cfg: SupervisedExperiment) -> None:
    """The check step of kinds classify and language_model: the data files are there
    (or may be downloaded), pretrained weights are at hand."""
    check_data(cfg.data)
    check_pretrained(cfg.model.arch, cfg.model)


class SupervisedTrainer:
    """The registry's algorithm class for supervised kinds: `fit` runs a whole run."""

    @staticmethod
    def fit(cfg: SupervisedExperiment, run_dir: Path, *, resume: bool, progress: bool,
            callbacks: list[Any] | None = None) -> dict[str, Any]:
        """Train to the last epoch (or early stop); the last epoch's metrics."""
        return run_fit(cfg, run_dir, TASK, resume=resume, progress=progress, callbacks=callbacks)
