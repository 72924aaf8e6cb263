"""PPO as a user sees it: whole processes, start-up included; raydl vs SB3 vs RLlib.

What it measures
----------------
Every run is its own Python process, timed from launch to exit (interpreter, imports,
Ray's start where there is one, the envs and training all count), seeds in turn with the
frameworks' order rotating from seed to seed, one run at a time on the same machine.

- cartpole: time to solve CartPole-v1, i.e. until the mean return of the last 100
  training episodes (fewer while fewer have finished) is >= --target (450), or until
  --max-steps env steps (then unsolved): env steps and whole-process wall seconds.
- pendulum: Pendulum-v1, raydl vs SB3 with the same hyperparameters: the mean return of
  the last 100 training episodes at 100k and at 200k env steps (--max-steps), and wall.
- lunarlander, pong: LunarLander-v3 and Pong (ALE/Pong-v5 from pixels), raydl vs SB3 with
  the same hyperparameters: the mean return of the last 100 training episodes at ten
  evenly spaced points up to --max-steps (return per env step), and wall. Both sides run
  the whole budget (raydl's stop on a solved return is lifted); their linear schedules
  anneal over that budget, as SB3's do over total_timesteps.

Sides
-----
- raydl: `python -m raydl run ppo_cartpole --set seed=S` (ppo_pendulum), as shipped, in a
  fresh output directory; env steps and return come from the run directory's
  metrics.jsonl. Until the `ppo` kind is registered this side says so and is skipped.
- SB3 2.9.2 PPO with rl-baselines3-zoo's settings (hyperparams/ppo.yml):
  CartPole-v1: n_envs 8, n_steps 32, batch_size 256, gae_lambda 0.8, gamma 0.98,
  n_epochs 20, ent_coef 0.0, learning_rate lin_0.001, clip_range lin_0.2, MlpPolicy;
  Pendulum-v1: n_envs 4, n_steps 1024, gae_lambda 0.95, gamma 0.9, n_epochs 10,
  ent_coef 0.0, learning_rate 1e-3, clip_range 0.2, MlpPolicy, `normalize: true`
  (VecNormalize of observations and rewards, gamma 0.9, as the zoo passes it), without gSDE (the zoo's
  use_sde / sde_sample_freq 4 left out, as raydl has no gSDE);
  LunarLander-v3: n_envs 16, n_steps 1024, batch_size 64, gae_lambda 0.98, gamma 0.999,
  n_epochs 4, ent_coef 0.01, MlpPolicy (the zoo's budget: 1e6);
  Pong: the zoo's `atari` PPO entry (CleanRL's ppo_atari settings): n_envs 8, n_steps
  128, n_epochs 4, batch_size 256, learning_rate lin_2.5e-4, clip_range lin_0.1,
  vf_coef 0.5, ent_coef 0.01, CnnPolicy, AtariWrapper + 4-frame stack; the env is
  ALE/Pong-v5 with frameskip 1 and sticky actions 0.25 under the wrapper, as raydl's
  `ppo_pong` plays it; returns are whole games (Monitor under the wrapper).
  The rest SB3's defaults.
  The zoo's `lin_X` decays linearly to 0 over `total_timesteps`, here --max-steps (the
  zoo's own budget is 1e5 for both, the CartPole default here). make_vec_env
  (DummyVecEnv), device cpu, one torch thread.
- RLlib 2.60 PPO (new API stack) as its own CartPole example,
  rllib/tuned_examples/ppo/cartpole_ppo.py (documented: 450 within 300k timesteps):
  lr 3e-4, num_epochs 6, vf_loss_coeff 0.01, fcnet_hiddens [32], fcnet_activation
  "linear", vf_share_layers True; the rest PPOConfig's defaults (train_batch_size 4000,
  ...). Added, none of which changes learning: 0 remote env runners, a local CPU learner,
  Ray on 2 CPUs, a seed, and the per-episode return callback of dqn_cartpole.py
  (RLlib's own episode_return_mean is per iteration in 2.60). RLlib checks the stop rule
  after each train() iteration (4000 env steps).

Command (needs the bench extra: pip install stable-baselines3==2.9.2 'ray[rllib]==2.60.0'):

    python benchmarks/ppo.py --task cartpole --seeds 0 1 2 --json bench_results/ppo_cartpole.json
    python benchmarks/ppo.py --task pendulum --seeds 0 1 2 --max-steps 200000
    python benchmarks/ppo.py --task lunarlander --seeds 0 1 2 --sides raydl sb3 --max-steps 1000000
    python benchmarks/ppo.py --task pong --seeds 0 --sides raydl sb3 --max-steps 250000

A quick check that the script works: --max-steps 2000 --seeds 0.
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

TASKS = {"cartpole": "CartPole-v1", "pendulum": "Pendulum-v1",
         "lunarlander": "LunarLander-v3", "pong": "ALE/Pong-v5"}
SIDES = {"cartpole": ["raydl", "sb3", "rllib"], "pendulum": ["raydl", "sb3"],
         "lunarlander": ["raydl", "sb3"], "pong": ["raydl", "sb3"]}
DEFAULT_STEPS = {"cartpole": 100_000, "pendulum": 200_000, "lunarlander": 1_000_000,
                 "pong": 250_000}
CURVE_POINTS = 10  # lunarlander, pong: returns at this many evenly spaced env steps
ZOO_PPO: dict[str, dict[str, Any]] = {
    "cartpole": dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                     n_epochs=20, ent_coef=0.0, learning_rate=("lin", 0.001),
                     clip_range=("lin", 0.2)),
    "pendulum": dict(n_envs=4, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10,
                     ent_coef=0.0, learning_rate=1e-3, clip_range=0.2, normalize=True),
    "lunarlander": dict(n_envs=16, n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999,
                        n_epochs=4, ent_coef=0.01),
    "pong": dict(n_envs=8, n_steps=128, n_epochs=4, batch_size=256,
                 learning_rate=("lin", 2.5e-4), clip_range=("lin", 0.1), vf_coef=0.5,
                 ent_coef=0.01, atari=True),
}


def marks(task: str, max_steps: int) -> tuple[int, ...]:
    """The env steps at which a run's mean return is reported."""
    if task == "pendulum":
        return (100_000, 200_000)
    if task == "cartpole":
        return ()
    return tuple(max_steps * i // CURVE_POINTS for i in range(1, CURVE_POINTS + 1))


# --------------------------------------------------------------------------- children


def _zoo_value(value: Any) -> Any:
    """The zoo's `lin_X`: X * progress_remaining (1 at the start, 0 at total_timesteps)."""
    if isinstance(value, tuple) and value[0] == "lin":
        start = float(value[1])
        return lambda progress_remaining: progress_remaining * start
    return value


def sb3_env(task: str, seed: int, hp: dict[str, Any]) -> Any:
    """SB3's vectorized env for `task` as the zoo builds it (pops the env settings)."""
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

    n_envs = hp.pop("n_envs")
    if hp.get("atari"):  # ale-py's v5 env under SB3's AtariWrapper, as raydl plays it
        import ale_py
        import gymnasium

        gymnasium.register_envs(ale_py)
        env = make_atari_env(TASKS[task], n_envs=n_envs, seed=seed,
                             env_kwargs={"frameskip": 1, "repeat_action_probability": 0.25})
        return VecFrameStack(env, n_stack=4)
    env = make_vec_env(TASKS[task], n_envs=n_envs, seed=seed)
    if hp.pop("normalize", False):  # the zoo's `normalize: true`, with the algorithm's gamma
        env = VecNormalize(env, gamma=hp["gamma"])
    return env


def sb3_child(task: str, seed: int, max_steps: int, target: float) -> dict[str, Any]:
    """Train SB3 PPO with the zoo's settings; the record of the run."""
    import time

    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    class Watch(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.returns: deque[float] = deque(maxlen=EPISODE_WINDOW)
            self.at: dict[int, float | None] = {}

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
            mean = statistics.fmean(self.returns) if self.returns else None
            for mark in marks(task, max_steps):
                if mark not in self.at and self.num_timesteps >= mark:
                    self.at[mark] = mean
            return task != "cartpole" or not (mean is not None and mean >= target)

    hp = {k: _zoo_value(v) for k, v in ZOO_PPO[task].items()}
    if not hp.get("atari"):  # small MLPs: one thread is fastest; the CNN takes both cores
        torch.set_num_threads(1)
    start = time.perf_counter()
    env = sb3_env(task, seed, hp)
    policy = "CnnPolicy" if hp.pop("atari", False) else "MlpPolicy"
    model = PPO(policy, env, seed=seed, device="cpu", verbose=0, **hp)
    watch = Watch()
    model.learn(total_timesteps=max_steps, callback=watch)
    env.close()
    mean = statistics.fmean(watch.returns) if watch.returns else None
    return {"env_steps": int(model.num_timesteps), "return_mean": mean,
            "in_loop_s": time.perf_counter() - start,
            "return_at": {str(k): v for k, v in watch.at.items()}}


def rllib_child(seed: int, max_steps: int, target: float) -> dict[str, Any]:
    """Train RLlib's tuned CartPole PPO until solved or max_steps; the record of the run."""
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from dqn_cartpole import _record_episode_return, run_rllib

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    config = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=True,
                   enable_env_runner_and_connector_v2=True)
        .environment("CartPole-v1")
        # ---- copied from rllib/tuned_examples/ppo/cartpole_ppo.py ----
        .training(lr=0.0003, num_epochs=6, vf_loss_coeff=0.01)
        .rl_module(model_config=DefaultModelConfig(
            fcnet_hiddens=[32], fcnet_activation="linear", vf_share_layers=True))
        # ---- benchmark-only: resources, seeding, measurement ----
        .env_runners(num_env_runners=0)
        .learners(num_learners=0, num_gpus_per_learner=0)
        .reporting(metrics_num_episodes_for_smoothing=EPISODE_WINDOW)
        .callbacks(on_episode_end=_record_episode_return)
        .debugging(seed=seed, log_level="ERROR")
    )
    rec = run_rllib(seed, target, max_steps, config=config)
    ray.shutdown()
    return {"env_steps": rec.env_steps, "return_mean": rec.return_mean,
            "in_loop_s": rec.wall_s, "return_at": {}}


# --------------------------------------------------------------------------- parent


def ppo_registered() -> bool:
    from raydl.registry import kinds

    return "ppo" in kinds()


def run_side(side: str, task: str, seed: int, args: argparse.Namespace, tmp: Path
             ) -> dict[str, Any]:
    """One whole-process run; its record with the wall seconds from launch to exit."""
    if side == "raydl":
        return run_raydl(task, seed, args, tmp)
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--task", task,
            "--seeds", str(seed), "--max-steps", str(args.max_steps),
            "--target", repr(args.target)]
    wall, stdout = timed(argv, tmp)
    return {"wall_s": wall, **json.loads(stdout.strip().splitlines()[-1])}


def run_raydl(task: str, seed: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """`raydl run ppo_<task>` as a user runs it; the record read from its run directory."""
    out = tmp / f"raydl-{task}-{seed}"
    argv = [sys.executable, "-m", "raydl", "run", f"ppo_{task}", "--set", f"seed={seed}",
            "--set", f"stop.env_steps={args.max_steps}", "--out", str(out), "--no-progress"]
    if marks(task, args.max_steps) and task != "pendulum":  # a curve runs the whole budget
        argv += ["--set", "stop.episode_return_mean=null"]
    wall, _ = timed(argv, tmp)
    (run_dir,) = out.iterdir()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    at: dict[str, float | None] = {}
    for mark in marks(task, args.max_steps):
        row = next((r for r in rows if r.get("env_steps", 0) >= mark), None)
        if row is not None:
            at[str(mark)] = row.get("episode_return_mean")
    last = rows[-1]
    return {"wall_s": wall, "env_steps": int(last["env_steps"]),
            "return_mean": last.get("episode_return_mean"),
            "in_loop_s": last.get("time_total_s"), "return_at": at}


def print_report(task: str, rows: list[dict[str, Any]], target: float, max_steps: int
                 ) -> dict[str, Any]:
    """The per-run table, per-side medians and the ratios to raydl; the summary."""
    points = marks(task, max_steps)
    print(f"\n{'side':<7}{'seed':>5}  {'solved':<7}{'wall s':>9}{'in loop s':>11}"
          f"{'env steps':>11}{'return(100)':>13}" + "".join(f"{f'@{m // 1000}k':>9}" for m in points))
    for r in rows:
        at = r.get("return_at", {})
        print(f"{r['side']:<7}{r['seed']:>5}  {'yes' if r['solved'] else 'no':<7}"
              f"{r['wall_s']:>9.1f}{r['in_loop_s'] or 0:>11.1f}{r['env_steps']:>11,}"
              f"{fmt_return(r['return_mean']):>13}"
              + "".join(f"{fmt_return(at.get(str(m))):>9}" for m in points))
    summary: dict[str, Any] = {}
    for side in dict.fromkeys(r["side"] for r in rows):
        mine = [r for r in rows if r["side"] == side]
        summary[side] = {"runs": len(mine), "solved": sum(r["solved"] for r in mine),
                         "median_wall_s": statistics.median(r["wall_s"] for r in mine),
                         "median_env_steps": statistics.median(r["env_steps"] for r in mine)}
        s = summary[side]
        print(f"{side:<7} median wall {s['median_wall_s']:7.1f} s   median env steps "
              f"{s['median_env_steps']:>9,.0f}   solved {s['solved']}/{s['runs']}")
        curve = {}
        for m in points:
            seen = [r["return_at"][str(m)] for r in mine if r["return_at"].get(str(m)) is not None]
            curve[str(m)] = statistics.median(seen) if seen else None
        if curve:
            s["median_return_at"] = curve
            print(f"{side:<7} median return(100) at " + ", ".join(
                f"{int(m) // 1000}k {fmt_return(v)}" for m, v in curve.items()))
    # Ratios to raydl; without it (before PPO phase 2), the anchors to each other.
    base = next((s for s in ("raydl", "sb3") if s in summary), None)
    for side in [s for s in summary if base and s != base]:
        ratio = summary[base]["median_wall_s"] / summary[side]["median_wall_s"]
        summary[f"wall_ratio_{base}_over_{side}"] = ratio
        print(f"{base} / {side} median wall (whole processes): {ratio:.3f}")
    if task == "cartpole":
        print(f"solved = mean return of the last {EPISODE_WINDOW} training episodes >= "
              f"{target:g}; unsolved runs count with their capped time")
    return summary


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    sides = [s for s in SIDES[args.task] if s in args.sides]
    if "raydl" in sides and not ppo_registered():
        print("raydl: the `ppo` kind is not registered yet (PPO phase 2); raydl side skipped")
        sides.remove("raydl")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as tmp:
        for i, seed in enumerate(args.seeds):
            turn = i % len(sides) if sides else 0
            for side in sides[turn:] + sides[:turn]:  # rotate who goes first per seed
                rec = run_side(side, args.task, seed, args, Path(tmp))
                mean = rec["return_mean"]
                rec.update(side=side, seed=seed, solved=args.task == "cartpole"
                           and mean is not None and mean >= args.target)
                rows.append(rec)
                print(f"{side} seed {seed}: {rec['wall_s']:.1f} s whole process, "
                      f"{rec['env_steps']:,} env steps, return(100) {fmt_return(mean)}",
                      flush=True)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=sorted(TASKS), default="cartpole")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sides", nargs="+", choices=["raydl", "sb3", "rllib"],
                   default=["raydl", "sb3", "rllib"])
    p.add_argument("--max-steps", type=int, default=None,
                   help="env-step budget (default: cartpole 100000, the zoo's; pendulum 200000)")
    p.add_argument("--target", type=float, default=450.0)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    p.add_argument("--child", choices=["sb3", "rllib"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.max_steps is None:
        args.max_steps = DEFAULT_STEPS[args.task]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child == "sb3":
        print(json.dumps(sb3_child(args.task, args.seeds[0], args.max_steps, args.target)))
        return 0
    if args.child == "rllib":
        print(json.dumps(rllib_child(args.seeds[0], args.max_steps, args.target)))
        return 0
    rows = run_all(args)
    summary = print_report(args.task, rows, args.target, args.max_steps) if rows else {}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"settings": {"task": args.task, "seeds": args.seeds,
                                "max_steps": args.max_steps, "target": args.target,
                                "zoo": {k: repr(v) for k, v in ZOO_PPO[args.task].items()}},
                   "runs": rows, "summary": summary}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
