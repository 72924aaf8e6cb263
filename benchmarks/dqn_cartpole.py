"""Time-to-solve on CartPole-v1: raydl's default DQN experiment vs. RLlib's tuned DQN.

What it measures
----------------
For each seed and each framework: the wall-clock seconds and the env steps sampled until
the task counts as solved, i.e. until the mean return of the last 100 training episodes
(fewer while fewer have finished, on both sides) is >= --target (default 450), or until
--max-steps env steps have been sampled (then the run counts as unsolved). Each timing
covers building the algorithm plus training; Ray start-up and Python imports happen once,
before any timing, and are excluded. After all runs it prints the median wall seconds
and median env steps per framework and the ratio raydl median wall / RLlib median wall
(goal: <= 0.25).

Command (full benchmark; also `make bench`):

    python benchmarks/dqn_cartpole.py --seeds 0 1 2 --max-steps 200000 --target 450 \
        --json bench.json

`--only raydl` or `--only rllib` runs one side only (then no ratio is printed).

raydl side
----------
`raydl.run.train("dqn_cartpole", ...)` on raydl/experiments/dqn_cartpole.yaml as it is, with
only the seed, the stop criteria and logging/checkpointing (off) overridden. That
experiment samples in the driver process (runners.num = 0).

RLlib side
----------
Ray 2.60 RLlib, new API stack, configured as RLlib's own CartPole DQN example
`rllib/tuned_examples/dqn/cartpole_dqn.py` (github.com/ray-project/ray; RLlib's
documented result: 450 within 200k timesteps):

    lr 5e-4 (0.0005 * sqrt(num_learners or 1), one learner),
    train_batch_size_per_learner 32,
    PrioritizedEpisodeReplayBuffer (capacity 50_000, alpha 0.6, beta 0.4),
    n_step (2, 5) (sampled per batch), double_q True, dueling True,
    epsilon [(0, 1.0), (10_000, 0.02)],
    DefaultModelConfig(fcnet_hiddens [256], fcnet_activation "tanh",
        fcnet_bias_initializer "zeros_", head_fcnet_hiddens [256],
        head_fcnet_bias_initializer "zeros_"),
    everything else at DQNConfig defaults (target_network_update_freq 500,
    num_steps_sampled_before_learning_starts 1000, grad_clip 40, huber loss,
    rollout_fragment_length "auto", min_sample_timesteps_per_iteration 1000, ...).

A later revision of that example (moved to rllib/examples/algorithms/dqn/cartpole_dqn.py)
decays epsilon over 25_000 steps instead of 10_000; this benchmark keeps the
tuned_examples value. Added here, none of which changes the learning algorithm:
num_env_runners 0 (the example's default too: it samples in the driver, like raydl),
num_learners 0 and num_gpus_per_learner 0 (local CPU learner, same 2 CPUs as raydl),
a fixed seed, metrics_num_episodes_for_smoothing 100, and an on_episode_end callback
that reports each finished episode's return. The callback exists because in Ray 2.60
`env_runners/episode_return_mean` is reset at every train() iteration (a mean over
that iteration's episodes only, ~2 once episodes last 500 steps), so the benchmark keeps
the 100-episode window itself. RLlib checks the stop criterion after each train()
iteration (>= 1000 env steps), raydl after each of its (much shorter) iterations.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Quiet Ray/RLlib before anything imports Ray: these only silence chatter, errors surface.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

# Run from a checkout without an installed raydl, too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RLLIB_SOURCE = "ray-project/ray rllib/tuned_examples/dqn/cartpole_dqn.py"
EPISODE_WINDOW = 100  # "solved" = mean over the last 100 training episodes, both sides
TARGET_RATIO = 0.25  # goal for raydl median wall / RLlib median wall
RETURNS_KEY = "bench_episode_returns"  # our per-episode returns in RLlib's results


@dataclass
class RunRecord:
    """One (framework, seed) run."""

    framework: str
    seed: int
    solved: bool
    wall_s: float  # building the algorithm + training; no Ray start-up, no imports
    env_steps: int  # env steps sampled when the run stopped
    return_mean: float | None  # mean return of the last <= 100 training episodes
    stopped_by: str
    extra: dict[str, Any]


# --------------------------------------------------------------------------- raydl


def run_raydl(seed: int, target: float, max_steps: int) -> RunRecord:
    from raydl.run import train

    overrides = [
        f"seed={seed}",
        f"stop.episode_return_mean={target!r}",  # repr: "450.0", a YAML float
        f"stop.env_steps={max_steps}",
        "checkpoint.every=0",
        "checkpoint.at_end=false",
        "log.tensorboard=false",
        "log.curve=false",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-raydl-") as out:
        # Timed outside train() so config loading and algorithm construction count too,
        # as they do on the RLlib side (RunResult.wall_s starts after construction).
        start = time.perf_counter()
        result = train("dqn_cartpole", overrides, out=out, progress=False, echo=False)
        wall = time.perf_counter() - start
    value = result.metrics.get("episode_return_mean")
    return RunRecord(
        framework="raydl",
        seed=seed,
        solved=value is not None and value >= target,
        wall_s=wall,
        env_steps=int(result.metrics.get("env_steps", 0)),
        return_mean=None if value is None else float(value),
        stopped_by=result.stopped_by,
        extra={"loop_wall_s": result.wall_s},
    )


# --------------------------------------------------------------------------- RLlib


def _record_episode_return(
    *, episode: Any, prev_episode_chunks: list[Any] | None = None,
    metrics_logger: Any = None, **_: Any,
) -> None:
    """on_episode_end: report the whole episode's return (all chunks) as a list item."""
    ret = episode.get_return() + sum(c.get_return() for c in prev_episode_chunks or ())
    metrics_logger.log_value(RETURNS_KEY, float(ret), reduce="item_series")


def rllib_config(seed: int) -> Any:
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    num_learners = 0
    return (
        DQNConfig()
        # The default in 2.60 (and explicit in older revisions of the tuned example);
        # saying so skips RLlib's "running on the new API stack" warning.
        .api_stack(
            enable_rl_module_and_learner=True,
            enable_env_runner_and_connector_v2=True,
        )
        .environment(env="CartPole-v1")
        # ---- copied from RLLIB_SOURCE ----
        .training(
            lr=0.0005 * (num_learners or 1) ** 0.5,
            train_batch_size_per_learner=32,
            replay_buffer_config={
                "type": "PrioritizedEpisodeReplayBuffer",
                "capacity": 50000,
                "alpha": 0.6,
                "beta": 0.4,
            },
            n_step=(2, 5),
            double_q=True,
            dueling=True,
            epsilon=[(0, 1.0), (10000, 0.02)],
        )
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=[256],
                fcnet_activation="tanh",
                fcnet_bias_initializer="zeros_",
                head_fcnet_bias_initializer="zeros_",
                head_fcnet_hiddens=[256],
            ),
        )
        # ---- benchmark-only: resources, seeding, measurement ----
        # Sample in the driver (the example's default too) and learn locally on CPU, so
        # both frameworks use the same 2 CPUs.
        .env_runners(num_env_runners=0)
        .learners(num_learners=num_learners, num_gpus_per_learner=0)
        .reporting(metrics_num_episodes_for_smoothing=EPISODE_WINDOW)
        .callbacks(on_episode_end=_record_episode_return)
        .debugging(seed=seed, log_level="ERROR")
    )


def run_rllib(seed: int, target: float, max_steps: int, config: Any = None) -> RunRecord:
    """Train RLlib's `config` (default: the tuned DQN above) until solved or max_steps."""
    config = rllib_config(seed) if config is None else config
    returns: deque[float] = deque(maxlen=EPISODE_WINDOW)
    steps = 0
    mean: float | None = None
    reported: float | None = None
    iterations = 0
    stopped_by = ""

    start = time.perf_counter()
    algo = config.build_algo()
    try:
        while True:
            result = algo.train()
            iterations += 1
            runners = result.get("env_runners", {})
            new = runners.get(RETURNS_KEY)
            if isinstance(new, (list, tuple)):  # NaN, not a list, when none finished
                returns.extend(float(r) for r in new)
            steps = int(
                result.get("num_env_steps_sampled_lifetime")
                or runners.get("num_env_steps_sampled_lifetime")
                or 0
            )
            reported = runners.get("episode_return_mean")
            if reported is not None and reported != reported:  # NaN: JSON can't hold it
                reported = None
            mean = sum(returns) / len(returns) if returns else None
            if mean is not None and mean >= target:
                stopped_by = f"episode_return_mean {mean:.4g} >= {target:g}"
                break
            if steps >= max_steps:
                stopped_by = f"env_steps {steps:,} reached"
                break
        wall = time.perf_counter() - start
    finally:
        # Untimed: actor/learner clean-up. raydl's close() falls inside train(), but it
        # has no actors here and takes milliseconds.
        algo.stop()
    return RunRecord(
        framework="rllib",
        seed=seed,
        solved=mean is not None and mean >= target,
        wall_s=wall,
        env_steps=steps,
        return_mean=mean,
        stopped_by=stopped_by,
        extra={
            "iterations": iterations,
            # RLlib's own (per-iteration in 2.60) figure, for reference only.
            "rllib_reported_return_mean": None if reported is None else float(reported),
        },
    )


# --------------------------------------------------------------------------- report


def summarize(records: list[RunRecord]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for fw in ("raydl", "rllib"):
        rows = [r for r in records if r.framework == fw]
        if rows:
            summary[fw] = {
                "runs": len(rows),
                "solved": sum(r.solved for r in rows),
                "median_wall_s": statistics.median(r.wall_s for r in rows),
                "median_env_steps": statistics.median(r.env_steps for r in rows),
            }
    if "raydl" in summary and "rllib" in summary:
        ratio = summary["raydl"]["median_wall_s"] / summary["rllib"]["median_wall_s"]
        summary["wall_ratio_raydl_over_rllib"] = ratio
        summary["target_ratio"] = TARGET_RATIO
        summary["target_met"] = ratio <= TARGET_RATIO
    return summary


def fmt_return(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_report(records: list[RunRecord], summary: dict[str, Any], target: float) -> None:
    print()
    print(f"{'framework':<10}{'seed':>5}  {'solved':<7}{'wall s':>9}{'env steps':>12}"
          f"{'return(100)':>13}")
    for r in records:
        print(f"{r.framework:<10}{r.seed:>5}  {'yes' if r.solved else 'no':<7}"
              f"{r.wall_s:>9.1f}{r.env_steps:>12,}{fmt_return(r.return_mean):>13}")
    print()
    for fw in ("raydl", "rllib"):
        s = summary.get(fw)
        if s:
            print(f"{fw:<6} median wall {s['median_wall_s']:8.1f} s   median env steps "
                  f"{s['median_env_steps']:>10,.0f}   solved {s['solved']}/{s['runs']}")
    if "wall_ratio_raydl_over_rllib" in summary:
        ratio = summary["wall_ratio_raydl_over_rllib"]
        print(f"ratio raydl/rllib median wall: {ratio:.3f}   (target <= {TARGET_RATIO}: "
              f"{'met' if summary['target_met'] else 'not met'})")
    print()
    print(f"notes: solved = mean return of the last {EPISODE_WINDOW} training episodes >= "
          f"{target:g}; unsolved runs count with their capped time, so a median that "
          "includes them is a lower bound.")
    print(f"       RLlib: {RLLIB_SOURCE} settings, 0 remote env runners (example default), "
          "local CPU learner; both frameworks in this one process on the same CPUs.")


def start_private_ray() -> None:
    """Start an embedded 2-CPU Ray for this process only, so both frameworks run on the
    same 2 CPUs (raydl's embedded start never joins a `ray start` cluster; RAY_ADDRESS
    would make it, so it is dropped here)."""
    from raydl.runtime import init_ray

    os.environ.pop("RAY_ADDRESS", None)
    init_ray(num_cpus=2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-steps", type=int, default=200_000,
                   help="env steps after which a run stops unsolved")
    p.add_argument("--target", type=float, default=450.0,
                   help="mean return over the last 100 episodes that counts as solved")
    p.add_argument("--only", choices=["raydl", "rllib"], default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    frameworks = [args.only] if args.only else ["raydl", "rllib"]

    # Start Ray and import both stacks once, before any timing.
    import ray

    start_private_ray()
    for name in ("ray", "ray.rllib", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Imports (torch, gymnasium, each framework's lazily loaded DQN modules) are one-off
    # process costs, not time-to-solve: pay them here, untimed, for both sides.
    import gymnasium  # noqa: F401
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  (the first optimizer built imports it: ~2 s)

    import raydl.rl.dqn  # noqa: F401
    import raydl.run  # noqa: F401

    if "rllib" in frameworks:
        import ray.rllib.algorithms.dqn  # noqa: F401
        import ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module  # noqa: F401
        import ray.rllib.algorithms.dqn.torch.dqn_torch_learner  # noqa: F401
        import scipy.signal  # noqa: F401  (RLlib's n-step replay sampling loads it: ~1.5 s)

    runners = {"raydl": run_raydl, "rllib": run_rllib}
    records: list[RunRecord] = []
    try:
        for fw in frameworks:
            for seed in args.seeds:
                rec = runners[fw](seed, args.target, args.max_steps)
                records.append(rec)
                print(f"{fw} seed {seed}: {'solved' if rec.solved else 'not solved'} in "
                      f"{rec.wall_s:.1f}s, {rec.env_steps:,} env steps "
                      f"(return(100) {fmt_return(rec.return_mean)}; {rec.stopped_by})",
                      flush=True)
    finally:
        ray.shutdown()

    summary = summarize(records)
    print_report(records, summary, args.target)
    if args.json is not None:
        payload = {
            "settings": {
                "seeds": args.seeds, "max_steps": args.max_steps, "target": args.target,
                "episode_window": EPISODE_WINDOW, "num_cpus": 2,
                "ray_version": ray.__version__, "rllib_source": RLLIB_SOURCE,
            },
            "runs": [asdict(r) for r in records],
            "summary": summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
