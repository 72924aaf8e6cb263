"""Time to solve CartPole-v1 as a user sees it: whole processes, start-up included.

What it measures
----------------
For each seed, two commands run one after the other (their order alternating from seed
to seed), each timed from launch to exit:

- raydl: `python -m raydl run a3c_cartpole --set seed=S` exactly as shipped
  (raydl/experiments/a3c_cartpole.yaml stops at a mean return of 450 over the last 100
  training episodes, or at 500k env steps; two worker actors; checkpoints, TensorBoard
  and curve.png as usual), in a fresh output directory;
- SB3: a fresh Python process that imports stable-baselines3 and trains its A2C with the
  rl-baselines3-zoo settings for CartPole-v1 until the same rule holds (the function of
  benchmarks/actor_critic_cartpole.py, which documents the settings).

Both start from nothing: interpreter, imports, Ray's start (raydl) and the env are in
the time. Target (issue 16): median of the per-seed ratios raydl / SB3 below 1.

Command (needs the bench extra: pip install -e .[bench]):

    python benchmarks/actor_critic_whole_process.py --seeds 0 1 2 --json bench_results/ac_whole.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGET = 450.0
MAX_STEPS = 500_000


def sb3_child(seed: int) -> None:
    """The SB3 side, run in its own process: train, then print the record as JSON."""
    sys.path.insert(0, str(HERE))
    from dataclasses import asdict

    from actor_critic_cartpole import run_sb3

    print(json.dumps(asdict(run_sb3(seed, TARGET, MAX_STEPS))))


def timed(argv: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    env = {**os.environ, "RAY_ADDRESS": ""}  # raydl starts its own Ray, as for a new user
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, done.stdout


def run_raydl(seed: int, tmp: Path) -> dict[str, Any]:
    out = tmp / f"raydl-{seed}"
    wall, _ = timed([sys.executable, "-m", "raydl", "run", "a3c_cartpole", "--set", f"seed={seed}",
                     "--out", str(out), "--no-progress"], tmp)
    (run_dir,) = out.iterdir()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    value = last.get("episode_return_mean")
    return {"wall_s": wall, "env_steps": last["env_steps"], "return_mean": value,
            "solved": value is not None and value >= TARGET, "in_loop_s": last["time_total_s"]}


def run_sb3(seed: int, tmp: Path) -> dict[str, Any]:
    wall, stdout = timed([sys.executable, str(Path(__file__).resolve()), "--sb3-child", str(seed)], tmp)
    record = json.loads(stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "env_steps": record["env_steps"], "return_mean": record["return_mean"],
            "solved": record["solved"], "in_loop_s": record["wall_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--sb3-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sb3_child is not None:
        sb3_child(args.sb3_child)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ac-whole-") as tmp:
        for i, seed in enumerate(args.seeds):
            sides = [("raydl", run_raydl), ("sb3", run_sb3)]
            results = {name: None for name, _ in sides}
            for name, run in (sides if i % 2 == 0 else sides[::-1]):
                results[name] = run(seed, Path(tmp))
            ratio = results["raydl"]["wall_s"] / results["sb3"]["wall_s"]
            rows.append({"seed": seed, **results, "ratio": ratio})
            r, s = results["raydl"], results["sb3"]
            print(f"seed {seed}: raydl {r['wall_s']:.1f} s ({r['env_steps']:,} steps, in loop "
                  f"{r['in_loop_s']:.1f} s, solved {r['solved']}) | SB3 {s['wall_s']:.1f} s "
                  f"({s['env_steps']:,} steps, in loop {s['in_loop_s']:.1f} s, solved {s['solved']}) "
                  f"| ratio {ratio:.3f}", flush=True)
    median = statistics.median(r["ratio"] for r in rows)
    print(f"median ratio raydl / SB3 (whole processes): {median:.3f} (target < 1: "
          f"{'met' if median < 1 else 'NOT met'})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "median_ratio": median}, indent=1))


if __name__ == "__main__":
    main()
