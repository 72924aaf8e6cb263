"""Experiment files: the sections every kind shares, strict loading, `--set` overrides.

An experiment is a YAML mapping whose `kind` picks a top-level dataclass from the
registry. Every field of every section is declared with `param(...)` (raydl.fields),
which carries a one-line help text and the allowed range, so that a bad value is reported
as ``algo.lr: expected a number > 0, got -1`` and never as a traceback.
"""

from __future__ import annotations

import copy
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from raydl.errors import ConfigError, quote
# re-exported: the typed fields and strict building are part of the config API
from raydl.fields import from_dict, param, section, to_dict
from raydl.files import write_atomic

__all__ = ["from_dict", "param", "section", "to_dict"]


# ----------------------------------------------------------------------------- sections
# Sections shared by every kind. Kind-specific sections live next to their algorithm.


@dataclass
class StopConfig:
    """When a run ends: the first criterion reached stops it (0 disables a criterion)."""

    env_steps: int = param(100_000, "stop after this many environment steps (RL kinds)", ge=0)
    episode_return_mean: float | None = param(
        None, "stop once the mean return of the last 100 training episodes reaches this"
    )
    eval_return_mean: float | None = param(
        None, "stop once an evaluation's mean return reaches this (RL kinds; needs eval.every)"
    )
    iterations: int = param(0, "stop after this many training iterations (0: no limit)", ge=0)
    time_s: float = param(0.0, "stop after this many wall-clock seconds (0: no limit)", ge=0)


@dataclass
class RunnersConfig:
    """Who steps the environments: the driver process (num: 0) or N Ray actors."""

    num: int = param(0, "number of env-runner Ray actors; 0 samples in the driver process", ge=0)
    envs_per_runner: int = param(1, "gymnasium vector-env size inside each runner", ge=1)
    rollout_length: int = param(
        4, "vector-env steps per sample request (per runner, per env)", ge=1
    )
    cpus_per_runner: float = param(1.0, "CPUs reserved for each runner actor", gt=0)
    sync_weights_every: int = param(
        1, "send fresh weights to a runner after every N of its sample requests", ge=1
    )
    resources: dict[str, float] = param(
        default_factory=dict, help="custom Ray resources each runner actor requires"
    )
    max_restarts: int = param(
        100, "replace a dead runner actor up to this many times per runner, then fail", ge=0
    )
    max_env_errors: int = param(
        5, "an env that raises in step/reset is recreated (its open episodes dropped); "
        "stop after this many failures with no successful step in between", ge=1
    )
    request_timeout_s: float = param(
        300.0, "a runner actor that has not answered a request (or a state call) for this "
        "long is taken as hung and replaced like a dead one (0: wait forever)", ge=0
    )


@dataclass
class AtariConfig:
    """DeepMind Atari preprocessing (used for ALE/* envs only)."""

    sticky_actions: float = param(0.25, "repeat-previous-action probability (v5: 0.25)", ge=0, le=1)
    noop_max: int = param(30, "random no-ops after reset (up to)", ge=0)
    frame_skip: int = param(4, "emulator frames per agent step (max over the last two)", ge=1)
    frame_stack: int = param(4, "frames stacked into one observation", ge=1)
    screen_size: int = param(84, "square grayscale frame size", ge=16)
    terminal_on_life_loss: bool = param(True, "a lost life is a terminal for learning")
    clip_rewards: bool = param(True, "learn from the sign of rewards (scores stay raw)")


@dataclass
class CheckpointConfig:
    """How often the whole training state is written, and how many copies are kept."""

    every: int = param(10, "write a checkpoint every N iterations (0: only at the end)", ge=0)
    keep: int = param(3, "keep the newest N checkpoints", ge=1)
    at_end: bool = param(True, "write a checkpoint when the run ends")


@dataclass
class WandbConfig:
    """Weights & Biases: the config and every metrics row in a W&B run (pip install
    'raydl[wandb]'; WANDB_MODE=offline writes the run under RUN_DIR/wandb to sync later)."""

    enabled: bool = param(False, "log the config and each metrics row to a W&B run")
    project: str = param("raydl", "W&B project")
    entity: str | None = param(None, "W&B entity (user or team); none: your default")
    tags: list[str] = param(default_factory=list, help="tags of the W&B run")
    log_checkpoints: bool = param(False, "upload each checkpoint as a W&B artifact")


@dataclass
class MlflowConfig:
    """MLflow: the config as params and every metrics row as metrics of an MLflow run
    (pip install 'raydl[mlflow]')."""

    enabled: bool = param(False, "log the config and each metrics row to an MLflow run")
    tracking_uri: str | None = param(
        None, "MLflow tracking URI; none: $MLFLOW_TRACKING_URI, else sqlite:///RUN_DIR/mlflow.db "
        "(a search: SEARCH_DIR/mlflow.db)"
    )
    experiment: str = param("raydl", "MLflow experiment name")
    log_checkpoints: bool = param(False, "log each checkpoint as MLflow run artifacts")


@dataclass
class EvalConfig:
    """Evaluation during training (RL kinds): whole episodes of the greedy policy on seeds
    of their own, in an eval runner actor beside training (in the driver when
    runners.num: 0). Iteration i evaluates the weights it starts with (i = 1, 1 + every,
    1 + 2 every, ...: the first evaluation is of the untrained policy)."""

    every: int = param(0, "evaluate every N training iterations (0: never)", ge=0)
    episodes: int = param(10, "episodes per evaluation", ge=1)
    epsilon: float | None = param(
        None, "random-action rate while evaluating (default: 0, or 0.05 on Atari as in the "
        "DQN papers)", ge=0, le=1
    )
    seed: int | None = param(
        None, "base seed of the eval episodes (default: the experiment's seed); episode k "
        "uses seed + 1000000007 + k, never a training seed", ge=0
    )
    cpus: float = param(1.0, "CPUs reserved for the eval runner actor", gt=0)
    video_every: int = param(
        0, "record the first episode of the evaluations of the weights after every N "
        "iterations (the untrained ones too) as MP4 in RUN_DIR/videos and TensorBoard "
        "(0: never; a multiple of eval.every)", ge=0
    )
    video_fps: int = param(30, "frames per second of the videos", ge=1)
    video_max_frames: int = param(1_000, "frames recorded per video, at most", ge=1)


@dataclass
class LogConfig:
    """What the run prints and writes besides metrics.jsonl."""

    progress: bool = param(True, "show a live progress line")
    tensorboard: bool = param(True, "write TensorBoard event files")
    curve: bool = param(True, "write curve.png at each checkpoint and at the end")
    wandb: WandbConfig = section(WandbConfig, "Weights & Biases tracking")
    mlflow: MlflowConfig = section(MlflowConfig, "MLflow tracking")


# Choices that several experiment sections share (raydl.nn builds what they name).
Activation = Literal["relu", "leaky_relu", "tanh", "sigmoid"]
Optimizer = Literal["adam", "sgd", "rmsprop"]
Loss = Literal["huber", "mse"]
Nonfinite = Literal["stop", "skip"]  # a NaN/inf loss or gradient: stop the run, or skip the update


@dataclass
class RLExperiment:
    """What every RL experiment file holds; each kind narrows `kind` and adds `algo`."""

    kind: str = param("dqn", "registry key")
    env: str = param(
        "CartPole-v1", "gymnasium environment id (ALE/* for Atari, MODULE:ENV_ID for your own)"
    )
    seed: int = param(0, "base seed; runner r and env i derive distinct seeds from it", ge=0)
    stop: StopConfig = section(StopConfig, "when to stop")
    runners: RunnersConfig = section(RunnersConfig, "environment runners")
    checkpoint: CheckpointConfig = section(CheckpointConfig, "checkpointing")
    log: LogConfig = section(LogConfig, "outputs")
    atari: AtariConfig = section(AtariConfig, "Atari preprocessing (ALE/* envs)")
    eval: EvalConfig = section(EvalConfig, "evaluation during training")

    def validate(self) -> None:
        """Checks between the shared sections; each kind's own `validate` calls this."""
        if self.stop.eval_return_mean is not None and not self.eval.every:
            raise ConfigError("stop.eval_return_mean: needs evaluations; set eval.every "
                              "(iterations between them) or remove it")
        video, every = self.eval.video_every, self.eval.every
        if video and (not every or video % every):
            raise ConfigError(f"eval.video_every: {video} is not a multiple of eval.every "
                              f"({every}); videos are recorded in evaluations")


# ----------------------------------------------------------------------------- loading


# libyaml's parser when PyYAML has it (the same safe loader, ten times faster).
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """yaml.safe_load: plain data only, never arbitrary Python objects."""
    return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``algo.lr=3e-4`` into (["algo", "lr"], 3e-4); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {quote(text)}: expected KEY=VALUE, e.g. algo.lr=3e-4")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in parts):
        raise ConfigError(f"--set {quote(text)}: {quote(key)} is not a dotted key like algo.lr")
    try:
        value = safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError):
        # Not YAML (or an int past Python's 4300-digit limit, or nesting past the
        # recursion limit): let the field's type decide; a string is a fine guess.
        value = raw
    return parts, value


# Mappings whose keys are themselves dotted field names (a search space): in
# `--set tune.space.algo.lr=...` everything after the mapping's path is one key.
DOTTED_KEY_MAPPINGS = (("tune", "space"), ("tune", "scheduler", "mutations"))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `--set` overrides to a raw experiment mapping (before typed loading)."""
    for text in overrides:
        parts, value = parse_override(text)
        for prefix in DOTTED_KEY_MAPPINGS:
            if tuple(parts[: len(prefix)]) == prefix and len(parts) > len(prefix) + 1:
                parts = [*prefix, ".".join(parts[len(prefix):])]
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"--set {quote(text)}: {'.'.join(parts[: i + 1])} is a value, not a section"
                )
            node = child
        node[parts[-1]] = value
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    """Read an experiment file as a mapping, with one-line errors for unreadable files."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such experiment file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["unreadable"])[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except (ValueError, RecursionError) as exc:  # a 5,000-digit int, [[[[... 2,000 deep
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML: {reason}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def load_experiment(
    source: str | Path | dict[str, Any], overrides: list[str] | None = None
) -> Any:
    """Load an experiment (file path, built-in name, or mapping) into its dataclass.

    A `tune:` section is read only by `raydl tune` (raydl.tune) and ignored here."""
    data = read_experiment(source, overrides)
    data.pop("tune", None)
    return experiment_from_data(data)


def read_experiment(source: str | Path | dict[str, Any], overrides: list[str] | None = None) -> dict[str, Any]:
    """The raw mapping of an experiment (file, name or mapping) with `--set` overrides applied."""
    from raydl import registry

    if isinstance(source, dict):
        data = copy.deepcopy(source)
    else:
        data = read_yaml(registry.find_experiment(str(source)))
    return apply_overrides(data, overrides or [])


def experiment_from_data(data: dict[str, Any]) -> Any:
    """The typed experiment of a raw mapping (without a `tune:` section): values checked,
    the kind's own defaults filled in where the mapping leaves a field out. Pure: nothing
    outside the mapping is looked at (that is the check step, `registry.check`)."""
    from raydl import registry

    kind = data.get("kind")
    if kind is None:
        raise ConfigError(f"kind: missing; allowed: {', '.join(registry.kinds())}")
    spec = registry.spec(kind)
    return from_dict(registry.config_class(kind), _with_defaults(data, spec.defaults))


def _with_defaults(data: dict[str, Any], defaults: typing.Mapping[str, Any]) -> dict[str, Any]:
    """`data` with each dotted default set where it is absent (or null); a section that is
    not a mapping is left for the typed loading to refuse."""
    if not defaults:
        return data
    data = copy.deepcopy(data)
    for dotted, value in defaults.items():
        *path, last = dotted.split(".")
        node: Any = data
        for part in path:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                break
        else:
            if node.get(last) is None:
                node[last] = value
    return data


def dump_yaml(cfg: Any, path: Path) -> None:
    """Write the resolved config, atomically, so the run can be repeated from it."""
    write_atomic(yaml.safe_dump(to_dict(cfg), sort_keys=False), path)
