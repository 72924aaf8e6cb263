"""Soak: DQN with 2 runner actors while runners and the driver are SIGKILLed, then checked.

What it does
------------
`raydl run dqn_cartpole` (2 runner actors, 500 env steps per iteration, a checkpoint
every 2 iterations) runs as a user starts it, in its own process group, for
`--minutes`. A chaos thread SIGKILLs a random runner actor (`ray::EnvRunner`) every
`--runner-every` seconds (jittered, seeded); twice (at 1/3 and 2/3 of the time) the
whole driver process group is SIGKILLed and the run is resumed with `raydl run --resume`.

Then it checks what a lost or doubled sample would break:
- metrics.jsonl: iterations 1..N once each, env steps strictly increasing, and the rows up
  to each resumed checkpoint exactly as they were before the kill;
- each driver kill lost at most the env steps since the newest checkpoint, and those
  were redone (the resumed rows continue from the checkpoint's env steps);
- the final checkpoint: replay buffer size == its env steps (every counted env step is
  one transition, none twice; the capacity is raised past what a soak collects);
- `runner_restarts` of the last row == the runner kills that landed (none missed).

Command:

    python benchmarks/soak_dqn.py --minutes 4 --json bench_results/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHUNK = 500
EVERY = 2  # checkpoint every N iterations


def runner_pids() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"ray::EnvRunner" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def rows(run_dir: Path) -> list[dict[str, Any]]:
    from raydl.metrics import read_metrics

    return read_metrics(run_dir)


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": ""}
    with open(log, "a") as fh:
        return subprocess.Popen([sys.executable, "-m", "raydl", "run", *args], stdout=fh, stderr=fh,
                                env=env, start_new_session=True)


class Chaos(threading.Thread):
    """SIGKILLs a random runner actor every `every` s (+-50%) while `active`."""

    def __init__(self, every: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.every, self.rng = every, random.Random(seed)
        self.active, self.stop = threading.Event(), threading.Event()
        self.kills: list[float] = []

    def run(self) -> None:
        while not self.stop.wait(self.every * self.rng.uniform(0.5, 1.5)):
            pids = runner_pids() if self.active.is_set() else []
            if pids:
                try:
                    os.kill(self.rng.choice(pids), signal.SIGKILL)
                    self.kills.append(time.monotonic())
                except ProcessLookupError:
                    pass


def soak(minutes: float, runner_every: float, seed: int, tmp: Path) -> dict[str, Any]:
    out, log = tmp / "runs", tmp / "soak.log"
    total = int(minutes * 60 * 900)  # ~900 env steps/s with 2 runners here: never reached
    proc = start(["dqn_cartpole", "--out", str(out), "--no-progress", "--set", "runners.num=2",
                  "--set", f"stop.env_steps={total}", "--set", f"stop.time_s={minutes * 60:.0f}",
                  "--set", "stop.episode_return_mean=null", "--set", "algo.buffer_size=1000000",
                  # 1-step transitions: one per counted env step, exactly (n-step windows
                  # still open when a runner dies are dropped with it, by design)
                  "--set", "algo.n_step=1",
                  "--set", f"algo.steps_per_iteration={CHUNK}", "--set", f"checkpoint.every={EVERY}",
                  "--set", "log.tensorboard=false", "--set", "log.curve=false"], log)
    chaos = Chaos(runner_every, seed)
    chaos.start()
    started, driver_kills = time.monotonic(), []
    run_dir: Path | None = None
    for fraction in (1 / 3, 2 / 3):
        while time.monotonic() - started < fraction * minutes * 60:
            run_dir = run_dir or next(iter(out.glob("*")), None)
            chaos.active.set() if run_dir and rows(run_dir) else chaos.active.clear()
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.5)
        # No runner kill in flight when the driver dies: wait for a checkpoint written after
        # the last one (its runner_restarts counts every kill so far; a resume restores it).
        chaos.active.clear()
        settled = len(rows(run_dir)) + 2 * EVERY
        while len(rows(run_dir)) < settled:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        time.sleep(chaos.rng.uniform(0.3, 2.0))  # somewhere between two checkpoints
        before = rows(run_dir)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        time.sleep(2.0)  # Ray's processes die with the group
        state = json.loads(max((run_dir / "checkpoints").glob("iter_*/state.json")).read_text())
        proc = start(["--resume", str(run_dir), "--no-progress"], log)
        while len(rows(run_dir)) <= state["iteration"] or rows(run_dir)[state["iteration"]] in before:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        driver_kills.append({"rows_before": before, "checkpoint": state,
                             "resumed_first_row_s": time.monotonic() - killed_at})
        chaos.active.set()
    # the last kills well before the end, so the last rows count every replacement
    while time.monotonic() - started < minutes * 60 - 20 and proc.poll() is None:
        time.sleep(0.5)
    chaos.active.clear()
    chaos.stop.set()
    proc.wait(timeout=minutes * 60 + 600)
    assert proc.returncode == 0, log.read_text()[-2000:]
    return check(run_dir, driver_kills, chaos.kills, time.monotonic() - started)


def check(run_dir: Path, driver_kills: list[dict[str, Any]], runner_kills: list[float],
          wall: float) -> dict[str, Any]:
    final = rows(run_dir)
    assert [r["iteration"] for r in final] == list(range(1, len(final) + 1)), "missing or doubled rows"
    steps = [r["env_steps"] for r in final]
    assert all(a < b for a, b in zip(steps, steps[1:])), "env steps not increasing"
    lost = []
    for kill in driver_kills:
        k, before = kill["checkpoint"]["iteration"], kill["rows_before"]
        assert final[:k] == before[:k], "history before the checkpoint changed"
        assert final[k - 1]["env_steps"] == kill["checkpoint"]["env_steps"]
        lost.append(before[-1]["env_steps"] - kill["checkpoint"]["env_steps"])
        assert lost[-1] <= (EVERY + 1) * CHUNK + 256, "lost more than the steps since the checkpoint"
    newest = max((run_dir / "checkpoints").glob("iter_*"))
    state = json.loads((newest / "state.json").read_text())
    import numpy as np

    with np.load(newest / "buffer.npz") as data:
        stored = len(data["reward"])
    assert stored == state["env_steps"], f"buffer {stored} transitions for {state['env_steps']} env steps"
    restarts = final[-1]["runner_restarts"]
    assert restarts == len(runner_kills), f"runner_restarts {restarts} for {len(runner_kills)} kills"
    return {"wall_s": wall, "iterations": len(final), "env_steps": steps[-1],
            "runner_kills_survived": len(runner_kills), "runner_restarts": restarts,
            "driver_kills_survived": len(driver_kills), "env_steps_lost_and_redone": lost,
            "resumed_first_row_s": [round(k["resumed_first_row_s"], 1) for k in driver_kills],
            "buffer_transitions": stored, "learner_updates": final[-1]["learner_updates"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--runner-every", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        report = soak(args.minutes, args.runner_every, args.seed, Path(tmp))
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
