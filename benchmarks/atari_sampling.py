"""Sampling throughput on preprocessed Atari Pong: four samplers on the same CPUs.

What it measures
----------------
Agent steps per second, where one agent step is one preprocessed env step (DeepMind
preprocessing: frame skip 4 with a max over the last two frames, so 4 emulator frames;
84x84 grayscale uint8, 4-frame stack, up to 30 no-ops, FIRE on reset, sticky actions
0.25 as in ALE v5), built by `raydl.envs.atari.make_atari` for every sampler:

  (a) reference: one process steps one env in a plain loop with random actions;
      1 CPU. "(a) x cores" is what perfect scaling of the bare emulator would give.
  (b) gymnasium AsyncVectorEnv: N = --envs (default 2 x --cpus) env subprocesses,
      random actions; --cpus CPUs.
  (c) RLlib (Ray 2.60, new API stack): --cpus `SingleAgentEnvRunner` actors
      (num_cpus=1 each, built from a `DQNConfig` exactly as `EnvRunnerGroup` builds
      them), each stepping M = --envs-per-runner envs through RLlib's default DQN
      RLModule (default model config: RLlib's 84x84 conv stack, dueling head) with a
      constant epsilon of --epsilon; each request is `sample(num_timesteps=M x
      --rollout)` followed by `get_metrics()`, as RLlib's own sampling loop pairs them.
      Same raydl preprocessing, then made the way RLlib's CNN encoder takes images:
      the (4, 84, 84) uint8 frames are transposed to (84, 84, 4) and turned into float32
      in [-1, 1] by RLlib's own `NormalizedImageEnv` (the last wrapper of RLlib's
      `wrap_atari_for_new_api_stack`; RLlib's CNN encoder does not accept uint8).
  (d) raydl: --cpus actors `ray.remote(num_cpus=1)(raydl.rl.runners.env_runner.EnvRunner)`, each
      stepping M envs with batched inference through raydl's Nature-CNN Q-network
      (`QNetwork((4, 84, 84), A, [512])`, 1 torch thread) at epsilon --epsilon: the
      network runs on every step and 5% of actions (default) are random, the realistic
      cost of acting. Each request is `sample(--rollout, epsilon)`; in frame mode (where
      raydl's EnvRunner supports it, as its Atari training uses it) the runner returns
      single frames for the frame-deduplicating replay buffer, else full transitions.

(c) and (d) use the same driver loop: one sample request in flight per actor, collected
with `ray.wait` and resubmitted as soon as it completes (before its result is fetched),
results fetched into the driver as training would. No weight broadcasts and no learning
in either: this is the sampler alone.

Measurement: each sampler first runs a warm-up (--warmup seconds; for (c)/(d) also until
every actor has returned one sample), then counts the agent steps completed within a
fixed wall-clock window of --seconds. For (c)/(d) a request counts when its completion
is seen by the driver inside the window (requests straddling either edge balance out).
When --cpus is below the cores this process may use, the process (and so its env
subprocesses and the embedded Ray it starts) is pinned to --cpus cores first.

Printed per sampler: agent steps/s, CPUs used, and the ratio steps/s / ((a) x CPUs);
then the target: raydl >= 0.85 x (a) x cores, and raydl above (b) and (c).

Command (full benchmark):

    python benchmarks/atari_sampling.py --seconds 20 --json bench_results/atari_sampling.json

Quick check: `--seconds 3 --warmup 1`; one sampler: `--only d`; `--env CartPole-v1`
runs the same four samplers on CartPole (MLP Q-network [64]) as a smoke test.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
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

TARGET_FRACTION = 0.85  # raydl >= 0.85 x (a) x cores
SAMPLERS = ("a", "b", "c", "d")
NAMES = {
    "a": "(a) 1 env, plain loop, random",
    "b": "(b) gymnasium AsyncVectorEnv",
    "c": "(c) RLlib SingleAgentEnvRunner",
    "d": "(d) raydl EnvRunner actors",
}


# --------------------------------------------------------------------------- envs


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


def make_env(env_id: str) -> Any:
    """The env every sampler steps: raydl's DeepMind-preprocessed Atari (or a plain
    gymnasium env for non-ALE ids, for smoke tests)."""
    import gymnasium as gym

    if is_atari(env_id):
        from raydl.envs.atari import make_atari

        return make_atari(env_id)
    return gym.make(env_id)


def make_rllib_env(env_ctx: Any) -> Any:
    """RLlib env creator: the same env, with images made the way RLlib's CNN encoder
    takes them: channels-last, and float32 through RLlib's own `NormalizedImageEnv` (the
    last step of its `wrap_atari_for_new_api_stack`; the encoder does not cast uint8).
    `env_ctx` is RLlib's EnvContext (a dict holding our env_config)."""
    import gymnasium as gym
    import numpy as np

    env = make_env(env_ctx["env_id"])
    shape = env.observation_space.shape
    if len(shape) == 3:
        from ray.rllib.env.wrappers.atari_wrappers import NormalizedImageEnv

        c, h, w = shape
        space = gym.spaces.Box(0, 255, (h, w, c), np.uint8)
        env = gym.wrappers.TransformObservation(
            env, lambda obs: np.transpose(obs, (1, 2, 0)), space
        )
        env = NormalizedImageEnv(env)
    return env


# --------------------------------------------------------------------------- timing


def timed_loop(step: Callable[[], int], warmup: float, seconds: float) -> dict[str, Any]:
    """Call `step()` (returns agent steps done) for `warmup` s, then count the steps
    completed in the next `seconds` s of wall clock."""
    now = time.perf_counter
    end_warmup = now() + warmup
    while now() < end_warmup:
        step()
    steps = 0
    t0 = now()
    t_end = t0 + seconds
    while True:
        n = step()
        t = now()
        if t > t_end:
            break
        steps += n
    return {"steps": steps, "window_s": seconds, "steps_per_s": steps / seconds}


def drive_actors(
    actors: list[Any],
    submit: Callable[[Any], Any],
    count: Callable[[Any], int],
    warmup: float,
    seconds: float,
) -> dict[str, Any]:
    """One request in flight per actor, `ray.wait` for whichever finishes first,
    resubmit at once. Warm-up: `warmup` s and one result from every actor; then count
    the steps of requests completing within the `seconds` window."""
    import ray

    now = time.perf_counter
    in_flight = {submit(a): i for i, a in enumerate(actors)}
    start = now()
    returned: set[int] = set()
    t0: float | None = None
    t_end = float("inf")
    steps = requests = 0
    try:
        while True:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            ref = ready[0]
            t = now()
            i = in_flight.pop(ref)
            if t > t_end:
                break
            in_flight[submit(actors[i])] = i
            n = count(ray.get(ref))
            if t0 is None:
                returned.add(i)
                if len(returned) == len(actors) and t - start >= warmup:
                    t0 = t
                    t_end = t0 + seconds
            else:
                steps += n
                requests += 1
        warmup_s = t0 - start  # type: ignore[operator]
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=False)
    return {
        "steps": steps, "window_s": seconds, "steps_per_s": steps / seconds,
        "requests": requests, "warmup_s": round(warmup_s, 2),
    }


def stop_actors(actors: list[Any]) -> None:
    import ray

    for a in actors:
        ray.kill(a)
    time.sleep(1.0)  # let the worker processes exit before the next sampler starts


# --------------------------------------------------------------------------- samplers


def run_single(args: argparse.Namespace) -> dict[str, Any]:
    env = make_env(args.env)
    env.action_space.seed(0)
    env.reset(seed=0)

    def step() -> int:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
        return 1

    try:
        result = timed_loop(step, args.warmup, args.seconds)
    finally:
        env.close()
    return {**result, "cpus": 1, "envs": 1}


def run_async_vector(args: argparse.Namespace) -> dict[str, Any]:
    import gymnasium as gym

    n = args.envs
    # Spawned (not forked) env processes: the parent may hold torch/Ray state.
    envs = gym.vector.AsyncVectorEnv(
        [functools.partial(make_env, args.env) for _ in range(n)], context="spawn"
    )
    envs.action_space.seed(0)
    envs.reset(seed=0)

    def step() -> int:
        envs.step(envs.action_space.sample())  # autoresets ended envs itself
        return n

    try:
        result = timed_loop(step, args.warmup, args.seconds)
    finally:
        envs.close()
    return {**result, "cpus": args.cpus, "envs": n}


def rllib_config(args: argparse.Namespace) -> Any:
    from ray.rllib.algorithms.dqn import DQNConfig

    m = args.envs_per_runner
    return (
        DQNConfig()
        .api_stack(
            enable_rl_module_and_learner=True,
            enable_env_runner_and_connector_v2=True,
        )
        .environment(env=make_rllib_env, env_config={"env_id": args.env})
        .env_runners(
            num_env_runners=args.cpus,
            num_envs_per_env_runner=m,
            num_cpus_per_env_runner=1,
            rollout_fragment_length=args.rollout,
            explore=True,
        )
        # Constant epsilon, as for raydl (DQN's default is a 1.0 -> 0.05 schedule).
        .training(epsilon=args.epsilon)
        .debugging(seed=0, log_level="ERROR")
    )


def run_rllib(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    config = rllib_config(args)
    n, m = args.cpus, args.envs_per_runner
    remote_cls = ray.remote(num_cpus=1)(SingleAgentEnvRunner)
    actors = [
        remote_cls.remote(config=config, worker_index=i + 1, num_workers=n) for i in range(n)
    ]
    num_timesteps = m * args.rollout

    def submit(actor: Any) -> Any:
        ref = actor.sample.remote(num_timesteps=num_timesteps)
        actor.get_metrics.remote()  # runs after the sample, as in RLlib's own loop
        return ref

    def count(episodes: list[Any]) -> int:
        return sum(len(ep) for ep in episodes)  # env steps in each episode chunk

    try:
        info = ray.get(actors[0].__ray_call__.remote(_rllib_runner_info))
        result = drive_actors(actors, submit, count, args.warmup, args.seconds)
    finally:
        stop_actors(actors)
    return {**result, "cpus": n, "envs": n * m, "runner": info}


def _rllib_runner_info(runner: Any) -> dict[str, Any]:
    import torch

    module = runner.module
    return {
        "module": type(module).__name__,
        "params": sum(p.numel() for p in module.parameters()),
        "torch_threads": torch.get_num_threads(),
        "obs_space": str(runner.env.single_observation_space),
    }


def _raydl_runner_info(runner: Any) -> dict[str, Any]:
    import torch

    return {
        "module": type(runner.policy).__name__,
        "params": sum(p.numel() for p in runner.policy.parameters()),
        "torch_threads": torch.get_num_threads(),
        "obs_space": str(runner.envs.single_observation_space),
    }


def raydl_runner_kwargs(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """EnvRunner keywords for this env (its env spec first), and a note on the mode used."""
    import dataclasses

    from raydl.envs.spec import probe_env
    from raydl.rl.networks import QNetwork

    spec = probe_env(args.env)
    hidden = [512] if spec.pixels else [64]
    kwargs: dict[str, Any] = {
        "env": spec,
        "policy_fn": functools.partial(QNetwork, spec.obs_shape, spec.num_actions, hidden),
        "torch_threads": 1,
    }
    note = f"QNetwork({spec.obs_shape}, {spec.num_actions}, {hidden})"
    if spec.obs_kind == "frames":
        if args.raydl_transitions:  # whole stacked observations, as other images
            kwargs["env"] = dataclasses.replace(spec, obs_kind="image")
            note += ", transition mode"
        else:
            note += ", frame mode (frames for the frame replay buffer)"
    return kwargs, note


def run_raydl(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from raydl.rl.runners.env_runner import EnvRunner

    n, m = args.cpus, args.envs_per_runner
    kwargs, note = raydl_runner_kwargs(args)
    remote_cls = ray.remote(num_cpus=1)(EnvRunner)
    actors = [
        remote_cls.remote(num_envs=m, seed=0, runner_index=i, **kwargs) for i in range(n)
    ]

    def submit(actor: Any) -> Any:
        return actor.sample.remote(args.rollout, args.epsilon)

    def count(result: Any) -> int:
        return int(result.env_steps)

    try:
        info = ray.get(actors[0].__ray_call__.remote(_raydl_runner_info))
        result = drive_actors(actors, submit, count, args.warmup, args.seconds)
    finally:
        stop_actors(actors)
    return {**result, "cpus": n, "envs": n * m, "runner": {**info, "mode": note}}


# --------------------------------------------------------------------------- report


def pin_cpus(cpus: int) -> list[int] | None:
    """Confine this process (and whatever it starts) to `cpus` cores, if it may use more."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if cpus < len(allowed):
        os.sched_setaffinity(0, allowed[:cpus])
        return allowed[:cpus]
    return None


def add_ratios(results: dict[str, dict[str, Any]]) -> None:
    ref = results.get("a", {}).get("steps_per_s")
    for r in results.values():
        r["ratio_to_a_x_cpus"] = r["steps_per_s"] / (ref * r["cpus"]) if ref else None


def target(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    d = results.get("d")
    out: dict[str, Any] = {"fraction": TARGET_FRACTION}
    if d is None:
        return out
    checks = {}
    if d.get("ratio_to_a_x_cpus") is not None:
        checks["raydl >= 0.85 x (a) x cores"] = d["ratio_to_a_x_cpus"] >= TARGET_FRACTION
    for k in ("b", "c"):
        if k in results:
            checks[f"raydl > ({k})"] = d["steps_per_s"] > results[k]["steps_per_s"]
    out["checks"] = checks
    out["met"] = bool(checks) and all(checks.values()) and len(checks) == 3
    return out


def print_report(results: dict[str, dict[str, Any]], tgt: dict[str, Any]) -> None:
    print()
    print(f"{'sampler':<34}{'agent steps/s':>14}{'CPUs':>6}{'envs':>6}"
          f"{'/ ((a) x CPUs)':>16}")
    for k in SAMPLERS:
        r = results.get(k)
        if r is None:
            continue
        ratio = "-" if r["ratio_to_a_x_cpus"] is None else f"{r['ratio_to_a_x_cpus']:.3f}"
        print(f"{NAMES[k]:<34}{r['steps_per_s']:>14,.0f}{r['cpus']:>6}{r['envs']:>6}"
              f"{ratio:>16}")
    checks = tgt.get("checks")
    if checks:
        parts = [f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks.items()]
        verdict = ("met" if tgt["met"] else "not met") if len(checks) == 3 else "partial"
        print(f"target ({verdict}): " + "; ".join(parts))
    for k in ("c", "d"):
        info = results.get(k, {}).get("runner")
        if info:
            print(f"{NAMES[k][:3]} runner: {info}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpus", type=int, default=os.cpu_count() or 1,
                   help="CPUs for (b), (c), (d): env processes / runner actors (default: all)")
    p.add_argument("--seconds", type=float, default=20.0, help="measurement window per sampler")
    p.add_argument("--warmup", type=float, default=5.0, help="untimed seconds before each window")
    p.add_argument("--envs", type=int, default=None,
                   help="AsyncVectorEnv size for (b) (default 2 x --cpus)")
    p.add_argument("--envs-per-runner", type=int, default=4,
                   help="envs stepped by each (c)/(d) actor, with batched inference")
    p.add_argument("--rollout", type=int, default=32,
                   help="vector steps per (c)/(d) sample request (x envs-per-runner agent steps)")
    p.add_argument("--epsilon", type=float, default=0.05,
                   help="exploration rate of (c)/(d): the network still runs on every step")
    p.add_argument("--env", default="ALE/Pong-v5")
    p.add_argument("--raydl-transitions", action="store_true",
                   help="(d) returns full transitions even where frame mode exists")
    p.add_argument("--only", default=",".join(SAMPLERS),
                   help="comma-separated subset of a,b,c,d")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.only if s not in SAMPLERS]
    if bad:
        p.error(f"--only: unknown sampler(s) {bad}; choose from a,b,c,d")
    if args.envs is None:
        args.envs = 2 * args.cpus
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pinned = pin_cpus(args.cpus)
    import gymnasium
    import torch

    if is_atari(args.env):
        from raydl.envs.atari import register_ale

        register_ale()
    prep = "DeepMind preprocessing via raydl make_atari" if is_atari(args.env) else "gymnasium"
    print(f"env {args.env} ({prep}), "
          f"--cpus {args.cpus}{f' (pinned to cores {pinned})' if pinned else ''}, "
          f"{args.seconds:g} s per sampler after {args.warmup:g} s warm-up; "
          f"(b) {args.envs} envs; (c)/(d) {args.cpus} actors x {args.envs_per_runner} envs, "
          f"{args.rollout} steps/request, epsilon {args.epsilon:g}", flush=True)

    runners = {"a": run_single, "b": run_async_vector, "c": run_rllib, "d": run_raydl}
    results: dict[str, dict[str, Any]] = {}
    ray_started = False
    try:
        for k in [s for s in SAMPLERS if s in args.only]:
            if k in ("c", "d") and not ray_started:
                from raydl.runtime import init_ray

                os.environ.pop("RAY_ADDRESS", None)  # always a private embedded Ray
                init_ray(num_cpus=args.cpus)
                for name in ("ray", "ray.rllib", "ray.tune", "ray.train"):
                    logging.getLogger(name).setLevel(logging.ERROR)
                ray_started = True
            results[k] = runners[k](args)
            print(f"{NAMES[k]}: {results[k]['steps_per_s']:,.0f} agent steps/s "
                  f"({results[k]['steps']:,} steps in {args.seconds:g} s)", flush=True)
    finally:
        if ray_started:
            import ray

            ray.shutdown()

    add_ratios(results)
    tgt = target(results)
    print_report(results, tgt)
    if args.json is not None:
        import ray

        payload = {
            "settings": {
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "pinned_cores": pinned,
                "agent_step": "1 preprocessed env step = 4 emulator frames (frame skip 4)",
                "versions": {"ray": ray.__version__, "torch": torch.__version__,
                             "gymnasium": gymnasium.__version__},
            },
            "results": results,
            "target": tgt,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
