"""The RBM kinds' entry point for the registry: `RBMTrainer.fit` runs a whole run of
`rbm`, `dbn` or `cf_rbm` as one Ray Train fit of the epoch loop (raydl.train.loop) over
the kind's task (raydl.rbm.tasks, raydl.rbm.cf)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raydl.train.loop import run_fit

TASKS = {"rbm": "raydl.rbm.tasks:RBMTask", "dbn": "raydl.rbm.tasks:DBNTask", "cf_rbm": "raydl.rbm.cf:CFRBMTask"}


class RBMTrainer:
    """The registry's algorithm class for the RBM kinds: `fit` runs a whole run."""

    @staticmethod
    def fit(cfg: Any, run_dir: Path, *, resume: bool, progress: bool,
            callbacks: list[Any] | None = None) -> dict[str, Any]:
        """Train to the last epoch; the last epoch's metrics."""
        return run_fit(cfg, run_dir, TASKS[cfg.kind], resume=resume, progress=progress, callbacks=callbacks)
