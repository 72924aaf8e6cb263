"""Time to first step: whole `raydl` commands, start-up included, and where their seconds go.

What it measures
----------------
Each row is one command a new user types, run as a whole process (`--repeats` times, one
after another, nothing else running): its wall time from launch to exit, and a time line
of one run (the median one) built from

- the process's own marks: with RAYDL_PROFILE set, raydl appends a line per phase
  (raydl/profile.py) from the driver, every runner actor and every Ray Train worker,
  each with its process's start time, so a process's start-up (Python, imports) shows up
  as the gap between "started" and its first mark;
- Ray Train's controller log (RAY session logs, `[Worker Group Initialization]` lines):
  worker actors created, train context (process group) initialized, function launched.

The anchor is what every Ray program pays, `python -c "import ray; ray.init()"`, in the
same run. Targets (issue 16): list and check <= 1 s; DQN 1000 env steps <= 8 s with one
runner actor and <= 4 s in the driver; cnn_digits one epoch <= 12 s.

Command:

    python benchmarks/startup_profile.py --repeats 3 --json bench_results/startup.json
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
from datetime import datetime
from pathlib import Path
from typing import Any

RAYDL = [sys.executable, "-m", "raydl"]
RUN_QUIET = ["--no-progress", "--set", "log.tensorboard=false", "--set", "log.curve=false"]
ROWS: dict[str, tuple[list[str], float | None]] = {
    "raydl list": (RAYDL + ["list"], 1.0),
    "raydl check dqn_cartpole": (RAYDL + ["check", "dqn_cartpole"], 1.0),
    "python -c 'import ray; ray.init()' (anchor)": (
        [sys.executable, "-c", "import ray; ray.init()"], None),
    "raydl run dqn_cartpole, 1000 env steps, 1 runner actor": (
        RAYDL + ["run", "dqn_cartpole", "--set", "stop.env_steps=1000", "--set", "runners.num=1"], 8.0),
    "raydl run dqn_cartpole, 1000 env steps, runners.num=0": (
        RAYDL + ["run", "dqn_cartpole", "--set", "stop.env_steps=1000", "--set", "runners.num=0"], 4.0),
    "raydl run a3c_cartpole, 1000 env steps": (
        RAYDL + ["run", "a3c_cartpole", "--set", "stop.env_steps=1000"], None),
    "raydl run cnn_digits, 1 epoch": (RAYDL + ["run", "cnn_digits", "--set", "train.epochs=1"], 12.0),
}
CONTROLLER_PHASES = {
    "Requesting resources": "Train controller: resources requested",
    "worker actors created": "Train controller: worker actors created",
    "Train context initialized": "Train controller: process group and train context ready",
    "Train function launched": "Train controller: train function launched",
    "Shutting down": "Train controller: shutting down workers",
}


def controller_marks(since: float) -> list[dict[str, Any]]:
    """Phases from the newest Ray session's Train controller log, written after `since`."""
    logs = Path(tempfile.gettempdir()) / "ray" / "session_latest" / "logs" / "train"
    marks = []
    for path in sorted(logs.glob("ray-train-sys-controller-*.log")) if logs.is_dir() else []:
        if path.stat().st_mtime < since:
            continue
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            for needle, name in CONTROLLER_PHASES.items():
                if needle in row.get("message", ""):
                    t = datetime.strptime(row["asctime"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                    marks.append({"mark": name, "t": t, "pid": row.get("process")})
    return marks


def time_line(marks: list[dict[str, Any]], launch: float, end: float) -> list[tuple[float, str]]:
    """(seconds since launch, phase) for the first time each phase was reached, with the
    start of every process that left a mark (named after its first mark)."""
    first: dict[str, float] = {}
    by_pid: dict[int, dict[str, Any]] = {}
    for m in sorted(marks, key=lambda m: m["t"]):
        first.setdefault(m["mark"], m["t"])
        if m.get("started") and m["pid"] not in by_pid:
            by_pid[m["pid"]] = m
    for m in by_pid.values():
        who = m["mark"].split(":", 1)[0]
        first.setdefault(f"{who}: process started", m["started"])
    first["process exited"] = end
    return sorted((t - launch, name) for name, t in first.items())


def run_once(command: list[str], out: Path) -> tuple[float, list[tuple[float, str]]]:
    profile = out / f"profile-{time.time_ns()}.jsonl"
    env = {**os.environ, "RAYDL_PROFILE": str(profile), "RAY_ADDRESS": ""}
    argv = [*command, "--out", str(out), *RUN_QUIET] if command[3:4] == ["run"] else command
    launch = time.time()
    done = subprocess.run(argv, env=env, cwd=out, capture_output=True, text=True)
    end = time.time()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    marks = [json.loads(line) for line in profile.read_text().splitlines()] if profile.exists() else []
    return end - launch, time_line(marks + controller_marks(launch), launch, end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", nargs="*", help="substrings of the rows to run (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        for name, (command, target) in ROWS.items():
            if args.rows and not any(r in name for r in args.rows):
                continue
            runs = [run_once(command, Path(tmp)) for _ in range(args.repeats)]
            walls = [w for w, _ in runs]
            median = statistics.median(walls)
            _, line = min(runs, key=lambda r: abs(r[0] - median))
            results.append({"row": name, "walls_s": walls, "median_s": median, "target_s": target,
                            "time_line": line})
            verdict = "" if target is None else (" (target <= %gs: %s)" % (target, "met" if median <= target else "NOT met"))
            print(f"\n## {name}: median {median:.2f} s of {', '.join(f'{w:.2f}' for w in walls)}{verdict}")
            previous = 0.0
            for t, phase in line:
                print(f"  {t:6.2f} s  (+{t - previous:5.2f})  {phase}")
                previous = t
            sys.stdout.flush()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
