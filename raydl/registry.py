"""The one place that knows each kind: its spec, and the lookups everything else asks.

A kind's spec names its experiment dataclass, its algorithm, its family, its headline
metric, the check step that looks at the world before any work, and its entry points
for `raydl eval | sample | viz | export`. The names are "module:attribute" strings imported on
first use, so `raydl list`, `raydl check` and config errors never load torch or Ray for
kinds they do not touch.

Two families (see docs/architecture.md):
- stepped: `Algorithm(cfg, checked)` with `step() -> metrics`, `save(dir)`,
  `restore(dir)`, `runner_infos()`, `close()`, an `iteration` counter and an
  `optimizer` (the shape of a Ray Tune class trainable); `Algorithm.load_policy(dir,
  cfg, checked)` gives the greedy policy of a checkpoint. The driver loop (raydl.run)
  steps it until a stop criterion.
- fit: `Trainer.fit(cfg, run_dir, resume=..., progress=..., callbacks=...)` runs one
  blocking Ray Train fit that reports every epoch itself: the epoch loop of
  raydl.train.loop over the family's task (raydl.sl.tasks, raydl.gen.tasks).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from raydl.errors import ConfigError

Family = Literal["stepped", "fit"]
RETURN = "episode_return_mean"  # mean return of the last 100 training episodes


@dataclass(frozen=True)
class EvalOptions:
    """What `raydl eval` was asked for, handed to a kind's eval entry point."""

    episodes: int = 10
    gif: Path | None = None
    video: Path | None = None  # MP4 of the first episode
    epsilon: float | None = None
    seed: int = 0
    generate: int = 0
    prompt: str = ""
    temperature: float = 0.8
    onnx: Path | None = None  # RL kinds: play with this exported policy (onnxruntime)
    top: int = 10  # cf_rbm: recommendations per user
    users: tuple[int, ...] = ()  # cf_rbm: the users to recommend to (ids in the file; none: all)
    vote: Literal["soft", "hard"] = "soft"  # classifier ensembles: mean probability or majority


@dataclass(frozen=True)
class KindSpec:
    """Everything raydl needs to know about one kind; entry points are "module:attr"."""

    name: str
    family: Family
    config: str  # the experiment dataclass
    algorithm: str  # stepped: the algorithm class; fit: the class whose `fit` runs a run
    check: str  # check(cfg) -> what the algorithm is handed (an env spec, or None)
    headline: str | Callable[[Any], str]  # the metric runs report and Tune optimizes
    evaluate: str | None = None  # eval(cfg, checkpoint dirs, EvalOptions) for `raydl eval`
    sample: str | None = None  # sample(directory, n, seed, nrow, out) for `raydl sample`
    visualize: str | None = None  # viz(directory, image, out) for `raydl viz`
    export: str | None = None  # exportable(directory, cfg) -> raydl.export.Exportable
    summary: tuple[str, ...] = ()  # metrics the final line shows besides the headline
    # stepped: the module of its runner actors' class, which Ray's workers import as they
    # start, while the driver still sets up (raydl.runtime.init_ray's `preload`)
    runner: str | None = None
    # Defaults that depend on the kind, filled into the raw experiment before loading
    # (dotted field -> value), so loading never changes a config after the fact.
    defaults: Mapping[str, Any] = field(default_factory=dict)


_RL_EVAL = "raydl.rl.evaluate:eval_command"
_RL_EXPORT = "raydl.rl.export:exportable"
_DQN = dict(config="raydl.rl.experiment:DQNExperiment", algorithm="raydl.rl.dqn:DQN",
            check="raydl.rl.experiment:check_dqn", headline=RETURN, evaluate=_RL_EVAL,
            runner="raydl.rl.runners.env_runner", export=_RL_EXPORT)
_AC = dict(config="raydl.rl.experiment:ActorCriticExperiment",
           algorithm="raydl.rl.actor_critic:ActorCriticAlgorithm",
           check="raydl.rl.experiment:check_actor_critic", headline=RETURN, evaluate=_RL_EVAL,
           runner="raydl.rl.runners.ac_worker", export=_RL_EXPORT)
_PPO = dict(config="raydl.rl.experiment:PPOExperiment", algorithm="raydl.rl.ppo:PPO",
            check="raydl.rl.experiment:check_ppo", headline=RETURN, evaluate=_RL_EVAL,
            runner="raydl.rl.runners.ac_worker", export=_RL_EXPORT)


def _continuous(cls: str) -> dict[str, Any]:
    """The entry points of an off-policy continuous-control kind (sac, td3)."""
    return dict(config=f"raydl.rl.continuous_experiment:{cls}Experiment",
                algorithm=f"raydl.rl.{cls.lower()}:{cls}",
                check="raydl.rl.continuous_experiment:check_continuous", headline=RETURN,
                evaluate=_RL_EVAL, runner="raydl.rl.runners.env_runner", export=_RL_EXPORT)


_SL = dict(config="raydl.sl.experiment:SupervisedExperiment",
           algorithm="raydl.sl.trainer:SupervisedTrainer", check="raydl.sl.check:check",
           evaluate="raydl.sl.evaluate:eval_command", export="raydl.sl.export:exportable",
           summary=("test_accuracy", "test_bpc"))
_GEN = dict(config="raydl.gen.experiment:GenerativeExperiment",
            algorithm="raydl.gen.trainer:GenerativeTrainer", check="raydl.gen.experiment:check",
            sample="raydl.gen.trainer:sample_command", export="raydl.gen.export:exportable",
            summary=("classifier_score", "real_classifier_score", "class_coverage",
                     "frechet_distance", "real_frechet_distance", "inception_fid", "val_loss"))
_RBM = dict(algorithm="raydl.rbm.trainer:RBMTrainer", check="raydl.rbm.experiment:check",
            evaluate="raydl.rbm.evaluate:eval_command")

_SPECS: dict[str, KindSpec] = {
    spec.name: spec
    for spec in (
        KindSpec("dqn", "stepped", **_DQN),
        # One experiment class for the actor-critic family; the kind sets the defaults.
        KindSpec("a3c", "stepped", **_AC,
                 defaults={"algo.asynchronous": True, "algo.returns": "nstep"}),
        KindSpec("a2c", "stepped", **_AC,
                 defaults={"algo.asynchronous": False, "algo.returns": "nstep"}),
        KindSpec("reinforce", "stepped", **_AC,
                 defaults={"algo.asynchronous": False, "algo.returns": "episode"}),
        KindSpec("ppo", "stepped", **_PPO),
        KindSpec("sac", "stepped", **_continuous("SAC")),
        KindSpec("td3", "stepped", **_continuous("TD3")),
        KindSpec("classify", "fit", **_SL, headline="val_accuracy",
                 visualize="raydl.sl.viz:viz_command"),
        KindSpec("language_model", "fit", **_SL,
                 headline=lambda cfg: "val_perplexity" if cfg.data.level == "word" else "val_bpc"),
        KindSpec("gan", "fit", **_GEN,
                 headline=lambda cfg: "classifier_score" if cfg.scored else "g_loss"),
        KindSpec("vae", "fit", **_GEN,
                 headline=lambda cfg: "classifier_score" if cfg.scored else "val_loss"),
        KindSpec("rbm", "fit", config="raydl.rbm.experiment:RBMExperiment", **_RBM,
                 headline="test_accuracy", summary=("val_accuracy", "val_recon_error")),
        KindSpec("dbn", "fit", config="raydl.rbm.experiment:DBNExperiment", **_RBM,
                 headline="val_accuracy", summary=("test_accuracy",)),
        KindSpec("cf_rbm", "fit", config="raydl.rbm.experiment:CFRBMExperiment", **_RBM,
                 headline="val_rmse", summary=("baseline_val_rmse", "test_rmse", "baseline_test_rmse")),
    )
}

# Shipped inside the package (package data), so a plain `pip install` has them too.
EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"


def kinds() -> list[str]:
    """All registered kinds, sorted."""
    return sorted(_SPECS)


def spec(kind: Any) -> KindSpec:
    """The spec of `kind`, or a one-line ConfigError naming the kinds there are."""
    if not isinstance(kind, str) or kind not in _SPECS:
        close = difflib.get_close_matches(str(kind), list(_SPECS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"kind: unknown kind {kind!r}{hint}; allowed: {', '.join(kinds())}")
    return _SPECS[kind]


def resolve(reference: str) -> Any:
    """The object a "module:attr" entry point names (imported now)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def config_class(kind: Any) -> type:
    """The top-level experiment dataclass of `kind`."""
    return resolve(spec(kind).config)


def algorithm_class(kind: Any) -> Any:
    """The algorithm class (stepped) or trainer class (fit) of `kind`."""
    return resolve(spec(kind).algorithm)


def family(kind: Any) -> Family:
    return spec(kind).family


def headline(cfg: Any) -> str:
    """The headline metric of an experiment (some kinds' depend on their options)."""
    value = spec(cfg.kind).headline
    return value if isinstance(value, str) else value(cfg)


def check(cfg: Any) -> Any:
    """The kind's check step: everything about the world an experiment needs (its env and
    spaces, data files, weights, CUDA), checked once before any work and before any run
    directory exists. Returns what the algorithm is handed (an EnvSpec for RL kinds).
    The experiment trackers `log:` turns on are checked first, for every kind."""
    from raydl import trackers

    trackers.check(cfg.log)
    return resolve(spec(cfg.kind).check)(cfg)


EntryPoint = Literal["evaluate", "sample", "visualize", "export"]


def entry_point(kind: str, name: EntryPoint) -> Callable[..., Any] | None:
    """A kind's `raydl eval | sample | viz | export` function, or None when it has none."""
    reference = getattr(spec(kind), name)
    return resolve(reference) if reference else None


def kinds_with(name: EntryPoint) -> list[str]:
    """The kinds that have a `raydl eval | sample | viz | export` entry point."""
    return [kind for kind in kinds() if getattr(_SPECS[kind], name)]


def experiment_files() -> list[Path]:
    """The experiment files shipped with raydl (raydl/experiments/)."""
    return sorted(EXPERIMENTS_DIR.glob("*.yaml"))


def find_experiment(name: str) -> Path:
    """Resolve a path, or the name of a shipped experiment (with or without .yaml)."""
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
