"""Time-to-solve on CartPole-v1: raydl A3C (1, 2, 4 workers) and A2C (2) vs. SB3's A2C.

What it measures
----------------
For each configuration and seed: the wall-clock seconds and env steps until the mean
return of the last 100 training episodes (fewer while fewer have finished) is >= --target
(default 450), the rule of benchmarks/dqn_cartpole.py, or until --max-steps env steps
(then the run counts as unsolved). A timing covers building the algorithm (raydl: its
worker actors too; SB3: its vector env and model) plus training; Ray start-up and
imports happen once, before any timing. All runs share this process and a private 2-CPU
Ray, one after another.

raydl side: `raydl.run.train` on raydl/experiments/a3c_cartpole.yaml (and a2c_cartpole.yaml)
as they are: each worker actor steps 4 envs for 5 steps per gradient; only the seed, the
number of workers (and, for 4 workers on 2 CPUs, half a CPU each), the stop criteria and
logging are overridden.

SB3 side: stable-baselines3 A2C with the rl-baselines3-zoo hyperparameters for
CartPole-v1 (hyperparams/a2c.yml: n_envs 8, MlpPolicy, ent_coef 0.0; everything else at
SB3's A2C defaults: lr 7e-4, n_steps 5, RMSprop eps 1e-5, vf_coef 0.5, max_grad_norm
0.5, gae_lambda 1), make_vec_env (DummyVecEnv), device cpu, one torch thread (as raydl's
learner). A callback reads each finished episode's return from the Monitor info and
stops learning once the window mean reaches the target.

Targets: raydl A3C with 2 workers solves in less median wall time than SB3's A2C; the
speed-up of A3C from 1 to 2 workers (median wall 1 / median wall 2) is printed as
measured (this machine has 2 cores, and the learner shares them).

Command (needs the bench extra: pip install -e .[bench]):

    python benchmarks/actor_critic_cartpole.py --seeds 0 1 2 --json bench_results/ac.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dqn_cartpole import EPISODE_WINDOW, RunRecord, fmt_return, start_private_ray

CONFIGS = ["a3c-1", "a3c-2", "a3c-4", "a2c-2", "sb3-a2c"]
ZOO_SOURCE = "DLR-RM/rl-baselines3-zoo hyperparams/a2c.yml (CartPole-v1)"


def run_raydl(config: str, seed: int, target: float, max_steps: int) -> RunRecord:
    from raydl.run import train

    kind, workers = config.split("-")
    overrides = [
        f"seed={seed}",
        f"runners.num={workers}",
        f"runners.cpus_per_runner={min(1.0, 2 / int(workers))}",
        f"stop.episode_return_mean={target!r}",
        f"stop.env_steps={max_steps}",
        "checkpoint.every=0", "checkpoint.at_end=false",
        "log.tensorboard=false", "log.curve=false",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-ac-") as out:
        start = time.perf_counter()
        result = train(f"{kind}_cartpole", overrides, out=out, progress=False, echo=False)
        wall = time.perf_counter() - start
    m = result.metrics
    value = m.get("episode_return_mean")
    return RunRecord(
        framework=f"raydl-{config}", seed=seed,
        solved=value is not None and value >= target, wall_s=wall,
        env_steps=int(m.get("env_steps", 0)),
        return_mean=None if value is None else float(value),
        stopped_by=result.stopped_by,
        extra={"learner_updates": m.get("learner_updates"),
               "staleness_mean_last_iteration": m.get("staleness_mean"),
               "env_steps_per_s": (m.get("env_steps", 0) / result.wall_s) if result.wall_s else None},
    )


def run_sb3(seed: int, target: float, max_steps: int) -> RunRecord:
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class StopWhenSolved(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.returns: deque[float] = deque(maxlen=EPISODE_WINDOW)

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
            return not (self.returns and statistics.fmean(self.returns) >= target)

    torch.set_num_threads(1)
    callback = StopWhenSolved()
    start = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, device="cpu", verbose=0)
    model.learn(total_timesteps=max_steps, callback=callback)
    wall = time.perf_counter() - start
    env.close()
    value = statistics.fmean(callback.returns) if callback.returns else None
    solved = value is not None and value >= target
    return RunRecord(
        framework="sb3-a2c", seed=seed, solved=solved, wall_s=wall,
        env_steps=int(model.num_timesteps), return_mean=value,
        stopped_by="target reached" if solved else f"env_steps {max_steps:,} reached",
        extra={"env_steps_per_s": model.num_timesteps / wall},
    )


def summarize(records: list[RunRecord]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in dict.fromkeys(r.framework for r in records):
        rows = [r for r in records if r.framework == name]
        summary[name] = {
            "runs": len(rows), "solved": sum(r.solved for r in rows),
            "median_wall_s": statistics.median(r.wall_s for r in rows),
            "median_env_steps": statistics.median(r.env_steps for r in rows),
        }

    def wall(name: str) -> float | None:
        return summary[name]["median_wall_s"] if name in summary else None

    a3c1, a3c2, sb3 = wall("raydl-a3c-1"), wall("raydl-a3c-2"), wall("sb3-a2c")
    if a3c2 is not None and sb3 is not None:
        summary["ratio_a3c2_over_sb3"] = a3c2 / sb3
        summary["target_met"] = a3c2 < sb3
    if a3c1 is not None and a3c2 is not None:
        summary["speedup_a3c_1_to_2_workers"] = a3c1 / a3c2
    return summary


def print_report(records: list[RunRecord], summary: dict[str, Any], target: float) -> None:
    print()
    print(f"{'config':<14}{'seed':>5}  {'solved':<7}{'wall s':>9}{'env steps':>12}"
          f"{'steps/s':>9}{'return(100)':>13}")
    for r in records:
        rate = r.extra.get("env_steps_per_s") or 0
        print(f"{r.framework:<14}{r.seed:>5}  {'yes' if r.solved else 'no':<7}"
              f"{r.wall_s:>9.1f}{r.env_steps:>12,}{rate:>9,.0f}{fmt_return(r.return_mean):>13}")
    print()
    for name, s in summary.items():
        if isinstance(s, dict):
            print(f"{name:<14} median wall {s['median_wall_s']:7.1f} s   median env steps "
                  f"{s['median_env_steps']:>9,.0f}   solved {s['solved']}/{s['runs']}")
    if "ratio_a3c2_over_sb3" in summary:
        print(f"raydl A3C x2 / SB3 A2C median wall: {summary['ratio_a3c2_over_sb3']:.3f}   "
              f"(target < 1: {'met' if summary['target_met'] else 'not met'})")
    if "speedup_a3c_1_to_2_workers" in summary:
        print(f"A3C speed-up 1 -> 2 workers (median wall): "
              f"{summary['speedup_a3c_1_to_2_workers']:.2f}x on 2 CPUs")
    print(f"notes: solved = mean return of the last {EPISODE_WINDOW} training episodes >= "
          f"{target:g}; unsolved runs count with their capped time.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--configs", nargs="+", choices=CONFIGS, default=CONFIGS)
    p.add_argument("--max-steps", type=int, default=500_000,
                   help="env steps after which a run stops unsolved (the zoo's budget)")
    p.add_argument("--target", type=float, default=450.0)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import ray

    start_private_ray()
    # One-off import costs, untimed, for both sides.
    import raydl.rl.actor_critic  # noqa: F401
    import raydl.run  # noqa: F401

    if "sb3-a2c" in args.configs:
        import stable_baselines3  # noqa: F401
    records: list[RunRecord] = []
    try:
        for config in args.configs:
            for seed in args.seeds:
                if config == "sb3-a2c":
                    rec = run_sb3(seed, args.target, args.max_steps)
                else:
                    rec = run_raydl(config, seed, args.target, args.max_steps)
                records.append(rec)
                print(f"{rec.framework} seed {seed}: {'solved' if rec.solved else 'not solved'}"
                      f" in {rec.wall_s:.1f}s, {rec.env_steps:,} env steps "
                      f"(return(100) {fmt_return(rec.return_mean)})", flush=True)
    finally:
        ray.shutdown()
    summary = summarize(records)
    print_report(records, summary, args.target)
    if args.json is not None:
        import stable_baselines3

        payload = {
            "settings": {"seeds": args.seeds, "max_steps": args.max_steps,
                         "target": args.target, "episode_window": EPISODE_WINDOW,
                         "num_cpus": 2, "ray_version": ray.__version__,
                         "sb3_version": stable_baselines3.__version__,
                         "sb3_hyperparameters": ZOO_SOURCE},
            "runs": [asdict(r) for r in records],
            "summary": summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
