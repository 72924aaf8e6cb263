"""The driver of a run, for every kind: load, check, run directory, then the kind's family.

Stepped kinds (RL) are stepped here until a stop criterion: the algorithm only needs
`step() -> metrics`, `save(dir)`, `restore(dir)` and `close()` (the shape of a Ray Tune
class trainable); run directories, metrics files, progress and stopping live here, once.
Fit kinds run one Ray Train fit that reports each epoch itself; their metrics come back
from the run's file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from raydl import checkpoint as ckpt
from raydl import registry, trackers
from raydl.config import StopConfig, dump_yaml, load_experiment
from raydl.errors import CheckpointError, ConfigError, Interrupted
from raydl.metrics import MetricsWriter, Progress, read_metrics
from raydl.profile import mark

HEADLINE = registry.RETURN
EVAL_RETURN = "eval_return_mean"  # the mean return of an evaluation (eval.every)
# Fields a resumed run may change: how long it goes on and what it writes, not what it is.
RESUMABLE_OVERRIDES = ("stop.", "checkpoint.", "log.", "train.epochs", "train.max_minutes",
                       "scaling.max_failures")


@dataclass
class RunResult:
    """What `train` returns: where the run lives and how it ended."""

    run_dir: Path
    metrics: dict[str, Any]
    stopped_by: str
    checkpoint: Path | None
    wall_s: float
    start_env_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def stop_reason(stop: StopConfig, metrics: dict[str, Any], elapsed_s: float) -> str | None:
    """The first stop criterion met by the latest metrics, or None to go on."""
    target = stop.episode_return_mean
    value = metrics.get(HEADLINE)
    if target is not None and value is not None and value >= target:
        return f"{HEADLINE} {value:.4g} >= {target:g}"
    target, value = stop.eval_return_mean, metrics.get(EVAL_RETURN)
    if target is not None and value is not None and value >= target:
        return f"{EVAL_RETURN} {value:.4g} >= {target:g}"
    if stop.env_steps and metrics.get("env_steps", 0) >= stop.env_steps:
        return f"env_steps {metrics['env_steps']:,} reached"
    if stop.iterations and metrics.get("iteration", 0) >= stop.iterations:
        return f"iterations {stop.iterations} reached"
    if stop.time_s and elapsed_s >= stop.time_s:
        return f"time {stop.time_s:g}s reached"
    return None


def _new_run_dir(out: Path, name: str) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create output directory: {exc.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: output directory is not writable")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return make_unique_dir(out, f"{name}-{stamp}")


def make_unique_dir(parent: Path, name: str) -> Path:
    """parent/name, or parent/name-2, -3, ...: created here, atomically (mkdir fails on
    an existing directory), so two processes started in the same second never share one."""
    suffix = 1
    while True:
        path = parent / (name if suffix == 1 else f"{name}-{suffix}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            suffix += 1


def _load(
    experiment: str | Path | dict[str, Any] | None, overrides: list[str], resume: Path | None,
) -> tuple[Any, str, Path | None]:
    """(config, run name, checkpoint to restore) before any work starts."""
    if resume is None:
        if experiment is None:
            raise ConfigError("run: name an experiment (or --resume RUN_DIR)")
        cfg = load_experiment(experiment, overrides)
        name = Path(str(experiment)).stem if not isinstance(experiment, dict) else cfg.kind
        return cfg, name, None
    if not (resume / "config.yaml").is_file():
        raise ConfigError(f"--resume {resume}: not a run directory (no config.yaml in it)")
    for text in overrides:
        if not text.startswith(RESUMABLE_OVERRIDES):
            raise ConfigError(
                f"--set {text!r}: cannot change this on --resume; allowed: "
                + ", ".join(p + "*" for p in RESUMABLE_OVERRIDES)
            )
    cfg = load_experiment(resume / "config.yaml", overrides)
    if registry.family(cfg.kind) == "fit":
        return cfg, resume.name, None  # Ray Train finds its own newest checkpoint
    return cfg, resume.name, ckpt.latest_checkpoint(resume)


def train(
    experiment: str | Path | dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    *,
    out: str | Path = "runs",
    resume: str | Path | None = None,
    address: str | None = None,
    progress: bool | None = None,
    echo: bool = True,
) -> RunResult:
    """Run an experiment to its stop criterion; the Python API behind `raydl run`."""
    from raydl.runtime import resolve_address

    mark("driver: imports done")
    resume_dir = Path(resume) if resume is not None else None
    cfg, name, restore_from = _load(experiment, overrides or [], resume_dir)
    checked = registry.check(cfg)  # the world, once, before any run directory exists
    mark("driver: experiment loaded and checked")
    run_dir = resume_dir or _new_run_dir(Path(out).expanduser(), name)
    with run_lock(run_dir):
        dump_yaml(cfg, run_dir / "config.yaml")
        show = cfg.log.progress if progress is None else progress
        if registry.family(cfg.kind) == "fit":
            _start_ray(cfg, address)
            return _fit(cfg, run_dir, resume_dir is not None, show, echo)
        with _refusal_cleanup(run_dir, resume_dir is not None):
            if cfg.runners.num > 0 or resolve_address(address):
                _start_ray(cfg, address)
            algo = registry.algorithm_class(cfg.kind)(cfg, checked)
            from raydl.rl.evaluation import with_evaluation

            algo = with_evaluation(algo, cfg, run_dir)
        mark("driver: algorithm and runners ready")
        (run_dir / "runners.json").write_text(json.dumps(algo.runner_infos(), indent=1))
        result = _step_until_stopped(cfg, algo, run_dir, restore_from, show)
    if echo:
        print(summary_line(cfg, result), flush=True)
    return result


# What a driver imports after Ray is up, besides its kind's own module: Ray Train's
# TorchTrainer (fit), and torch._dynamo, which torch imports when the first optimizer is
# built (stepped; ~1.5 s).
DRIVER_IMPORTS = {"fit": ("ray.train.torch",), "stepped": ("torch._dynamo",)}


def _start_ray(cfg: Any, address: str | None) -> None:
    """Start (or join) Ray; meanwhile import what the driver uses next, and let Ray's
    worker processes import the runner actors' module as they start."""
    from raydl.runtime import init_ray, module_files

    spec = registry.spec(cfg.kind)
    driver = (spec.algorithm.partition(":")[0], *DRIVER_IMPORTS[spec.family])
    init_ray(address, preload=[spec.runner] if spec.runner else [], meanwhile=driver,
             ship=module_files(cfg))


LOCK_FILE = ".raydl.lock"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One writer per run directory: a second `raydl run` (a `--resume` while the run
    still goes, or two resumes at once) is refused in one line. The lock is the kernel's
    (flock on RUN_DIR/.raydl.lock), so a killed process leaves none behind."""
    import fcntl

    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(
            f"{run_dir}: in use by another raydl process (pid {holder}); wait for it to "
            "end (or stop it) before resuming this run"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    try:
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


@contextmanager
def _refusal_cleanup(run_dir: Path, resuming: bool) -> Iterator[None]:
    """A ConfigError before any work (runners the cluster cannot hold, a dataset that is
    not there) leaves no half-made run directory behind a new run. A ConfigError after
    work began (a Ray Train worker group restarted after some epochs that then finds its
    dataset gone) leaves the directory as it is: a directory holding results is never
    deleted, whatever the error."""
    try:
        yield
    except ConfigError:
        if not resuming and not holds_results(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def holds_results(run_dir: Path) -> bool:
    """Whether `run_dir` holds results: a metrics row (TensorBoard gets its rows with
    them) or a checkpoint, complete or not. Ray Train's empty storage folder is not one."""
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file() and metrics.stat().st_size > 0:
        return True
    return any(p.is_dir() for p in (run_dir / "checkpoints").glob("*_[0-9]*"))


@contextmanager
def interrupt_between_steps() -> Iterator[Callable[[], bool]]:
    """The first Ctrl-C lets the current iteration finish, so the state a checkpoint
    then takes is whole; a second one stops at once, and nothing is saved (a state cut
    mid-update would overwrite a clean checkpoint with a torn one). Yields whether Ctrl-C
    was pressed. Signal handlers belong to the main thread: elsewhere Ctrl-C is left as
    it is."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    presses: list[float] = []

    def on_sigint(signum: int, frame: Any) -> None:
        presses.append(time.monotonic())
        if len(presses) > 1:
            raise KeyboardInterrupt
        print("\nraydl: finishing this iteration, then saving a checkpoint (Ctrl-C again: "
              "stop now, without one)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: bool(presses)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted_line(run_dir: Path, written: Path | None, iteration: int) -> str:
    """What an interrupted run says: the checkpoint it wrote, or that it wrote none and
    which one a resume would start from."""
    resume = f"continue with `raydl run --resume {run_dir}`"
    if written is not None:
        return f"raydl: interrupted after iteration {iteration}; checkpoint {written} written; {resume}"
    try:
        newest: Path | None = ckpt.latest_checkpoint(run_dir)
    except CheckpointError:
        newest = None
    if newest is None:
        return (f"raydl: interrupted mid-iteration; no checkpoint written, and {run_dir} has "
                "none to resume from")
    return f"raydl: interrupted mid-iteration; no checkpoint written (newest: {newest}); {resume}"


def _step_until_stopped(
    cfg: Any, algo: Any, run_dir: Path, restore_from: Path | None, show: bool,
) -> RunResult:
    """Step a stepped algorithm until a stop criterion, writing metrics and checkpoints."""
    writer = MetricsWriter(run_dir, cfg.log.tensorboard, cfg.log.curve, trackers.for_run(cfg, run_dir))
    history: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    start, prior_time = time.monotonic(), 0.0
    try:
        if restore_from is not None:
            algo.restore(restore_from)
            writer.truncate_after(algo.iteration)
            rows = [r for r in read_metrics(run_dir) if r["iteration"] <= algo.iteration]
            prior_time = rows[-1]["time_total_s"] if rows else 0.0
            metrics = rows[-1] if rows else {}
        writer.begin()  # the trackers' runs, before any work (a login that fails, fails now)
        start_steps = int(metrics.get("env_steps", 0))
        bar = Progress(cfg.stop.env_steps, "env steps", HEADLINE, enabled=show,
                       start_done=start_steps)

        def save() -> Path:
            path = ckpt.write_checkpoint(run_dir / "checkpoints", algo.iteration, algo.save,
                                         cfg.checkpoint.keep)
            writer.artifact(path, path.name)
            return path

        last_ckpt: Path | None = None
        reason = stop_reason(cfg.stop, metrics, prior_time) if metrics else None
        with interrupt_between_steps() as interrupted:
            try:
                while reason is None and not interrupted():
                    metrics = algo.step()
                    mark("driver: iteration done")
                    metrics["time_total_s"] = prior_time + time.monotonic() - start
                    writer.write(metrics)
                    history.append(metrics)
                    bar.update(int(metrics.get("env_steps", 0)), metrics)
                    reason = stop_reason(cfg.stop, metrics, metrics["time_total_s"])
                    every = cfg.checkpoint.every
                    if every and algo.iteration % every == 0 and reason is None:
                        last_ckpt = save()
                        writer.plot(HEADLINE)
            except KeyboardInterrupt:  # the second Ctrl-C, mid-iteration: its state is torn
                bar.close()
                raise Interrupted(_interrupted_line(run_dir, None, algo.iteration)) from None
            if interrupted():
                bar.close()
                raise Interrupted(_interrupted_line(run_dir, save(), algo.iteration))
        bar.close()
        if cfg.checkpoint.at_end:
            last_ckpt = save()
        writer.plot(HEADLINE)
    finally:
        writer.close()
        algo.close()
        mark("driver: algorithm closed")
    wall = time.monotonic() - start
    return RunResult(run_dir, metrics, reason or "", last_ckpt, wall, start_steps, history)


def summary_line(cfg: Any, result: RunResult) -> str:
    m = result.metrics
    steps = m.get("env_steps", 0)
    rate = (steps - result.start_env_steps) / max(result.wall_s, 1e-9)
    value = m.get(HEADLINE)
    shown = f"{value:.4g}" if isinstance(value, float) else "-"
    return (
        f"raydl: {cfg.kind} on {cfg.env} stopped ({result.stopped_by}) after "
        f"{steps:,} env steps, {result.wall_s:.1f}s ({rate:,.0f} steps/s); "
        f"{HEADLINE} {shown}; results in {result.run_dir}"
    )


def _fit(cfg: Any, run_dir: Path, resume: bool, progress: bool, echo: bool) -> RunResult:
    """Fit kinds: one blocking Ray Train fit; metrics come from the run's file."""
    start = time.monotonic()
    with _refusal_cleanup(run_dir, resume):
        registry.algorithm_class(cfg.kind).fit(cfg, run_dir, resume=resume, progress=progress)
    wall = time.monotonic() - start
    rows = read_metrics(run_dir)
    metrics = rows[-1] if rows else {}
    epoch = int(metrics.get("epoch", 0))
    if epoch >= cfg.train.epochs:
        reason = f"epochs {cfg.train.epochs} reached"
    elif metrics.get("time_budget_reached"):
        reason = f"time budget of {cfg.time_budget_s / 60:g} minutes reached"
    elif metrics.get("early_stopped"):
        reason = f"early stopping: no {metrics['early_stopped']} improvement in " \
                 f"{cfg.train.early_stop_patience} epochs"
    else:
        reason = f"ended at epoch {epoch}"
    newest = ckpt.latest_epoch_checkpoint(run_dir)
    result = RunResult(run_dir, metrics, reason, newest, wall, 0, rows)
    if echo:
        keys = dict.fromkeys((registry.headline(cfg), *registry.spec(cfg.kind).summary))
        shown = ", ".join(f"{k} {metrics[k]:.4g}" for k in keys
                          if isinstance(metrics.get(k), float))
        print(
            f"raydl: {cfg.title} stopped ({reason}) after "
            f"{epoch} epochs on {cfg.scaling.workers} workers, {wall:.1f}s; {shown or '-'}; "
            f"results in {run_dir}",
            flush=True,
        )
    return result
