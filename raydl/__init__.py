"""raydl: reinforcement learning and deep learning on Ray, from a laptop to a cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from raydl.run import RunResult


def run(experiment: Any = None, overrides: list[str] | None = None, **kwargs: Any) -> RunResult:
    """Train an experiment (path, name in experiments/, or mapping); see raydl.run.train."""
    from raydl.run import train

    return train(experiment, overrides, **kwargs)


__all__ = ["__version__", "run"]
