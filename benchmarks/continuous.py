"""SAC and TD3 as a user sees them: whole processes, start-up included; raydl vs SB3.

What it measures
----------------
Every run is its own Python process, timed from launch to exit, seeds in turn with the
sides' order rotating from seed to seed, one run at a time on the same machine.

- pendulum (--algo sac or td3): Pendulum-v1 until the greedy policy's mean return over
  10 evaluation episodes, evaluated every 1,000 env steps, is >= --target (-200), or
  --max-steps (20,000, the zoo's budget). Reported: the env steps of the evaluation that
  passed (the weights after that many steps) and the whole-process wall seconds.
- lunarlander (--algo sac): LunarLanderContinuous-v3, the mean return of the last 100
  training episodes at ten evenly spaced points up to --max-steps, and wall.

Sides
-----
- raydl: `python -m raydl run sac_pendulum` (td3_pendulum, sac_lunarlander_continuous) as
  shipped, with `--set seed=S`; the numbers come from the run directory's metrics.jsonl.
- SB3 2.9.2 with rl-baselines3-zoo's settings, the same ones raydl's experiments hold:
  SAC Pendulum-v1: learning_rate 1e-3, the rest SB3's defaults; TD3 Pendulum-v1: gamma
  0.98, buffer_size 200000, learning_starts 10000, NormalActionNoise(0, 0.1),
  train_freq (1, "episode"), gradient_steps -1, learning_rate 1e-3, net_arch [400, 300];
  SAC LunarLanderContinuous-v3: learning_rate 7.3e-4 (the zoo's is linear), buffer 1e6,
  batch 256, tau 0.01, learning_starts 10000, net_arch [400, 300]. Evaluation as
  SB3's EvalCallback does it (eval_freq 1000, 10 deterministic episodes), on a separate
  env seeded like raydl's evaluation; device cpu, torch's default threads.

Command (needs the bench extra: pip install stable-baselines3==2.9.2):

    python benchmarks/continuous.py --algo sac --task pendulum --seeds 0 1 2
    python benchmarks/continuous.py --algo td3 --task pendulum --seeds 0 1 2
    python benchmarks/continuous.py --algo sac --task lunarlander --seeds 0 --max-steps 200000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # raydl from this checkout, as the other benchmarks

from actor_critic_whole_process import timed  # noqa: E402
from dqn_cartpole import EPISODE_WINDOW, fmt_return  # noqa: E402

TASKS = {"pendulum": "Pendulum-v1", "lunarlander": "LunarLanderContinuous-v3"}
EXPERIMENTS = {("sac", "pendulum"): "sac_pendulum", ("td3", "pendulum"): "td3_pendulum",
               ("sac", "lunarlander"): "sac_lunarlander_continuous"}
ZOO: dict[tuple[str, str], dict[str, Any]] = {
    ("sac", "pendulum"): dict(learning_rate=1e-3),
    ("td3", "pendulum"): dict(gamma=0.98, buffer_size=200_000, learning_starts=10_000,
                              noise=0.1, train_freq=(1, "episode"), gradient_steps=-1,
                              learning_rate=1e-3, policy_kwargs=dict(net_arch=[400, 300])),
    ("sac", "lunarlander"): dict(learning_rate=7.3e-4, buffer_size=1_000_000, batch_size=256,
                                 tau=0.01, learning_starts=10_000,
                                 policy_kwargs=dict(net_arch=[400, 300])),
}
EVAL_EVERY, EVAL_EPISODES, CURVE_POINTS = 1_000, 10, 10
EVAL_SEED_OFFSET = 1_000_000_007  # raydl's eval episode k uses seed + this + k


def marks(task: str, max_steps: int) -> tuple[int, ...]:
    return () if task == "pendulum" else tuple(max_steps * i // CURVE_POINTS
                                               for i in range(1, CURVE_POINTS + 1))


def sb3_child(algo: str, task: str, seed: int, max_steps: int, target: float) -> dict[str, Any]:
    """Train SB3's SAC / TD3 with the zoo's settings; the record of the run."""
    import time

    import gymnasium as gym
    import numpy as np
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.noise import NormalActionNoise

    class Watch(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.returns: deque[float] = deque(maxlen=EPISODE_WINDOW)
            self.solved_at: int | None = None
            self.at: dict[str, float | None] = {}
            self.eval_env = gym.make(TASKS[task])

        def _evaluate(self) -> float:
            total = []
            for k in range(EVAL_EPISODES):
                obs, _ = self.eval_env.reset(seed=seed + EVAL_SEED_OFFSET + k)
                done, ret = False, 0.0
                while not done:
                    action, _ = self.model.predict(obs, deterministic=True)
                    obs, r, term, trunc, _ = self.eval_env.step(action)
                    ret, done = ret + float(r), term or trunc
                total.append(ret)
            return float(np.mean(total))

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
            for m in marks(task, max_steps):
                if str(m) not in self.at and self.num_timesteps >= m:
                    self.at[str(m)] = statistics.fmean(self.returns) if self.returns else None
            if task == "pendulum" and self.num_timesteps % EVAL_EVERY == 0:
                if self._evaluate() >= target:
                    self.solved_at = self.num_timesteps
                    return False
            return True

    hp = dict(ZOO[(algo, task)])
    start = time.perf_counter()
    env = gym.make(TASKS[task])
    if "noise" in hp:
        sigma = hp.pop("noise")
        hp["action_noise"] = NormalActionNoise(np.zeros(1), sigma * np.ones(1))
    cls = SAC if algo == "sac" else TD3
    model = cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **hp)
    watch = Watch()
    model.learn(total_timesteps=max_steps, callback=watch)
    return {"env_steps": int(model.num_timesteps), "solved_at": watch.solved_at,
            "return_mean": statistics.fmean(watch.returns) if watch.returns else None,
            "in_loop_s": time.perf_counter() - start, "return_at": watch.at}


def run_raydl(algo: str, task: str, seed: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """`raydl run <experiment>` as a user runs it; the record read from its run directory."""
    out = tmp / f"raydl-{algo}-{task}-{seed}"
    argv = [sys.executable, "-m", "raydl", "run", EXPERIMENTS[(algo, task)], "--set",
            f"seed={seed}", "--set", f"stop.env_steps={args.max_steps}", "--set",
            f"stop.eval_return_mean={args.target}" if task == "pendulum" else
            "stop.episode_return_mean=null", "--out", str(out), "--no-progress"]
    wall, _ = timed(argv, tmp)
    (run_dir,) = out.iterdir()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    solved = next((r for r in rows if (r.get("eval_return_mean") or -1e9) >= args.target), None)
    at = {}
    for m in marks(task, args.max_steps):
        row = next((r for r in rows if r.get("env_steps", 0) >= m), None)
        at[str(m)] = row.get("episode_return_mean") if row else None
    return {"wall_s": wall, "env_steps": int(rows[-1]["env_steps"]),
            "solved_at": solved["eval_env_steps"] if solved and task == "pendulum" else None,
            "return_mean": rows[-1].get("episode_return_mean"),
            "in_loop_s": rows[-1].get("time_total_s"), "return_at": at}


def run_side(side: str, args: argparse.Namespace, seed: int, tmp: Path) -> dict[str, Any]:
    if side == "raydl":
        return run_raydl(args.algo, args.task, seed, args, tmp)
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--algo", args.algo,
            "--task", args.task, "--seeds", str(seed), "--max-steps", str(args.max_steps),
            "--target", repr(args.target)]
    wall, stdout = timed(argv, tmp)
    return {"wall_s": wall, **json.loads(stdout.strip().splitlines()[-1])}


def report(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-run table, per-side medians and raydl / SB3 ratios."""
    points = marks(args.task, args.max_steps)
    print(f"\n{'side':<7}{'seed':>5}{'wall s':>9}{'in loop s':>11}{'env steps':>11}"
          f"{'solved at':>11}{'return(100)':>13}" + "".join(f"{f'@{m // 1000}k':>9}" for m in points))
    for r in rows:
        solved = f"{r['solved_at']:,}" if r["solved_at"] is not None else "-"
        print(f"{r['side']:<7}{r['seed']:>5}{r['wall_s']:>9.1f}{r['in_loop_s'] or 0:>11.1f}"
              f"{r['env_steps']:>11,}{solved:>11}{fmt_return(r['return_mean']):>13}"
              + "".join(f"{fmt_return(r['return_at'].get(str(m))):>9}" for m in points))
    summary: dict[str, Any] = {}
    for side in dict.fromkeys(r["side"] for r in rows):
        mine = [r for r in rows if r["side"] == side]
        solved = [r["solved_at"] for r in mine if r["solved_at"] is not None]
        summary[side] = {"runs": len(mine), "solved": len(solved),
                         "median_wall_s": statistics.median(r["wall_s"] for r in mine),
                         "median_solved_at": statistics.median(solved) if solved else None}
        s = summary[side]
        print(f"{side:<7} median wall {s['median_wall_s']:7.1f} s   median solved at "
              f"{s['median_solved_at'] if s['median_solved_at'] is not None else float('nan'):>9,.0f} env steps   solved {s['solved']}/{s['runs']}")
    if {"raydl", "sb3"} <= summary.keys():
        a, b = summary["raydl"], summary["sb3"]
        summary["wall_ratio"] = a["median_wall_s"] / b["median_wall_s"]
        print(f"raydl / sb3 median wall (whole processes): {summary['wall_ratio']:.3f}")
        if a["median_solved_at"] is not None and b["median_solved_at"]:
            summary["steps_ratio"] = a["median_solved_at"] / b["median_solved_at"]
            print(f"raydl / sb3 median env steps to solve: {summary['steps_ratio']:.3f}")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", choices=["sac", "td3"], default="sac")
    p.add_argument("--task", choices=sorted(TASKS), default="pendulum")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sides", nargs="+", choices=["raydl", "sb3"], default=["raydl", "sb3"])
    p.add_argument("--max-steps", type=int, default=None, help="default: pendulum 20000, "
                   "lunarlander 500000 (the zoo's)")
    p.add_argument("--target", type=float, default=-200.0)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if (args.algo, args.task) not in EXPERIMENTS:
        p.error(f"--algo {args.algo} --task {args.task}: allowed: "
                + ", ".join(f"{a} {t}" for a, t in EXPERIMENTS))
    args.max_steps = args.max_steps or (20_000 if args.task == "pendulum" else 500_000)
    if args.child:
        print(json.dumps(sb3_child(args.algo, args.task, args.seeds[0], args.max_steps, args.target)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-continuous-") as tmp:
        for i, seed in enumerate(args.seeds):
            turn = i % len(args.sides)
            for side in args.sides[turn:] + args.sides[:turn]:  # rotate who goes first
                rec = {**run_side(side, args, seed, Path(tmp)), "side": side, "seed": seed}
                rows.append(rec)
                print(f"{side} seed {seed}: {rec['wall_s']:.1f} s, {rec['env_steps']:,} env steps, "
                      f"solved at {rec['solved_at']}", flush=True)
    summary = report(args, rows)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
