"""Ray Tune over any experiment file: `raydl tune EXPERIMENT` and `raydl.tune(...)`.

The experiment's `tune:` section (ignored by `raydl run`; see raydl.tune_spec) names the
metric, the search space over any field by its dotted name, the scheduler and the search
algorithm:

    tune:
      metric: episode_return_mean      # none: the kind's headline metric
      num_samples: 8
      space: {algo.lr: {loguniform: [1.0e-4, 3.0e-3]}, algo.target_update: {choice: [250, 500]}}
      scheduler: {type: asha, grace_period: 2, max_t: 20}

Trials:
- stepped kinds (RL) are a class trainable over the algorithm's own `step` / `save` /
  `restore`: the checkpoints PBT copies are the CLI's checkpoints, replay buffer included.
- fit kinds (Ray Train) are a function trainable that builds the TorchTrainer inside the
  trial (Ray 2.60's Train V2 way) and reports each epoch to Tune through
  TuneReportCallback.
The experiment's check step runs once, before the search; its result (the env spec) is
handed to every trial.

Outputs under STORAGE/NAME: Tune's experiment state (so `--resume` continues without
rerunning finished trials), `trials.csv`, `best.yaml` (a ready-to-run experiment) and
`trials.png` (the metric of every trial over its iterations).
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from raydl import registry
from raydl.config import dump_yaml
from raydl.errors import ConfigError
from raydl.trackers import tracking_env_kept, tune_callbacks
from raydl.tune_spec import TuneSpec, yaml_value, load_tune_spec, trial_experiment

TRIALS_CSV, BEST_YAML, TRIALS_PNG = "trials.csv", "best.yaml", "trials.png"


# ----------------------------------------------------------------------------- trials


def _rl_trainable() -> type:
    from ray import tune

    class RLTrainable(tune.Trainable):
        """An RL algorithm as a Tune class trainable: its own step/save/restore."""

        def setup(self, config: dict[str, Any], base: dict[str, Any] | None = None,
                  checked: Any = None) -> None:
            from raydl.rl.evaluation import with_evaluation

            self.cfg = trial_experiment(base or {}, config)
            algo = registry.algorithm_class(self.cfg.kind)(self.cfg, checked)
            self.algo = with_evaluation(algo, self.cfg, None)
            self.started = time.monotonic()
            self.last_eval: dict[str, Any] = {}

        def step(self) -> dict[str, Any]:
            metrics = self.algo.step()
            # Tune wants its metric in every result: the latest evaluation's figures ride
            # along until the next one (the first iteration evaluates, so there always is one).
            self.last_eval = {k: v for k, v in metrics.items() if k.startswith("eval_")} or self.last_eval
            metrics = {**self.last_eval, **metrics}
            return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}

        def save_checkpoint(self, checkpoint_dir: str) -> None:
            self.algo.save(Path(checkpoint_dir))

        def load_checkpoint(self, checkpoint: str | dict | None) -> None:
            self.algo.restore(Path(str(checkpoint)))
            # PBT restores another trial's state under *this* trial's (mutated) config:
            # the optimizer state carries the old learning rate, so set this one's.
            for group in self.algo.optimizer.param_groups:
                group["lr"] = self.cfg.algo.lr

        def cleanup(self) -> None:
            self.algo.close()

    return RLTrainable


def train_kind_trial(config: dict[str, Any], base: dict[str, Any] | None = None,
                     checked: Any = None) -> None:
    """A Ray Train kind as a Tune function trainable: builds the TorchTrainer in the trial."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    cfg = trial_experiment(base or {}, config)
    run_dir = Path(tune.get_context().get_trial_dir()) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, run_dir / "config.yaml")
    cfg.log.progress = False
    # Ray's tracker callbacks log every trial from the driver (tune_callbacks): a trial
    # logging to the same trackers itself would make each row twice.
    cfg.log.wandb.enabled = cfg.log.mlflow.enabled = False
    registry.algorithm_class(cfg.kind).fit(cfg, run_dir, resume=False, progress=False,
                                           callbacks=[TuneReportCallback()])


# ----------------------------------------------------------------------------- sizing


def trial_bundles(spec: TuneSpec) -> list[dict[str, float]]:
    """The resources one trial holds: RL: its learner + one bundle per runner actor (its
    cpus_per_runner and custom resources, which the actor asks for inside the trial's
    placement group) + the eval runner's (eval.every with runners); Ray Train
    kinds: no CPU (Ray Train reserves its workers' CPUs itself; a CPU held by the trial
    would leave a 2-worker trial waiting forever on a 2-CPU machine). Tune refuses an
    empty bundle, so that one asks for a token byte of memory."""
    cfg, t = spec.cfg, spec.tune
    if spec.stepped:
        head = {"CPU": t.cpus_per_trial, **({"GPU": t.gpus_per_trial} if t.gpus_per_trial else {})}
        runners = cfg.runners
        if not runners.num:
            return [head]
        evaluator = [{"CPU": cfg.eval.cpus, **runners.resources}] if cfg.eval.every else []
        return [head] + [{"CPU": runners.cpus_per_runner, **runners.resources}] * runners.num + evaluator
    return [{"memory": 1.0}]


def worker_bundles(spec: TuneSpec, total: dict[str, float]) -> list[dict[str, float]]:
    """Everything one trial needs at once, including Ray Train's workers."""
    cfg = spec.cfg
    if spec.stepped:
        return trial_bundles(spec)
    use_gpu = cfg.scaling.use_gpu
    gpu = {"GPU": 1.0} if use_gpu is True or (use_gpu == "auto" and total.get("GPU", 0) > 0) else {}
    return [{"CPU": cfg.scaling.cpus_per_worker, **gpu}] * cfg.scaling.workers


def fit_check(spec: TuneSpec, nodes: list[dict[str, float]], total: dict[str, float]) -> int:
    """Trials the cluster can run at once; a trial that can never be placed is an error."""
    bundles = worker_bundles(spec, total)
    for bundle in bundles:
        if not any(all(node.get(r, 0.0) >= need for r, need in bundle.items() if need) for node in nodes):
            largest = max(nodes, key=lambda n: n.get("CPU", 0.0), default={})
            raise ConfigError(
                f"tune: a trial needs {_fmt(bundle)} in one place and no node has that (largest node: "
                f"{_fmt({k: v for k, v in largest.items() if k in ('CPU', 'GPU')})}); lower the trial's "
                "resources (scaling.*, tune.cpus_per_trial, tune.gpus_per_trial, runners.num)")
    need: dict[str, float] = {}
    for bundle in bundles:
        for r, v in bundle.items():
            need[r] = need.get(r, 0.0) + v
    for r, v in need.items():
        if v > total.get(r, 0.0):
            raise ConfigError(f"tune: a trial needs {_fmt(need)} and the whole cluster has {_fmt(total)}")
    fits = [math.floor(total.get(r, 0.0) / v + 1e-9) for r, v in need.items() if v > 0]
    return max(1, min(fits)) if fits else 1


def _fmt(resources: dict[str, float]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in resources.items() if v) or "nothing"


def _cluster() -> tuple[list[dict[str, float]], dict[str, float]]:
    from raydl.runtime import cluster_resources  # shared with RunnerPool's check

    return cluster_resources()


# ----------------------------------------------------------------------------- the search


def _stop(spec: TuneSpec) -> dict[str, float]:
    """tune.stop, else the experiment's own stop criteria as Tune stop conditions."""
    if spec.tune.stop:
        return dict(spec.tune.stop)
    if not spec.stepped:  # fit kinds end after train.epochs by themselves
        return {}
    stop = spec.cfg.stop
    out: dict[str, float] = {}
    if stop.env_steps:
        out["env_steps"] = stop.env_steps
    if stop.episode_return_mean is not None:
        out["episode_return_mean"] = stop.episode_return_mean
    if stop.eval_return_mean is not None:
        out["eval_return_mean"] = stop.eval_return_mean
    if stop.iterations:
        out["training_iteration"] = stop.iterations
    if stop.time_s:
        out["time_total_s"] = stop.time_s
    return out


def _scheduler(spec: TuneSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    s = spec.tune.scheduler
    if s.type == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=s.max_t, grace_period=s.grace_period,
                             reduction_factor=s.reduction_factor)
    mutations = s.mutations or spec.tune.space
    if s.type == "pbt":
        return PopulationBasedTraining(
            time_attr="training_iteration", perturbation_interval=s.perturbation_interval,
            hyperparam_mutations={k: d.to_tune(grid_search=False) for k, d in mutations.items()},
            quantile_fraction=s.quantile_fraction, resample_probability=s.resample_probability)
    if s.type == "pb2":
        from ray.tune.schedulers.pb2 import PB2

        return PB2(time_attr="training_iteration", perturbation_interval=s.perturbation_interval,
                   hyperparam_bounds={k: d.values for k, d in mutations.items()},
                   quantile_fraction=s.quantile_fraction)
    return FIFOScheduler()


def _searcher(spec: TuneSpec, max_concurrent: int) -> Any:
    if spec.tune.search == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(seed=spec.cfg.seed), max_concurrent=max_concurrent)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # seeded: the same experiment samples the same trial configs, whatever the scheduler
    return BasicVariantGenerator(random_state=spec.cfg.seed)


def _tuner(spec: TuneSpec, storage: Path, name: str, restore: bool) -> Any:
    from ray import tune

    t = spec.tune
    nodes, total = _cluster()
    fits = fit_check(spec, nodes, total)
    max_concurrent = min(t.max_concurrent, fits) if t.max_concurrent else fits
    rl = spec.stepped
    trainable: Any = _rl_trainable() if rl else train_kind_trial
    trainable = tune.with_parameters(trainable, base=spec.base, checked=spec.checked)
    trainable = tune.with_resources(trainable, tune.PlacementGroupFactory(trial_bundles(spec)))
    if restore:
        return tune.Tuner.restore(str(storage / name), trainable, resume_unfinished=True, resume_errored=True), max_concurrent
    space = {k: d.to_tune(grid_search=t.search != "optuna") for k, d in t.space.items()}
    if t.scheduler.type in ("pbt", "pb2"):  # PBT starts from the space's samples, mutations explore
        for k, d in t.scheduler.mutations.items():
            space.setdefault(k, d.to_tune(grid_search=False))
    tune_config = tune.TuneConfig(
        metric=spec.metric, mode=spec.mode, num_samples=t.num_samples, scheduler=_scheduler(spec),
        search_alg=_searcher(spec, max_concurrent), max_concurrent_trials=max_concurrent,
        time_budget_s=t.time_budget_s or None, reuse_actors=False,
    )
    checkpoint = tune.CheckpointConfig(
        num_to_keep=4 if t.scheduler.type in ("pbt", "pb2") else 2,  # PBT copies recent ones
        checkpoint_frequency=t.checkpoint_every if rl else 0, checkpoint_at_end=rl)
    run_config = tune.RunConfig(
        name=name, storage_path=str(storage.resolve()), stop=_stop(spec) or None,
        checkpoint_config=checkpoint, verbose=1, failure_config=tune.FailureConfig(max_failures=t.max_failures),
        # Tune copies the trials' results into the search folder every `sync_period` (5
        # minutes by default): a user watching it saw nothing until then. The folder is
        # local, so a copy every few seconds costs nothing.
        sync_config=tune.SyncConfig(sync_period=RESULTS_SYNC_S),
        callbacks=tune_callbacks(spec.cfg.log, storage / name, name) or None,
    )
    return tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config), max_concurrent


def tune_experiment(
    experiment: str | Path | dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    *,
    num_samples: int | None = None,
    out: str | Path = "runs",
    resume: str | Path | None = None,
    address: str | None = None,
    echo: bool = True,
) -> Any:
    """Run (or resume) a search; returns Ray Tune's ResultGrid. Writes trials.csv,
    best.yaml and trials.png next to Tune's own files."""
    from raydl.runtime import init_ray, module_files

    if resume is not None:
        folder = Path(resume)
        if not (folder / "raydl_tune.yaml").is_file():
            raise ConfigError(f"--resume {folder}: not a raydl search directory (no raydl_tune.yaml)")
        import yaml

        saved = yaml.safe_load((folder / "raydl_tune.yaml").read_text())
        spec = load_tune_spec(saved["experiment"])
        spec.name = saved["name"]
        storage, name = folder.parent, folder.name
    else:
        if experiment is None:
            raise ConfigError("tune: name an experiment (or --resume SEARCH_DIR)")
        spec = load_tune_spec(experiment, overrides)
        if num_samples is not None:
            if num_samples < 1:
                raise ConfigError(f"--num-samples: expected an integer >= 1, got {num_samples}")
            spec.tune.num_samples = num_samples
        storage = Path(spec.tune.storage_path or out).expanduser()
        name = spec.tune.name or _claim_folder(storage, f"{spec.name}-tune-{datetime.now():%Y%m%d-%H%M%S}")
    # A Ray Train trial that Tune stops early (ASHA) dies with its Train controller, and
    # Ray Train frees the workers' placement group only through a cleaner actor that
    # watches the controller with Ray's State API, served by the dashboard. Without it
    # each stopped trial keeps its workers' CPUs for good and the search stalls.
    runner = registry.spec(spec.cfg.kind).runner  # trials' runner actors start on preloaded workers
    init_ray(address, state_api=not spec.stepped, preload=[runner] if runner else [],
             ship=module_files(spec.cfg))
    tuner, max_concurrent = _tuner(spec, storage, name, restore=resume is not None)
    folder = storage / name
    if resume is None:
        folder.mkdir(parents=True, exist_ok=True)
        import yaml

        experiment_data = {**spec.base, "tune": _tune_as_data(spec)}
        (folder / "raydl_tune.yaml").write_text(yaml.safe_dump({"name": spec.name, "experiment": experiment_data},
                                                               sort_keys=False))
    if echo:
        print(f"raydl tune: {spec.name}, {spec.tune.num_samples} samples, {spec.tune.scheduler.type}, "
              f"metric {spec.metric} ({spec.mode}), up to {max_concurrent} trials at once; in {folder}", flush=True)
    with tracking_env_kept():
        results = tuner.fit()
    summary = write_outputs(spec, results, folder)
    if echo:
        print(summary, flush=True)
    return results


def _tune_as_data(spec: TuneSpec) -> dict[str, Any]:
    from raydl.config import to_dict

    data = to_dict(spec.tune)

    def clean(space: dict[str, Any]) -> dict[str, Any]:
        return {k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in space.items()}

    data["space"] = clean(data["space"])
    data["scheduler"]["mutations"] = clean(data["scheduler"]["mutations"])
    return {k: v for k, v in data.items() if v is not None}


def trial_error(error: BaseException | None) -> str:
    """A failed trial's root error in one line ('' for none): Ray wraps it in a
    RayTaskError (or TuneError) whose text is a traceback."""
    if error is None:
        return ""
    root = getattr(error, "cause", None) or error
    lines = [ln.strip() for ln in str(root).strip().splitlines() if ln.strip()]
    return f"{type(root).__name__}: {lines[-1] if lines else ''}".strip().rstrip(":")


def trial_table_rows(results: Any) -> list[dict[str, Any]]:
    """One row per trial, failed ones included (Tune's own dataframe leaves out trials
    that never reported): status, error, the sampled config, the last metrics."""
    rows = []
    for result in results:
        metrics = {k: v for k, v in (result.metrics or {}).items()
                   if isinstance(v, (int, float, str, bool)) and k != "config"}
        row: dict[str, Any] = {"trial": Path(result.path).name if result.path else "",
                               "status": "ERROR" if result.error is not None else "TERMINATED",
                               "error": trial_error(result.error)}
        row.update({f"config/{k}": v for k, v in (result.config or {}).items()})
        row.update(metrics)
        rows.append(row)
    return rows


def trials_table(results: Any) -> Any:
    import pandas as pd

    return pd.DataFrame(trial_table_rows(results))


RESULTS_SYNC_S = 2


def _claim_folder(storage: Path, name: str) -> str:
    """A new search folder under `storage`, made now (two searches started in the same
    second get name and name-2, never one folder); its name."""
    from raydl.run import make_unique_dir

    try:
        storage.mkdir(parents=True, exist_ok=True)
        return make_unique_dir(storage, name).name
    except OSError as exc:
        raise ConfigError(f"--out {storage}: cannot create the search folder: {exc.strerror}") from None


def write_outputs(spec: TuneSpec, results: Any, folder: Path) -> str:
    """trials.csv, best.yaml and trials.png; returns the one-line summary."""
    trials_table(results).to_csv(folder / TRIALS_CSV, index=False)
    metric, mode = spec.metric, spec.mode
    try:
        best = results.get_best_result(metric=metric, mode=mode, scope="all")
    except RuntimeError:
        best = None
    errors = sum(1 for r in results if r.error is not None)
    if best is None or best.metrics is None or metric not in best.metrics:
        return f"raydl tune: no trial reported {metric}; {len(results)} trials, {errors} errors; in {folder}"
    best_cfg = trial_experiment(spec.base, best.config)
    dump_yaml(best_cfg, folder / BEST_YAML)
    _plot(results, metric, folder / TRIALS_PNG)
    value = best.metrics_dataframe[metric].max() if mode == "max" else best.metrics_dataframe[metric].min()
    chosen = ", ".join(f"{k}={yaml_value(v)}" for k, v in best.config.items())
    return (f"raydl tune: {len(results)} trials ({errors} errors); best {metric} {value:.4g} with {chosen}; "
            f"best config in {folder / BEST_YAML}; table in {folder / TRIALS_CSV}")


def _plot(results: Any, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for result in results:
        df = result.metrics_dataframe
        if df is not None and metric in df and "training_iteration" in df:
            label = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                              for k, v in (result.config or {}).items())
            ax.plot(df["training_iteration"], df[metric], label=label[:60])
    ax.set_xlabel("training iteration")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if len(results) <= 12:
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
