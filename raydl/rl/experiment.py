"""The experiment files of the RL kinds and their check steps, without torch or Ray.

`dqn` (raydl.rl.dqn) and `a3c` / `a2c` / `reinforce` (raydl.rl.actor_critic): what each
`algo:` section holds, the checks between sections, and the check step that looks at the
world once before any work (the env's spaces, the learner's device). Loading, checking
and `raydl check` import only this module, gymnasium and the config machinery: torch is
imported only to ask about CUDA when an experiment wants it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from raydl.config import Activation, Loss, Nonfinite, Optimizer, RLExperiment, param, section
from raydl.envs.spec import EnvSpec, probe_env
from raydl.rl.actions import action_spec
from raydl.errors import ConfigError


def check_device(choice: str, amp: bool = False) -> None:
    """The check step's part for the learner device (one line each)."""
    if choice == "auto" and not amp:
        return  # whatever is there will do; torch is not needed to say so
    import torch

    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise ConfigError("algo.device: 'cuda' but no CUDA device is visible; allowed: auto, cpu")
    if amp and (choice == "cpu" or not cuda):
        raise ConfigError("algo.amp: mixed precision needs a CUDA learner and none is used "
                          "here; allowed: false")


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
class DQNExperiment(RLExperiment):
    """A DQN experiment file."""

    kind: Literal["dqn"] = param("dqn", "registry key")
    algo: DQNConfig = section(DQNConfig, "algorithm hyperparameters")

    def validate(self) -> None:
        super().validate()
        if self.algo.batch_size > self.algo.buffer_size:
            raise ConfigError(
                f"algo.batch_size: {self.algo.batch_size} is larger than algo.buffer_size "
                f"{self.algo.buffer_size}"
            )


def check_dqn(cfg: DQNExperiment) -> EnvSpec:
    """The check step of kind dqn: the env's spaces, the learner's device."""
    env = probe_env(cfg.env, cfg.atari)
    env.require_discrete_actions("DQN")
    if env.mask_in_obs:
        raise ConfigError(f"env: {cfg.env} gives action masks ({{observation, action_mask}} "
                          "observations); DQN does not take them: use kind a2c, a3c or reinforce")
    if cfg.algo.prioritized and env.obs_kind == "frames":
        raise ConfigError(
            "algo.prioritized: not available with Atari frame stacks yet (their replay "
            "stores each frame once); allowed: false"
        )
    check_device(cfg.algo.device, cfg.algo.amp)
    return env


@dataclass
class PolicyNetConfig:
    """The actor-critic network and its action distribution, for every kind built on it
    (a3c, a2c, reinforce, ppo; raydl.rl.actor_critic.build_actor_critic reads these)."""

    hidden: list[int] = param(default_factory=lambda: [64, 64], help="trunk hidden sizes", ge=1)
    activation: Activation = param("tanh", "trunk activation")
    shared_trunk: bool = param(
        True, "policy and value share the hidden layers (false: separate MLPs, as SB3)"
    )
    log_std_init: float = param(
        0.0, "initial log std of a Box action space's Gaussian policy (learned, "
        "state-independent)", ge=-20, le=5
    )
    squash: bool = param(
        False, "Box actions: tanh-squash the Gaussian sample into the bounds (needs finite "
        "bounds) instead of clipping it there"
    )


@dataclass
class ActorCriticConfig(PolicyNetConfig):
    """Hyperparameters of A3C / A2C / REINFORCE (defaults: SB3's A2C)."""

    asynchronous: bool = param(
        True, "apply each worker's gradient as it arrives (A3C); default by kind "
        "(a3c: true, a2c and reinforce: false)"
    )
    returns: Literal["nstep", "gae", "episode"] = param(
        "nstep", "advantage estimate: n-step (rollout_length), GAE(lambda) or whole-episode "
        "Monte Carlo; default by kind (a3c/a2c: nstep, reinforce: episode)"
    )
    gamma: float = param(0.99, "discount factor", ge=0, le=1)
    gae_lambda: float = param(0.95, "GAE lambda (returns: gae)", ge=0, le=1)
    lr: float = param(7e-4, "learning rate", gt=0)
    optimizer: Optimizer = param("rmsprop", "optimizer")
    adam_eps: float = param(1e-5, "epsilon of RMSprop / Adam", gt=0)
    momentum: float = param(0.0, "momentum (sgd, rmsprop)", ge=0, lt=1)
    vf_coef: float = param(0.5, "weight of the value loss", ge=0)
    ent_coef: float = param(0.0, "weight of the entropy bonus", ge=0)
    normalize_advantage: bool = param(False, "standardize advantages per rollout")
    grad_clip: float = param(0.5, "max global gradient norm (0: no clipping)", ge=0)
    steps_per_iteration: int = param(2_000, "env steps per training iteration", ge=1)
    learner_threads: int = param(1, "torch threads of the learner (0: torch's default)", ge=0)
    device: Literal["auto", "cpu", "cuda"] = param(
        "auto", "learner device (auto: cuda when present); workers compute on CPU"
    )
    nonfinite: Nonfinite = param(
        "stop", "a NaN/inf gradient: stop the run with an error, or skip that update "
        "(counted in nonfinite_skipped)"
    )


@dataclass
class ActorCriticExperiment(RLExperiment):
    """An A3C / A2C / REINFORCE experiment file (`runners.rollout_length` = n steps)."""

    kind: Literal["a3c", "a2c", "reinforce"] = param("a3c", "registry key")
    algo: ActorCriticConfig = section(ActorCriticConfig, "algorithm hyperparameters")

    def validate(self) -> None:
        super().validate()
        algo = self.algo
        if self.kind == "a2c" and algo.asynchronous:
            raise ConfigError(
                "algo.asynchronous: true is A3C; use kind: a3c, or allowed for a2c: false"
            )
        if self.runners.sync_weights_every != 1:
            raise ConfigError(
                f"runners.sync_weights_every: {self.runners.sync_weights_every}: actor-critic "
                "workers get the learner's weights with every request; allowed: 1"
            )
        if self.kind == "reinforce" and algo.returns != "episode":
            raise ConfigError(
                f"algo.returns: {algo.returns!r}: REINFORCE learns from whole-episode "
                "returns; allowed: 'episode' (or use kind a2c/a3c)"
            )


def check_actor_critic(cfg: ActorCriticExperiment) -> EnvSpec:
    """The check step of kinds a3c, a2c, reinforce: the env's spaces, the device."""
    check_device(cfg.algo.device)
    env = probe_env(cfg.env, cfg.atari)
    action_spec(env.action_space, cfg.algo.squash, env.env_id)  # a space it takes, or one line
    return env


@dataclass
class PPOConfig(PolicyNetConfig):
    """Hyperparameters of PPO (Schulman et al. 2017; defaults: SB3's PPO)."""

    asynchronous: bool = param(
        False, "runners roll out the next batch while the learner trains on this one (one "
        "policy lag, reported as staleness); false: every batch is acted by the newest policy"
    )
    gamma: float = param(0.99, "discount factor", ge=0, le=1)
    gae_lambda: float = param(0.95, "GAE lambda", ge=0, le=1)
    lr: float = param(3e-4, "learning rate", gt=0)
    lr_schedule: Literal["constant", "linear"] = param(
        "constant", "linear: anneal the learning rate to 0 over stop.env_steps")
    optimizer: Optimizer = param("adam", "optimizer")
    adam_eps: float = param(1e-5, "epsilon of Adam / RMSprop", gt=0)
    momentum: float = param(0.0, "momentum (sgd, rmsprop)", ge=0, lt=1)
    shared_trunk: bool = param(
        False, "policy and value share the hidden layers (false: separate MLPs, as SB3)")
    epochs: int = param(10, "passes over each batch", ge=1)
    minibatches: int = param(4, "minibatches per pass (batch: runners x envs x rollout_length)", ge=1)
    clip_range: float = param(0.2, "clip range of the probability ratio", gt=0)
    clip_schedule: Literal["constant", "linear"] = param(
        "constant", "linear: anneal the clip range to 0 over stop.env_steps")
    clip_range_vf: float | None = param(
        None, "clip the value change around the rollout's values (none: no clipping)", gt=0)
    vf_coef: float = param(0.5, "weight of the value loss", ge=0)
    ent_coef: float = param(0.0, "weight of the entropy bonus", ge=0)
    normalize_advantage: bool = param(True, "standardize advantages per minibatch")
    grad_clip: float = param(0.5, "max global gradient norm (0: no clipping)", ge=0)
    target_kl: float | None = param(
        None, "stop an update's epochs once a minibatch's approximate KL passes 1.5x this "
        "(none: always every epoch)", gt=0)
    normalize_obs: bool = param(False, "normalize observations by running mean / std")
    normalize_reward: bool = param(False, "scale rewards by the std of the discounted return")
    clip_obs: float = param(10.0, "clip normalized observations to +-this", gt=0)
    clip_reward: float = param(10.0, "clip scaled rewards to +-this", gt=0)
    steps_per_iteration: int = param(2_048, "env steps per training iteration", ge=1)
    learner_threads: int = param(1, "torch threads of the learner (0: torch's default)", ge=0)
    device: Literal["auto", "cpu", "cuda"] = param(
        "auto", "learner device (auto: cuda when present); runners act on CPU")
    nonfinite: Nonfinite = param(
        "stop", "a NaN/inf loss or gradient: stop the run with an error, or skip that update "
        "(counted in nonfinite_skipped)")


@dataclass
class PPOExperiment(RLExperiment):
    """A PPO experiment file (`runners.rollout_length`: steps per env per batch)."""

    kind: Literal["ppo"] = param("ppo", "registry key")
    algo: PPOConfig = section(PPOConfig, "algorithm hyperparameters")

    def validate(self) -> None:
        super().validate()
        batch = max(self.runners.num, 1) * self.runners.envs_per_runner * self.runners.rollout_length
        if self.algo.minibatches > batch:
            raise ConfigError(
                f"algo.minibatches: {self.algo.minibatches} is more than the {batch} samples of a "
                "batch (runners x runners.envs_per_runner x runners.rollout_length)")
        if self.runners.sync_weights_every != 1:
            raise ConfigError(
                f"runners.sync_weights_every: {self.runners.sync_weights_every}: PPO runners act "
                "with the newest weights; allowed: 1")


def check_ppo(cfg: PPOExperiment) -> EnvSpec:
    """The check step of kind ppo: the device, the env's spaces."""
    check_device(cfg.algo.device)
    env = probe_env(cfg.env, cfg.atari)
    action_spec(env.action_space, cfg.algo.squash, env.env_id)  # a space it takes, or one line
    if cfg.algo.normalize_obs and env.pixels:
        raise ConfigError(f"algo.normalize_obs: {env.env_id} gives images, which the network "
                          "scales itself (/255); allowed: false")
    return env
