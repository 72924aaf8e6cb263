"""DQN and Double DQN (Mnih et al. 2015; van Hasselt et al. 2016) with Ray env runners.

One iteration of `DQN.step()`:

    repeat until `steps_per_iteration` new env steps have arrived:
        take the next finished sample batch (from any runner, `ray.wait`)
        store its transitions in replay; owe `replay_ratio` updates per env step
        hand that runner fresh weights (every `sync_weights_every` requests) and re-send it
        do the owed updates: minibatch -> TD target -> Huber loss -> gradient step
        every `target_update` env steps: target <- tau * online + (1 - tau) * target

Runners never wait for the learner except through their own single in-flight request,
so a slow runner never stalls the others, and the replay ratio holds for any number of
runners.
"""

from __future__ import annotations

import functools
import random
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from raydl import checkpoint as ckpt
from raydl.config import (
    AtariConfig,
    CheckpointConfig,
    ConfigError,
    LogConfig,
    RunnersConfig,
    StopConfig,
    dump_yaml,
    param,
    section,
)
from raydl.envs import check_env_id, make_env
from raydl.nn import (
    Activation,
    Loss,
    Nonfinite,
    Optimizer,
    finite_values,
    make_optimizer,
    nonfinite_error,
)
from raydl.rl.buffer import PrioritizedReplayBuffer, ReplayBuffer
from raydl.rl.frame_buffer import FrameReplayBuffer
from raydl.rl.losses import q_loss, td_target
from raydl.rl.networks import QNetwork
from raydl.rl.runner import EnvRunner, Runners, report_env_errors, surface_errors
from raydl.rl.schedules import LinearSchedule, apex_epsilons
from raydl.seeding import seed_everything

EPISODE_WINDOW = 100  # "mean return" = mean over the last 100 training episodes


@dataclass
class DQNConfig:
    """Hyperparameters of DQN / Double DQN."""

    lr: float = param(1e-3, "learning rate", gt=0)
    optimizer: Optimizer = param("adam", "optimizer")
    momentum: float = param(0.0, "momentum (sgd, rmsprop)", ge=0, lt=1)
    adam_eps: float = param(1e-8, "epsilon of Adam / RMSprop", gt=0)
    gamma: float = param(0.99, "discount factor", ge=0, le=1)
    hidden: list[int] = param(default_factory=lambda: [128, 128], help="MLP hidden sizes", ge=1)
    activation: Activation = param("relu", "hidden-layer activation")
    double_q: bool = param(True, "Double DQN target: online net picks, target net evaluates")
    dueling: bool = param(False, "dueling value/advantage head")
    n_step: int = param(1, "n-step returns", ge=1)
    loss: Loss = param("huber", "TD regression loss")
    grad_clip: float = param(10.0, "max global gradient norm (0: no clipping)", ge=0)
    batch_size: int = param(64, "minibatch size", ge=1)
    buffer_size: int = param(50_000, "replay capacity in transitions", ge=1)
    learning_starts: int = param(1_000, "env steps collected before the first update", ge=0)
    replay_ratio: float = param(0.25, "learner updates per env step", gt=0)
    target_update: int = param(500, "env steps between target-network updates", ge=1)
    tau: float = param(1.0, "target update: 1 = hard copy, < 1 = Polyak averaging", gt=0, le=1)
    prioritized: bool = param(False, "prioritized replay (proportional)")
    per_alpha: float = param(0.6, "prioritization exponent", ge=0)
    per_beta: float = param(0.4, "initial importance-weight exponent (annealed to 1)", ge=0, le=1)
    epsilon_start: float = param(1.0, "initial exploration rate", ge=0, le=1)
    epsilon_end: float = param(0.02, "final exploration rate", ge=0, le=1)
    epsilon_steps: int = param(10_000, "env steps to anneal epsilon over", ge=0)
    apex_epsilons: bool = param(
        False, "fixed per-runner epsilons base^(1 + alpha i/(N-1)) (Ape-X) instead of the schedule"
    )
    apex_base: float = param(0.4, "Ape-X epsilon base", gt=0, lt=1)
    apex_alpha: float = param(7.0, "Ape-X epsilon exponent spread", ge=0)
    steps_per_iteration: int = param(1_000, "env steps per training iteration", ge=1)
    learner_threads: int = param(1, "torch threads of the learner (0: torch's default)", ge=0)
    device: Literal["auto", "cpu", "cuda"] = param(
        "auto", "learner device (auto: cuda when present); runners always act on CPU"
    )
    amp: bool = param(False, "bfloat16 autocast in the learner (CUDA learners only)")
    nonfinite: Nonfinite = param(
        "stop", "a NaN/inf loss or gradient: stop the run with an error, or skip that "
        "update (counted in nonfinite_skipped)"
    )


@dataclass
class DQNExperiment:
    """A DQN experiment file."""

    kind: Literal["dqn"] = param("dqn", "registry key")
    env: str = param("CartPole-v1", "gymnasium environment id")
    seed: int = param(0, "base seed; runner r and env i derive distinct seeds from it", ge=0)
    stop: StopConfig = section(StopConfig, "when to stop")
    algo: DQNConfig = section(DQNConfig, "algorithm hyperparameters")
    runners: RunnersConfig = section(RunnersConfig, "environment runners")
    checkpoint: CheckpointConfig = section(CheckpointConfig, "checkpointing")
    log: LogConfig = section(LogConfig, "outputs")
    atari: AtariConfig = section(AtariConfig, "Atari preprocessing (ALE/* envs)")

    def validate(self) -> None:
        check_env_id(self.env)
        if self.algo.batch_size > self.algo.buffer_size:
            raise ConfigError(
                f"algo.batch_size: {self.algo.batch_size} is larger than algo.buffer_size "
                f"{self.algo.buffer_size}"
            )
        probe = make_env(self.env, atari=self.atari)
        space, obs_shape = probe.action_space, probe.observation_space.shape
        probe.close()
        if not hasattr(space, "n"):
            raise ConfigError(
                f"env: {self.env} has a {type(space).__name__} action space; DQN needs "
                "a Discrete one"
            )
        if self.algo.prioritized and obs_shape is not None and len(obs_shape) == 3:
            raise ConfigError(
                "algo.prioritized: not available with pixel observations yet (their replay "
                "stores each frame once); allowed: false"
            )
        if self.algo.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("algo.device: 'cuda' but no CUDA device is visible; allowed: auto, cpu")
        if self.algo.amp and _device(self.algo.device).type != "cuda":
            raise ConfigError(
                "algo.amp: mixed precision needs a CUDA learner and none is used here; "
                "allowed: false"
            )


def _legacy_np_state() -> list[Any]:
    """NumPy's global RNG state as JSON-ready values."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    return [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]


def build_q_network(
    obs_shape: tuple[int, ...], num_actions: int, algo: DQNConfig
) -> QNetwork:
    """MLP for vector observations, Nature CNN (+ `hidden` layers) for frame stacks."""
    return QNetwork(obs_shape, num_actions, algo.hidden, algo.activation, algo.dueling)


def _device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


class DQN:
    """The DQN learner and its runners; `step()` runs one iteration and returns metrics."""

    def __init__(self, cfg: DQNExperiment, generation: int = 0) -> None:
        self.setup(cfg, generation)

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DQNExperiment, generation: int = 0) -> None:
        self.cfg = cfg
        algo = cfg.algo
        seed_everything(cfg.seed)
        if algo.learner_threads:
            torch.set_num_threads(algo.learner_threads)
        probe = make_env(cfg.env, atari=cfg.atari)
        obs_space, num_actions = probe.observation_space, int(probe.action_space.n)  # type: ignore[attr-defined]
        probe.close()
        obs_shape = tuple(obs_space.shape)  # type: ignore[arg-type]
        # Pixel observations: replay keeps each frame once and rebuilds the stacks.
        self.frames = len(obs_shape) == 3
        self.device = _device(algo.device)
        self.policy_fn = functools.partial(build_q_network, obs_shape, num_actions, algo)
        self.q = self.policy_fn().to(self.device)
        self.target = self.policy_fn().to(self.device)
        self.target.load_state_dict(self.q.state_dict())
        self.target.requires_grad_(False)
        self.optimizer = make_optimizer(
            algo.optimizer, self.q.parameters(), algo.lr, momentum=algo.momentum, eps=algo.adam_eps
        )
        buffer_seed = cfg.seed + 1
        if self.frames:
            self.buffer: ReplayBuffer | FrameReplayBuffer = FrameReplayBuffer(
                algo.buffer_size, obs_shape[1:], obs_shape[0], buffer_seed
            )
        elif algo.prioritized:
            self.buffer = PrioritizedReplayBuffer(
                algo.buffer_size, obs_space.shape, obs_space.dtype, buffer_seed, algo.per_alpha
            )
        else:
            self.buffer = ReplayBuffer(
                algo.buffer_size, obs_space.shape, obs_space.dtype, buffer_seed
            )
        self.epsilon = LinearSchedule(algo.epsilon_start, algo.epsilon_end, algo.epsilon_steps)
        self.runner_epsilons = apex_epsilons(
            max(cfg.runners.num, 1), algo.apex_base, algo.apex_alpha
        )
        # Counters: everything needed to continue exactly is in these and the objects above.
        self.env_steps = 0
        self.episodes = 0
        self.updates = 0
        self.iteration = 0
        self.updates_owed = 0.0
        self.last_target_update = 0
        self.env_errors = 0  # env failures the runners recovered from
        self.nonfinite_skipped = 0  # updates skipped for a NaN/inf loss (nonfinite: skip)
        self.returns: deque[float] = deque(maxlen=EPISODE_WINDOW)
        self.lengths: deque[int] = deque(maxlen=EPISODE_WINDOW)
        self.generation = generation  # +1 per resume: new env seeds
        self._start_runners()

    def _start_runners(self) -> None:
        cfg = self.cfg
        kwargs: dict[str, Any] = dict(
            env_id=cfg.env,
            num_envs=cfg.runners.envs_per_runner,
            policy_fn=self.policy_fn,
            seed=cfg.seed,
            n_step=1 if self.frames else cfg.algo.n_step,  # frame replay folds n at sampling
            gamma=cfg.algo.gamma,
            generation=self.generation,
            atari=cfg.atari,
            frames=self.frames,
        )
        self.runners = Runners(
            cfg.runners, EnvRunner, kwargs, self.q if self.device.type == "cpu" else None,
            self.q.state_dict(), self.updates,
        )
        self.local: EnvRunner | None = self.runners.local
        self.pool = self.runners.pool

    # ------------------------------------------------------------------ learning
    def _ingest(self, result: dict[str, Any]) -> None:
        if isinstance(self.buffer, FrameReplayBuffer):
            self.buffer.add_sample(result["runner"], result["transitions"])
        else:
            self.buffer.add(result["transitions"])
        before = self.env_steps
        self.env_steps += result["env_steps"]
        self.env_errors += report_env_errors(result["env_errors"])
        for ret, length in result["episodes"]:
            self.returns.append(ret)
            self.lengths.append(length)
            self.episodes += 1
        # Owe updates only for the steps past learning_starts: updates = ratio * (steps - starts).
        counted = self.env_steps - max(before, self.cfg.algo.learning_starts)
        if counted > 0:
            self.updates_owed += counted * self.cfg.algo.replay_ratio

    def _epsilon_for(self, runner: int) -> float:
        """Exploration rate of runner `runner` now: the schedule, or its Ape-X constant
        (during warm-up, before learning starts, every runner acts at random)."""
        if not self.cfg.algo.apex_epsilons:
            return self.epsilon(self.env_steps)
        if self.env_steps < self.cfg.algo.learning_starts:
            return 1.0
        return self.runner_epsilons[runner]

    def _per_beta(self) -> float:
        algo = self.cfg.algo
        horizon = max(self.cfg.stop.env_steps, 1)
        return min(1.0, algo.per_beta + (1.0 - algo.per_beta) * self.env_steps / horizon)

    def _update(self) -> tuple[float, float] | None:
        """One gradient step on a replay minibatch: (loss, mean Q), or None when the loss
        or gradient was not finite and `nonfinite: skip` dropped the step."""
        algo = self.cfg.algo
        if isinstance(self.buffer, FrameReplayBuffer):
            b = self.buffer.sample(algo.batch_size, algo.n_step, algo.gamma)
        else:
            b = self.buffer.sample(algo.batch_size, beta=self._per_beta())
        dev = self.device
        obs = torch.as_tensor(b["obs"]).to(dev, non_blocking=True)
        next_obs = torch.as_tensor(b["next_obs"]).to(dev, non_blocking=True)
        # bf16 autocast needs no loss scaling; the forward passes run in bf16 and the
        # TD targets and loss below are computed in float32.
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=algo.amp):
            with torch.no_grad():
                next_q_target = self.target(next_obs).float()
            if algo.double_q:
                # One forward over [obs; next_obs] is cheaper than two small ones.
                both = self.q(torch.cat([obs, next_obs])).float()
                q_values, next_q_online = both[: len(obs)], both[len(obs) :].detach()
            else:
                q_values, next_q_online = self.q(obs).float(), None
        targets = td_target(
            torch.as_tensor(b["reward"]).to(dev),
            torch.as_tensor(b["discount"]).to(dev),
            torch.as_tensor(b["terminated"]).to(dev),
            next_q_target,
            next_q_online,
            algo.double_q,
        )
        loss, td_errors = q_loss(
            q_values, torch.as_tensor(b["action"]).to(dev), targets,
            torch.as_tensor(b["weights"]).to(dev), algo.loss,
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        checked = [loss, q_values.detach().mean()]
        if algo.grad_clip > 0:
            # The norm is checked too: backward can overflow where the loss did not.
            checked.append(
                torch.nn.utils.clip_grad_norm_(self.q.parameters(), algo.grad_clip, foreach=True)
            )
        # The one device sync of an update, before the step: a NaN must not reach the
        # weights (nor the priorities of prioritized replay).
        values, finite = finite_values(*checked)
        if not finite:
            if algo.nonfinite == "stop":
                names = ["loss", "q_mean", "grad_norm"][: len(values)]
                raise nonfinite_error(
                    "dqn", f"iteration {self.iteration + 1}, learner update {self.updates + 1}",
                    dict(zip(names, values)), "algo.nonfinite",
                )
            self.nonfinite_skipped += 1
            return None
        self.optimizer.step()
        if isinstance(self.buffer, ReplayBuffer):
            self.buffer.update_priorities(b["indices"], td_errors.cpu().numpy())
        self.updates += 1
        return values[0], values[1]

    def _sync_target(self) -> None:
        tau = self.cfg.algo.tau
        if tau >= 1.0:
            self.target.load_state_dict(self.q.state_dict())
            return
        with torch.no_grad():
            for t, s in zip(self.target.parameters(), self.q.parameters()):
                t.lerp_(s, tau)

    def _learn(self, losses: list[float], qs: list[float]) -> None:
        while self.updates_owed >= 1.0 and len(self.buffer) >= self.cfg.algo.batch_size:
            done = self._update()
            if done is not None:
                losses.append(done[0])
                qs.append(done[1])
            self.updates_owed -= 1.0
        if self.env_steps - self.last_target_update >= self.cfg.algo.target_update:
            self._sync_target()
            self.last_target_update = self.env_steps

    def step(self) -> dict[str, Any]:
        """One training iteration; returns its metrics."""
        start = time.perf_counter()
        start_steps = self.env_steps
        # An absolute goal, so iterations do not drift when chunks overshoot it.
        per_iter = self.cfg.algo.steps_per_iteration
        goal = (self.env_steps // per_iter + 1) * per_iter
        losses: list[float] = []
        qs: list[float] = []
        staleness: list[int] = []
        if self.pool is not None:
            rollout = self.cfg.runners.rollout_length
            self.pool.start("sample", lambda index: (rollout, self._epsilon_for(index)))
        while self.env_steps < goal:
            eps = self._epsilon_for(0)
            if self.local is not None:
                if self.local.policy is not self.q:  # learner on GPU: refresh the CPU copy
                    self.local.set_weights(self.q.state_dict(), self.updates)
                # Never sample past the goal in-process, so step counts come out exact.
                left = -(-(goal - self.env_steps) // self.local.num_envs)
                result = self.local.sample(min(self.cfg.runners.rollout_length, left), eps)
            else:
                assert self.pool is not None
                result = surface_errors(self.pool.next_result)
                staleness.append(self.updates - result["weights_version"])
            self._ingest(result)
            if self.pool is not None:
                # Re-send before learning, so the runner samples while the learner trains.
                self.pool.submit(
                    result["runner"],
                    "sample",
                    self.cfg.runners.rollout_length,
                    self._epsilon_for(result["runner"]),
                    weights=lambda: self.q.state_dict(),
                    version=self.updates,
                )
            self._learn(losses, qs)
        self.iteration += 1
        elapsed = time.perf_counter() - start
        steps = self.env_steps - start_steps
        metrics: dict[str, Any] = {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "episode_return_mean": float(np.mean(self.returns)) if self.returns else None,
            "episode_len_mean": float(np.mean(self.lengths)) if self.lengths else None,
            "learner_updates": self.updates,
            "loss": float(np.mean(losses)) if losses else None,
            "q_mean": float(np.mean(qs)) if qs else None,
            "epsilon": float(
                np.mean([self._epsilon_for(i) for i in range(len(self.runner_epsilons))])
            ),
            "buffer_size": len(self.buffer),
            "env_errors": self.env_errors,  # cumulative, like episodes
            "nonfinite_skipped": self.nonfinite_skipped,  # cumulative
            # cumulative over the run (resumes included): runner actors that died and were replaced
            "runner_restarts": self.pool.total_restarts if self.pool is not None else 0,
            "env_steps_per_s": steps / elapsed if elapsed > 0 else None,
        }
        if staleness:
            metrics["weights_staleness_mean"] = float(np.mean(staleness))
        return metrics

    # ------------------------------------------------------------------ state
    def save(self, directory: Path) -> None:
        """Write the whole training state into `directory` (see raydl.checkpoint)."""
        ckpt.save_torch(
            {
                "q": self.q.state_dict(),
                "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(),
            },
            directory / "model.pt",
        )
        ckpt.save_arrays(self.buffer.state_dict(), directory / "buffer.npz")
        dump_yaml(self.cfg, directory / "config.yaml")
        runner_states = self.runners.states()
        py_state = random.getstate()
        ckpt.save_json(
            {
                "iteration": self.iteration,
                "env_steps": self.env_steps,
                "episodes": self.episodes,
                "updates": self.updates,
                "updates_owed": self.updates_owed,
                "last_target_update": self.last_target_update,
                "env_errors": self.env_errors,
                "nonfinite_skipped": self.nonfinite_skipped,
                "returns": list(self.returns),
                "lengths": list(self.lengths),
                "generation": self.generation,
                "numpy_rng": _legacy_np_state(),
                "buffer_rng": self.buffer.rng.bit_generator.state,
                "python_rng": [py_state[0], list(py_state[1]), py_state[2]],
                "runners": runner_states,
                "runner_restarts": self.pool.restart_state() if self.pool is not None else None,
            },
            directory / ckpt.COMPLETE_MARKER,
        )

    def restore(self, directory: Path) -> None:
        """Load a state written by `save`; the envs start fresh episodes (their internal
        state is not checkpointable in general), everything else continues exactly."""
        model = ckpt.load_torch(directory / "model.pt")
        buffer_state = ckpt.load_arrays(directory / "buffer.npz")
        state = ckpt.load_json(directory / ckpt.COMPLETE_MARKER)
        try:
            self.q.load_state_dict(model["q"])
            self.target.load_state_dict(model["target"])
            self.optimizer.load_state_dict(model["optimizer"])
            torch.set_rng_state(model["torch_rng"])
            self.buffer.load_state_dict(buffer_state)
        except (KeyError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ckpt.CheckpointError(
                f"{directory}: checkpoint does not match this experiment: {first}"
            ) from None
        self.iteration = state["iteration"]
        self.env_steps = state["env_steps"]
        self.episodes = state["episodes"]
        self.updates = state["updates"]
        self.updates_owed = state["updates_owed"]
        self.last_target_update = state["last_target_update"]
        self.env_errors = state.get("env_errors", 0)  # absent in older checkpoints
        self.nonfinite_skipped = state.get("nonfinite_skipped", 0)
        self.returns = deque(state["returns"], maxlen=EPISODE_WINDOW)
        self.lengths = deque(state["lengths"], maxlen=EPISODE_WINDOW)
        name, keys, pos, has_gauss, gauss = state["numpy_rng"]
        np.random.set_state((name, np.array(keys, np.uint32), pos, has_gauss, gauss))
        self.buffer.rng.bit_generator.state = state["buffer_rng"]
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal), gauss))
        # New episodes with new env seeds: a resumed run must not replay old episodes.
        self.generation = state["generation"] + 1
        if self.pool is not None:  # before the reset: replaced runners keep their own seeds
            self.pool.load_restart_state(state.get("runner_restarts"))
        self.runners.restore(self.generation, state["runners"], self.q.state_dict(), self.updates)

    def runner_infos(self) -> list[dict[str, Any]]:
        """Where each runner lives (pid, Ray node id, cluster address)."""
        return self.runners.infos()

    @staticmethod
    def load_policy(directory: Path, cfg: DQNExperiment) -> torch.nn.Module:
        """The greedy Q-network of a checkpoint (used by `raydl eval`)."""
        return load_policy(directory, cfg)

    def close(self) -> None:
        self.runners.close()


def load_policy(directory: Path, cfg: DQNExperiment) -> torch.nn.Module:
    """The greedy Q-network stored in checkpoint `directory`."""
    probe = make_env(cfg.env, atari=cfg.atari)
    obs_shape = tuple(probe.observation_space.shape)  # type: ignore[arg-type]
    num_actions = int(probe.action_space.n)  # type: ignore[attr-defined]
    probe.close()
    net = build_q_network(obs_shape, num_actions, cfg.algo)
    model = ckpt.load_torch(directory / "model.pt")
    try:
        net.load_state_dict(model["q"])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ckpt.CheckpointError(f"{directory / 'model.pt'}: does not match config: {first}")
    return net.eval()
