"""ASHA vs random search with FIFO on `tune_dqn_cartpole` (issue 7).

Both searches sample the same trial configs (Tune's variant generator is seeded by the
experiment's seed) and differ only in the scheduler. Printed side by side: the best
episode_return_mean any trial reached, and the env steps all trials spent together.
Target: ASHA's best at least as good with <= 50% of FIFO's env steps.

    python benchmarks/tune_asha_vs_fifo.py [--num-samples 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def search(scheduler: str, num_samples: int, out: Path) -> dict[str, Any]:
    from raydl.tune import tune_experiment

    start = time.monotonic()
    results = tune_experiment("tune_dqn_cartpole", [f"tune.scheduler.type={scheduler}"],
                              num_samples=num_samples, out=out, echo=False)
    wall = time.monotonic() - start
    trials = []
    for r in results:
        df = r.metrics_dataframe
        trials.append({"config": r.config, "env_steps": int(df["env_steps"].max()),
                       "best_return": float(df["episode_return_mean"].max()),
                       "iterations": int(df["training_iteration"].max())})
    return {"scheduler": scheduler, "wall_s": wall, "trials": trials,
            "env_steps": sum(t["env_steps"] for t in trials),
            "best_return": max(t["best_return"] for t in trials)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_tune"))
    args = parser.parse_args()
    asha = search("asha", args.num_samples, args.out)
    fifo = search("fifo", args.num_samples, args.out)
    same = [a["config"] for a in asha["trials"]] == [f["config"] for f in fifo["trials"]]
    print(f"\ntune_dqn_cartpole, {args.num_samples} trials each, same sampled configs: {same}")
    print(f"{'':<24}{'ASHA':>12}{'FIFO':>12}{'ASHA/FIFO':>12}")
    print(f"{'best return mean':<24}{asha['best_return']:>12.1f}{fifo['best_return']:>12.1f}"
          f"{asha['best_return'] / fifo['best_return']:>12.3f}")
    print(f"{'env steps, all trials':<24}{asha['env_steps']:>12,}{fifo['env_steps']:>12,}"
          f"{asha['env_steps'] / fifo['env_steps']:>12.3f}")
    print(f"{'wall time (s)':<24}{asha['wall_s']:>12.0f}{fifo['wall_s']:>12.0f}{asha['wall_s'] / fifo['wall_s']:>12.3f}")
    met = asha["best_return"] >= fifo["best_return"] and asha["env_steps"] <= 0.5 * fifo["env_steps"]
    print(f"target (best >= FIFO's with <= 50% of the env steps): {'met' if met else 'NOT met'}")
    results = ROOT / "docs" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "tune_asha_vs_fifo.json").write_text(json.dumps({"asha": asha, "fifo": fifo}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
