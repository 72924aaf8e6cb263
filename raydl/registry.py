"""Kind name -> (experiment config class, algorithm class), imported lazily.

Lazy imports keep `raydl list` and config errors fast: torch and Ray load only when a
kind is actually built.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import Any

from raydl.config import ConfigError

# kind -> "module:ConfigClass:AlgorithmClass"
_KINDS: dict[str, str] = {
    "dqn": "raydl.rl.dqn:DQNExperiment:DQN",
    # One experiment class for the actor-critic family; the kind sets the defaults.
    "a3c": "raydl.rl.a3c:ActorCriticExperiment:ActorCriticAlgorithm",
    "a2c": "raydl.rl.a3c:ActorCriticExperiment:ActorCriticAlgorithm",
    "reinforce": "raydl.rl.a3c:ActorCriticExperiment:ActorCriticAlgorithm",
    # Supervised and generative kinds run one Ray Train fit per run (their class has `fit`).
    "classify": "raydl.sl.trainer:SupervisedExperiment:SupervisedTrainer",
    "language_model": "raydl.sl.trainer:SupervisedExperiment:SupervisedTrainer",
    "gan": "raydl.gen.trainer:GenerativeExperiment:GenerativeTrainer",
    "vae": "raydl.gen.trainer:GenerativeExperiment:GenerativeTrainer",
}

EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "experiments"


def kinds() -> list[str]:
    """All registered kinds, sorted."""
    return sorted(_KINDS)


def _entry(kind: Any) -> tuple[str, str, str]:
    if not isinstance(kind, str) or kind not in _KINDS:
        close = difflib.get_close_matches(str(kind), list(_KINDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"kind: unknown kind {kind!r}{hint}; allowed: {', '.join(kinds())}")
    module, config_name, algo_name = _KINDS[kind].split(":")
    return module, config_name, algo_name


def config_class(kind: Any) -> type:
    """The top-level experiment dataclass of `kind`."""
    module, config_name, _ = _entry(kind)
    return getattr(importlib.import_module(module), config_name)


def algorithm_class(kind: Any) -> type:
    """The algorithm class (setup/step/save/restore) of `kind`."""
    module, _, algo_name = _entry(kind)
    return getattr(importlib.import_module(module), algo_name)


def experiment_files() -> list[Path]:
    """The experiment files shipped in experiments/."""
    return sorted(EXPERIMENTS_DIR.glob("*.yaml"))


def find_experiment(name: str) -> Path:
    """Resolve a path, or the name of a file in experiments/ (with or without .yaml)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (EXPERIMENTS_DIR / name, EXPERIMENTS_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    names = [p.stem for p in experiment_files()]
    close = difflib.get_close_matches(path.stem, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"{name}: no such experiment file or name{hint}; known names: {', '.join(names)}"
    )
