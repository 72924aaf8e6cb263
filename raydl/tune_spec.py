"""The `tune:` section of an experiment: a search space over any field by its dotted
name, the scheduler, the search algorithm; loaded and checked before any trial starts
(see raydl.tune for the search itself)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from raydl import registry
from raydl.config import experiment_from_data, from_dict, param, read_experiment, section
from raydl.errors import ConfigError


@dataclass
class Domain:
    """One search dimension: exactly one of the keys."""

    uniform: list[float] | None = param(None, "[low, high]")
    loguniform: list[float] | None = param(None, "[low, high], low > 0")
    randint: list[int] | None = param(None, "[low, high) integers")
    choice: list[Any] | None = param(None, "values sampled uniformly")
    grid: list[Any] | None = param(None, "values all tried (a grid axis)")

    def validate(self) -> None:
        set_keys = [k for k in ("uniform", "loguniform", "randint", "choice", "grid") if getattr(self, k) is not None]
        if len(set_keys) != 1:
            raise ConfigError(f"expected exactly one of uniform, loguniform, randint, choice, grid; got {set_keys or 'none'}")
        key = set_keys[0]
        values = getattr(self, key)
        if key in ("uniform", "loguniform", "randint"):
            if len(values) != 2 or not values[0] < values[1]:
                raise ConfigError(f"{key}: expected [low, high] with low < high, got {values}")
            if key == "loguniform" and values[0] <= 0:
                raise ConfigError(f"loguniform: low must be > 0, got {values[0]}")
        elif not values:
            raise ConfigError(f"{key}: expected a non-empty list of values")

    @property
    def kind(self) -> str:
        return next(k for k in ("uniform", "loguniform", "randint", "choice", "grid") if getattr(self, k) is not None)

    @property
    def values(self) -> list[Any]:
        return list(getattr(self, self.kind))

    def to_tune(self, grid_search: bool = True) -> Any:
        from ray import tune

        low_high = self.values
        if self.kind == "uniform":
            return tune.uniform(*low_high)
        if self.kind == "loguniform":
            return tune.loguniform(*low_high)
        if self.kind == "randint":
            return tune.randint(*low_high)
        if self.kind == "grid" and grid_search:
            return tune.grid_search(self.values)
        return tune.choice(self.values)


@dataclass
class SchedulerSection:
    """When trials stop early or exploit each other."""

    type: Literal["fifo", "asha", "pbt", "pb2"] = param("fifo", "fifo, asha, pbt or pb2 (needs GPy)")
    max_t: int = param(100, "asha: iterations a trial may run at most", ge=1)
    grace_period: int = param(1, "asha: iterations before a trial can be stopped", ge=1)
    reduction_factor: float = param(3.0, "asha: keep the top 1/N at each rung", gt=1)
    perturbation_interval: int = param(4, "pbt/pb2: iterations between exploit/explore", ge=1)
    quantile_fraction: float = param(0.25, "pbt: bottom share that copies the top share", gt=0, le=0.5)
    resample_probability: float = param(0.25, "pbt: chance a mutated value is resampled, else scaled", ge=0, le=1)
    mutations: dict[str, Domain] = param(default_factory=dict, help="pbt/pb2: explored fields (none: the space)")


@dataclass
class TuneSection:
    """A hyperparameter search over the experiment's fields."""

    metric: str | None = param(None, "metric to optimize (none: the kind's headline)")
    mode: Literal["max", "min"] | None = param(None, "max or min (none: from the metric's name)")
    num_samples: int = param(8, "trials sampled (each grid point repeated this often)", ge=1)
    space: dict[str, Domain] = param(default_factory=dict, help="dotted field -> {uniform|loguniform|randint|choice|grid: ...}")
    scheduler: SchedulerSection = section(SchedulerSection, "trial scheduler")
    search: Literal["random", "grid", "optuna"] = param("random", "random (and grid axes), grid, optuna")
    max_concurrent: int = param(0, "trials at once (0: as many as the cluster fits)", ge=0)
    time_budget_s: float = param(0.0, "end the whole search after this long (0: no limit)", ge=0)
    stop: dict[str, float] = param(default_factory=dict, help="stop a trial once a metric reaches a value (none: the experiment's stop)")
    cpus_per_trial: float = param(1.0, "RL kinds: CPUs of the trial's learner (runners add 1 each)", ge=0)
    gpus_per_trial: float = param(0.0, "RL kinds: GPUs (fractions allowed) of the trial's learner", ge=0)
    checkpoint_every: int = param(0, "RL kinds: checkpoint every N iterations (0: at the end; pbt checkpoints itself)", ge=0)
    max_failures: int = param(0, "retries of a trial that raises (RL kinds restart from their latest checkpoint)", ge=0)
    storage_path: str | None = param(None, "where searches are kept (none: --out, default runs/)")
    name: str | None = param(None, "folder name of this search (none: EXPERIMENT-tune-TIMESTAMP)")


@dataclass
class TuneSpec:
    """Everything a search needs: the base experiment (raw and typed) and its tune section."""

    name: str
    base: dict[str, Any]
    cfg: Any
    tune: TuneSection = field(default_factory=TuneSection)
    checked: Any = None  # what the kind's check step returned (an env spec for RL kinds)

    @property
    def metric(self) -> str:
        return self.tune.metric or registry.headline(self.cfg)

    @property
    def stepped(self) -> bool:
        return registry.family(self.cfg.kind) == "stepped"

    @property
    def mode(self) -> str:
        if self.tune.mode:
            return self.tune.mode
        lower = ("loss", "bpc", "perplexity", "distance", "fid", "rmse", "error")
        return "min" if any(w in self.metric for w in lower) else "max"


# ----------------------------------------------------------------------------- loading


def _field_exists(cfg: Any, dotted: str) -> None:
    import dataclasses

    node = cfg
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []
        if part not in names:
            import difflib

            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {'.'.join(parts[:i] + [close[0]])!r}?)" if close else ""
            raise ConfigError(f"tune.space: {dotted!r} is not a field of this experiment{hint}")
        node = getattr(node, part)
    if dataclasses.is_dataclass(node):
        raise ConfigError(f"tune.space: {dotted!r} is a section; name one of its fields")


def _check_values(base: dict[str, Any], dotted: str, domain: Domain, where: str) -> None:
    """Every value the domain can produce must load: try its bounds or each listed value."""
    samples = domain.values if domain.kind in ("choice", "grid") else domain.values[:1] + [domain.values[1] - (1 if domain.kind == "randint" else 0)]
    for value in samples:
        try:
            experiment_from_data(read_experiment(base, [f"{dotted}={yaml_value(value)}"]))
        except ConfigError as exc:
            raise ConfigError(f"{where}.{dotted}: value {value!r} is refused: {exc}") from None


def yaml_value(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def load_tune_spec(
    source: str | Path | dict[str, Any], overrides: list[str] | None = None, check: bool = True,
) -> TuneSpec:
    """The experiment and its `tune:` section, every field and value checked up front, and
    (`check`) the experiment's check step run once for every trial."""
    data = read_experiment(source, overrides)
    raw_tune = data.pop("tune", None)
    if raw_tune is None:
        raise ConfigError("tune: this experiment has no tune section; add one with at least a space "
                          "(e.g. tune: {space: {algo.lr: {loguniform: [1.0e-4, 1.0e-3]}}})")
    cfg = experiment_from_data(data)
    section_ = from_dict(TuneSection, raw_tune, "tune")
    if not section_.space and section_.scheduler.type not in ("pbt", "pb2"):
        raise ConfigError("tune.space: empty; name at least one field to search")
    for where, space in (("tune.space", section_.space), ("tune.scheduler.mutations", section_.scheduler.mutations)):
        for dotted, domain in space.items():
            _field_exists(cfg, dotted)
            _check_values(data, dotted, domain, where)
    sched = section_.scheduler.type
    if sched in ("pbt", "pb2") and registry.family(cfg.kind) != "stepped":
        stepped = [k for k in registry.kinds() if registry.family(k) == "stepped"]
        raise ConfigError(f"tune.scheduler.type: {sched} exploits trials through Tune checkpoints, which RL "
                          f"kinds have ({', '.join(stepped)}); for {cfg.kind} use fifo or asha")
    if sched in ("pbt", "pb2") and not (section_.scheduler.mutations or section_.space):
        raise ConfigError(f"tune.scheduler.mutations: {sched} needs fields to mutate (or a space)")
    if sched == "pb2":
        try:
            import GPy  # noqa: F401
            import sklearn  # noqa: F401
        except ImportError:
            raise ConfigError("tune.scheduler.type: pb2 needs GPy and scikit-learn; pip install GPy, "
                              "or use pbt") from None
        bad = [k for k, d in (section_.scheduler.mutations or section_.space).items()
               if d.kind not in ("uniform", "loguniform")]
        if bad:
            raise ConfigError(f"tune.scheduler.mutations: pb2 explores continuous ranges; {bad} are not "
                              "uniform/loguniform")
    if section_.search == "optuna":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ConfigError("tune.search: optuna is not installed; pip install optuna, or use random") from None
        if any(d.kind == "grid" for d in section_.space.values()):
            raise ConfigError("tune.search: optuna samples; use choice instead of grid")
    if section_.search == "grid" and any(d.kind not in ("grid", "choice") for d in section_.space.values()):
        raise ConfigError("tune.search: grid needs every space entry to be grid or choice")
    name = Path(str(source)).stem if not isinstance(source, dict) else cfg.kind
    checked = registry.check(cfg) if check else None
    return TuneSpec(name=name, base=data, cfg=cfg, tune=section_, checked=checked)


def trial_experiment(base: dict[str, Any], config: dict[str, Any]) -> Any:
    """The typed experiment of one trial: the base with the trial's sampled values."""
    overrides = [f"{k}={yaml_value(v)}" for k, v in config.items() if "." in k]
    return experiment_from_data(read_experiment(base, overrides))
