"""Experiment files: typed dataclass sections, strict loading, `--set` overrides.

An experiment is a YAML mapping whose `kind` picks a top-level dataclass from the
registry. Every field of every section is declared with `param(...)`, which carries a
one-line help text and the allowed range, so that a bad value is reported as
``algo.lr: expected a number > 0, got -1`` and never as a traceback.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from raydl.errors import ConfigError, quote

T = TypeVar("T")

# Numbers written as strings are accepted for numeric fields because PyYAML reads `1e-3`
# (no dot) as a string, a classic trap; anything else that is a string stays an error.
_NUMBER_RE = re.compile(r"^[+-]?(\d[\d_]*\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def param(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with a help text and optional numeric bounds."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type[T], help: str = "") -> Any:
    """A nested section field whose default is the section's own defaults."""
    return field(default_factory=cls, metadata={"help": help})


# ----------------------------------------------------------------------------- sections
# Sections shared by every kind. Kind-specific sections live next to their algorithm.


@dataclass
class StopConfig:
    """When a run ends: the first criterion reached stops it (0 disables a criterion)."""

    env_steps: int = param(100_000, "stop after this many environment steps (RL kinds)", ge=0)
    episode_return_mean: float | None = param(
        None, "stop once the mean return of the last 100 training episodes reaches this"
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


# ----------------------------------------------------------------------------- loading


def _bounds_text(meta: typing.Mapping[str, Any]) -> str:
    parts = []
    for key, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if meta.get(key) is not None:
            parts.append(f"{sym} {meta[key]:g}")
    return " and ".join(parts)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        names = [_type_name(a) for a in get_args(tp) if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in get_args(tp) else "")
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of names to {_type_name(get_args(tp)[1])}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Return `value` converted to type `tp`, or raise ConfigError naming `where`."""
    if tp is Any:  # checked later by whatever reads it (e.g. a search-space value)
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _coerce_union(value, tp, where)
    if origin is Literal:
        return _coerce_literal(value, get_args(tp), where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {quote(value)}")
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {quote(value)}")
        key_tp, val_tp = get_args(tp)
        return {
            _coerce(k, key_tp, f"{where} key"): _coerce(v, val_tp, f"{where}.{k}")
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    return _coerce_scalar(value, tp, where)


def _coerce_union(value: Any, tp: Any, where: str) -> Any:
    """The first member of the union (`X | None`, `bool | Literal[...]`) that takes it."""
    args = get_args(tp)
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(value, arg, where)
        except ConfigError:
            continue
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {quote(value)}")


def _coerce_literal(value: Any, allowed: tuple[Any, ...], where: str) -> Any:
    if value in allowed and type(value) is type(allowed[0]):
        return value
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"{where}: {quote(value)} is not allowed{hint}; allowed: {', '.join(map(repr, allowed))}"
    )


def _coerce_scalar(value: Any, tp: Any, where: str) -> Any:
    """bool, int, float (numbers written as strings too: YAML's `1e-3` trap) or str."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {quote(value)}")
    if tp in (int, float) and isinstance(value, str) and _NUMBER_RE.match(value.strip()):
        value = float(value.replace("_", ""))
    if tp is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {quote(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: expected a finite number, got {quote(value)}")
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {quote(value)}")
    if tp is str:
        if isinstance(value, str) and value:
            return value
        raise ConfigError(f"{where}: expected a non-empty string, got {quote(value)}")
    raise ConfigError(f"{where}: unsupported field type {tp!r}")  # a bug in a section


def _check_bounds(value: Any, meta: typing.Mapping[str, Any], where: str) -> None:
    if isinstance(value, list):  # a list field's bounds hold for each item (layer widths)
        for i, item in enumerate(value):
            _check_bounds(item, meta, f"{where}[{i}]")
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    ok = (
        (meta.get("gt") is None or value > meta["gt"])
        and (meta.get("ge") is None or value >= meta["ge"])
        and (meta.get("lt") is None or value < meta["lt"])
        and (meta.get("le") is None or value <= meta["le"])
    )
    if not ok:
        raise ConfigError(f"{where}: expected a number {_bounds_text(meta)}, got {quote(value)}")


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass `cls` from a mapping, strictly: unknown keys and bad values raise."""
    label = where or "experiment"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: expected a mapping of keys to values, got {quote(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = key if isinstance(key, str) and len(key) <= 80 else quote(key)
        path = f"{where}.{name}" if where else name
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{path}: unknown key{hint}; allowed: {', '.join(sorted(fields))}"
            )
        coerced = _coerce(value, hints[key], path)
        _check_bounds(coerced, fields[key].metadata, path)
        kwargs[key] = coerced
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:  # a nested section's check names where it sits
            if where and not str(exc).startswith(where.split(".")[0]):
                raise ConfigError(f"{where}: {exc}") from None
            raise
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain, YAML-ready dict of a config dataclass."""
    return dataclasses.asdict(obj)


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
    """Load an experiment (file path, name in experiments/, or mapping) into its dataclass.

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
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    tmp.replace(path)
