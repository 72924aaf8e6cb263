"""The experiment files of kinds `sac` and `td3` (raydl.rl.sac, raydl.rl.td3) and their
check step, without torch or Ray (as raydl.rl.experiment for the other RL kinds).

Both reuse DQN's replay machinery (raydl.rl.offpolicy.ReplayLoop): uniform or prioritized
replay, n-step returns, runner actors, `replay_ratio` updates per env step for any
number of runners, exact resume. Defaults are SB3's (SAC: 256x256, lr 3e-4; TD3:
400x300, lr 1e-3; both: batch 256, tau 0.005, learning_starts 100, one update per step).
DDPG is `kind: td3` with `twin_critics: false`, `target_policy_noise: 0` and
`policy_delay: 1` (SB3's DDPG is the same TD3 special case).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from gymnasium import spaces

from raydl.config import Activation, Nonfinite, RLExperiment, param, section
from raydl.envs.spec import EnvSpec, probe_env
from raydl.errors import ConfigError
from raydl.rl.experiment import check_device


@dataclass
class ContinuousConfig:
    """What SAC and TD3 share: networks, replay, the update schedule, the learner."""

    lr: float = param(3e-4, "learning rate of the actor, the critics (and SAC's alpha)", gt=0)
    adam_eps: float = param(1e-8, "epsilon of Adam", gt=0)
    gamma: float = param(0.99, "discount factor", ge=0, le=1)
    hidden: list[int] = param(default_factory=lambda: [256, 256],
                              help="hidden sizes of the actor and of each critic", ge=1)
    activation: Activation = param("relu", "hidden-layer activation")
    n_step: int = param(1, "n-step returns", ge=1)
    batch_size: int = param(256, "minibatch size", ge=1)
    buffer_size: int = param(1_000_000, "replay capacity in transitions", ge=1)
    learning_starts: int = param(100, "env steps of uniformly random actions before the "
                                      "first update", ge=0)
    replay_ratio: float = param(1.0, "learner updates per env step (SB3: gradient_steps / "
                                     "train_freq)", gt=0)
    tau: float = param(0.005, "Polyak rate of the target networks", gt=0, le=1)
    prioritized: bool = param(False, "prioritized replay (proportional; priority: mean |TD "
                                     "error| of the critics)")
    per_alpha: float = param(0.6, "prioritization exponent", ge=0)
    per_beta: float = param(0.4, "initial importance-weight exponent (annealed to 1)", ge=0, le=1)
    grad_clip: float = param(0.0, "max global gradient norm of each network (0: none)", ge=0)
    steps_per_iteration: int = param(1_000, "env steps per training iteration", ge=1)
    learner_threads: int = param(1, "torch threads of the learner (0: torch's default)", ge=0)
    device: Literal["auto", "cpu", "cuda"] = param(
        "auto", "learner device (auto: cuda when present); runners act on CPU")
    nonfinite: Nonfinite = param(
        "stop", "a NaN/inf loss or gradient: stop the run with an error, or skip that "
        "update (counted in nonfinite_skipped)")


@dataclass
class SACConfig(ContinuousConfig):
    """Hyperparameters of SAC (Haarnoja et al. 2018, automatic entropy tuning)."""

    alpha: float | None = param(None, "fixed entropy weight (none: tuned automatically "
                                      "toward target_entropy)", ge=0)
    alpha_init: float = param(1.0, "initial entropy weight when tuned", gt=0)
    target_entropy: float | None = param(None, "entropy target of the tuning (none: -|A|, "
                                               "the number of action dims)")


@dataclass
class TD3Config(ContinuousConfig):
    """Hyperparameters of TD3 (Fujimoto et al. 2018); DDPG with its three tricks off."""

    lr: float = param(1e-3, "learning rate of the actor and the critics", gt=0)
    hidden: list[int] = param(default_factory=lambda: [400, 300],
                              help="hidden sizes of the actor and of each critic", ge=1)
    twin_critics: bool = param(True, "two critics, the target takes their minimum (false: "
                                     "one, as DDPG)")
    policy_delay: int = param(2, "critic updates per actor and target update (1: DDPG)", ge=1)
    target_policy_noise: float = param(0.2, "std of the target policy smoothing noise (0: "
                                            "none, as DDPG)", ge=0)
    target_noise_clip: float = param(0.5, "the smoothing noise is clipped to +-this", gt=0)
    action_noise: Literal["normal", "ou", "none"] = param(
        "normal", "exploration noise added to the actor's action: Gaussian, "
        "Ornstein-Uhlenbeck, or none")
    noise_std: float = param(0.1, "std (sigma) of the exploration noise, in units of half "
                                  "the action range", ge=0)


class _Continuous(RLExperiment):
    def validate(self) -> None:
        super().validate()
        algo = self.algo  # type: ignore[attr-defined]
        if algo.batch_size > algo.buffer_size:
            raise ConfigError(f"algo.batch_size: {algo.batch_size} is larger than "
                              f"algo.buffer_size {algo.buffer_size}")


@dataclass
class SACExperiment(_Continuous):
    """A SAC experiment file."""

    kind: Literal["sac"] = param("sac", "registry key")
    algo: SACConfig = section(SACConfig, "algorithm hyperparameters")


@dataclass
class TD3Experiment(_Continuous):
    """A TD3 (or DDPG) experiment file."""

    kind: Literal["td3"] = param("td3", "registry key")
    algo: TD3Config = section(TD3Config, "algorithm hyperparameters")


def check_continuous(cfg: SACExperiment | TD3Experiment) -> EnvSpec:
    """The check step of kinds sac and td3: the device, and a Box action space with
    finite bounds (actions are scaled into them)."""
    check_device(cfg.algo.device)
    env = probe_env(cfg.env, cfg.atari)
    space, who = env.action_space, cfg.kind.upper()
    if not isinstance(space, spaces.Box):
        raise ConfigError(f"env: {env.env_id} has a {type(space).__name__} action space; {who} "
                          "needs a Box one (for discrete actions use kind dqn or ppo)")
    if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
        raise ConfigError(f"env: {env.env_id}'s Box action space has infinite bounds; {who} "
                          "scales its actions into the bounds, so they must be finite")
    return env
