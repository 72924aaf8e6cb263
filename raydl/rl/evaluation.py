"""Evaluation during training (the `eval:` section), for every RL kind.

`with_evaluation(algo, cfg, run_dir)` wraps an algorithm so that its `step()` evaluates as
RLlib's `evaluation_parallel_to_training` does: iteration i (i = 1, 1 + every, ...) sends
a copy of the weights it starts with to an eval runner actor, trains, then collects the
evaluation, so training waits only when the evaluation takes longer than the iteration.
With `runners.num: 0` the driver plays the episodes itself, before the iteration.

Evaluation plays on seeds of its own (the same episodes every time, so evaluations are
comparable) with its own RNG: it never touches the training counters, the replay buffer,
the 100-episode window or the global RNGs, so a run trains exactly as without it. The
eval actor sits behind the runners' interface (`ActorRunners`), so a killed one is
replaced like any runner. The best evaluation's weights are kept in
`checkpoints/best` (what `raydl eval RUN/checkpoints/best` plays), and videos in
`videos/`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raydl import checkpoint as ckpt
from raydl.config import RLExperiment, dump_yaml
from raydl.envs.spec import EnvSpec
from raydl.rl.evaluate import eval_epsilon, play_greedy
from raydl.rl.runners.base import runner_info
from raydl.files import write_atomic
from raydl.metrics import VIDEO_DIR, VIDEO_KEY
from raydl.video import mp4_bytes

EVAL_STATE = "eval.json"  # in each training checkpoint: the best evaluation so far
BEST_DIR = "best"  # under checkpoints/: not iter_*, so never resumed from nor rotated


@dataclass(frozen=True)
class EvalRequest:
    """Play `episodes` episodes from the eval seeds of `seed`; record the first one as
    MP4 when `video_fps` > 0."""

    episodes: int
    epsilon: float
    seed: int
    video_fps: int = 0
    video_max_frames: int = 0


@dataclass
class EvalOutcome:
    returns: list[float]
    lengths: list[int]
    weights_version: int
    seconds: float
    mp4: bytes | None = None


class EvalRunner:
    """Plays evaluation episodes with a copy of the policy: a plain class, used by the
    driver itself or as a Ray actor (it answers the calls ActorRunners makes)."""

    def __init__(
        self, env: EnvSpec, policy_fn: Callable[[], nn.Module], *, runner_index: int = 0,
        torch_threads: int | None = 1, **_: Any,
    ) -> None:
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.env, self.runner_index = env, runner_index
        self.policy = policy_fn().eval()
        self.weights_version = -1

    def run(self, request: EvalRequest, weights: Any = None, version: int = -1) -> EvalOutcome:
        if weights is not None:
            self.set_weights(weights, version)
        started = time.perf_counter()
        frames = request.video_max_frames if request.video_fps else 0
        returns, lengths, recorded = play_greedy(self.env, self.policy, request.episodes,
                                                 request.seed, request.epsilon, frames)
        mp4 = mp4_bytes(recorded, request.video_fps) if recorded else None
        return EvalOutcome(returns, lengths, self.weights_version,
                           time.perf_counter() - started, mp4)

    def set_weights(self, weights: dict[str, torch.Tensor], version: int) -> None:
        self.policy.load_state_dict(weights)
        self.weights_version = version

    # what ActorRunners asks of every runner; evaluation keeps no state between requests
    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass

    def reset(self, generation: int) -> None:
        pass

    def info(self) -> dict[str, Any]:
        return {**runner_info(self.runner_index), "role": "eval"}

    def close(self) -> None:
        pass


def with_evaluation(algo: Any, cfg: RLExperiment, run_dir: Path | None) -> Any:
    """`algo` itself, or wrapped to evaluate every `eval.every` iterations (when the eval
    actor cannot be had, `algo` is closed before the error goes on)."""
    if not cfg.eval.every:
        return algo
    try:
        return Evaluated(algo, cfg, run_dir)
    except BaseException:
        algo.close()
        raise


def _check_room(cfg: RLExperiment) -> None:
    """Refuse an eval actor that could never start beside the runners (Ray would leave it
    pending forever, and the first evaluation would wait for it)."""
    from raydl.runtime import check_fits, cluster_resources

    nodes, total = cluster_resources()
    runners = cfg.runners
    left = {**total, "CPU": total.get("CPU", 0.0) - runners.num * runners.cpus_per_runner}
    check_fits("eval runner", {"CPU": cfg.eval.cpus, **runners.resources}, 1,
               "lower eval.cpus (a fraction such as 0.5 is fine) or runners.num", nodes, left)


class Evaluated:
    """An RL algorithm whose `step()` also evaluates (see the module's doc); every other
    attribute is the algorithm's own."""

    def __init__(self, algo: Any, cfg: RLExperiment, run_dir: Path | None) -> None:
        self.algo, self.cfg, self.run_dir = algo, cfg, run_dir
        self.key, policy = algo.policy_network()
        # The eval copies are copies of the policy module itself (a wrapper such as PPO's
        # observation normalization included), built on the CPU.
        template = copy.deepcopy(policy).cpu()
        policy_fn = functools.partial(copy.deepcopy, template)
        self.snapshot: dict[str, torch.Tensor] = {}
        self.snapshot_iteration = -1
        self.best: float | None = None
        self.local: EvalRunner | None = None
        self.pool: Any = None
        if cfg.runners.num == 0:
            self.local = EvalRunner(algo.env, policy_fn, runner_index=-1, torch_threads=None)
        else:
            from raydl.rl.runners.actors import ActorRunners

            _check_room(cfg)
            runners = dataclasses.replace(cfg.runners, num=1, cpus_per_runner=cfg.eval.cpus,
                                          sync_weights_every=1)
            self._take_snapshot()
            self.pool = ActorRunners(runners, EvalRunner,
                                     dict(env=algo.env, policy_fn=policy_fn, seed=cfg.seed),
                                     lambda: self.snapshot, lambda: self.snapshot_iteration,
                                     what="eval runner")

    def __getattr__(self, name: str) -> Any:
        if name == "algo":  # not set yet: no recursion through the line below
            raise AttributeError(name)
        return getattr(self.algo, name)

    def _take_snapshot(self) -> None:
        _, policy = self.algo.policy_network()  # asked anew: a wrapper's statistics move on
        self.snapshot = {k: v.detach().to("cpu", copy=True) for k, v in policy.state_dict().items()}
        self.snapshot_iteration = self.algo.iteration

    def _request(self) -> EvalRequest:
        e = self.cfg.eval
        video = bool(e.video_every) and self.algo.iteration % e.video_every == 0
        seed = self.cfg.seed if e.seed is None else e.seed
        return EvalRequest(e.episodes, eval_epsilon(self.cfg.env, e.epsilon), seed,
                           e.video_fps if video else 0, e.video_max_frames)

    def step(self) -> dict[str, Any]:
        due = self.algo.iteration % self.cfg.eval.every == 0
        outcome: EvalOutcome | None = None
        if due:
            self._take_snapshot()
            env_steps = self.algo.book.env_steps
            if self.local is not None:
                outcome = self.local.run(self._request(), self.snapshot, self.snapshot_iteration)
            else:
                self.pool.submit(0, self._request())
        metrics = self.algo.step()
        if due:
            if outcome is None:
                outcome = self.pool.next()
            metrics.update(self._record(outcome, env_steps))
        if self.pool is not None:
            metrics["eval_runner_restarts"] = self.pool.total_restarts
        return metrics

    def _record(self, outcome: EvalOutcome, env_steps: int) -> dict[str, Any]:
        """The evaluation's metrics; its weights kept as the best when they are, its
        video written."""
        mean = float(np.mean(outcome.returns))
        metrics: dict[str, Any] = {
            "eval_return_mean": mean, "eval_return_std": float(np.std(outcome.returns)),
            "eval_len_mean": float(np.mean(outcome.lengths)),
            "eval_episodes": len(outcome.returns),
            "eval_iteration": self.snapshot_iteration,  # the weights were this iteration's
            "eval_env_steps": env_steps, "eval_time_s": outcome.seconds,
        }
        if self.best is None or mean > self.best:
            self.best = mean
            if self.run_dir is not None:
                write_best(self.run_dir / "checkpoints" / BEST_DIR, self.cfg, self.key,
                           self.snapshot, metrics)
        if outcome.mp4 is not None and self.run_dir is not None:
            name = f"{VIDEO_DIR}/iteration_{self.snapshot_iteration:06d}.mp4"
            write_atomic(outcome.mp4, self.run_dir / name)
            metrics[VIDEO_KEY] = name
        return metrics

    def save(self, directory: Path) -> None:
        # before the algorithm's files: its state.json, written last, completes the checkpoint
        ckpt.save_json({"best": self.best}, directory / EVAL_STATE)
        self.algo.save(directory)

    def restore(self, directory: Path) -> None:
        self.algo.restore(directory)
        path = directory / EVAL_STATE
        self.best = ckpt.load_json(path).get("best") if path.is_file() else None

    def runner_infos(self) -> list[dict[str, Any]]:
        infos = list(self.algo.runner_infos())
        return infos + (self.pool.infos() if self.pool is not None else [])

    def close(self) -> None:
        try:
            if self.pool is not None:
                self.pool.close()
        finally:
            self.algo.close()


def write_best(directory: Path, cfg: Any, key: str, weights: dict[str, torch.Tensor],
               metrics: dict[str, Any]) -> None:
    """`directory` as a policy checkpoint (model.pt under `key`, config.yaml, state.json
    with the evaluation), replacing the previous best by renames: a kill leaves the old
    one or the new one, and the `.tmp-` leftovers are cleared with the next checkpoint."""
    root = directory.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{directory.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    ckpt.save_torch({key: weights}, tmp / "model.pt")
    dump_yaml(cfg, tmp / "config.yaml")
    ckpt.save_json({"best_by": "eval_return_mean", **metrics}, tmp / ckpt.COMPLETE_MARKER)
    old = root / f".tmp-old-{directory.name}-{os.getpid()}"
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """The evaluation whose weights `checkpoints/best` holds, if there is one."""
    path = run_dir / "checkpoints" / BEST_DIR / ckpt.COMPLETE_MARKER
    return json.loads(path.read_text()) if path.is_file() else None
