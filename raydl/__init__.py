"""raydl: reinforcement learning and deep learning on Ray, from a laptop to a cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from raydl.run import RunResult


def version() -> str:
    """The installed distribution's version (what pip installed); a checkout run without
    installing has no metadata, so the package's own `__version__`."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("raydl")
    except PackageNotFoundError:
        return __version__


def run(experiment: Any = None, overrides: list[str] | None = None, **kwargs: Any) -> RunResult:
    """Train an experiment (path, built-in name, or mapping); see raydl.run.train."""
    from raydl.run import train

    return train(experiment, overrides, **kwargs)


_TUNE_OPTIONS = ("num_samples", "out", "resume", "address", "echo")


def tune(path_or_spec: Any = None, overrides: list[str] | None = None, **kwargs: Any) -> Any:
    """Search an experiment's `tune:` space with Ray Tune; returns Ray's ResultGrid.

    Keyword arguments are `num_samples`, `out`, `resume`, `address`, `echo`, or field
    overrides with `__` for the dots: `raydl.tune("tune_dqn_cartpole", algo__gamma=0.98)`."""
    from raydl.tune import tune_experiment

    options = {k: kwargs.pop(k) for k in list(kwargs) if k in _TUNE_OPTIONS}
    sets = list(overrides or []) + [f"{k.replace('__', '.')}={v}" for k, v in kwargs.items()]
    return tune_experiment(path_or_spec, sets, **options)


__all__ = ["__version__", "run", "tune", "version"]
