"""ACWorker: a vector env plus a copy of the actor-critic, returning gradients.

A3C's worker (Mnih et al. 2016): act with the current policy for a rollout, compute the
loss on it, back-propagate locally and hand the learner only the gradient. The same
class serves A2C (the learner averages every worker's gradient before one step) and
REINFORCE (whole episodes, Monte Carlo returns). A plain class: the driver uses it
directly (`runners.num: 0`); raydl.rl.runners.actors wraps it with `ray.remote` for N
workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from raydl.envs.spec import EnvSpec
from raydl.rl.losses import actor_critic_loss, discounted_returns, gae, nstep_returns
from raydl.rl.networks import ActorCritic
from raydl.rl.normalize import NormStats, ObsNormalizer, RewardScaler, sync, take_deltas
from raydl.rl.runners.base import EpisodeTracker, RunnerBase, RunnerResult, training_signals

Returns = Literal["nstep", "gae", "episode"]


# The functions below take the parameter list (list(net.parameters()), made once):
# walking the module tree on every call costs more than the copies for small nets.
Params = list[torch.nn.Parameter]


def flat_weights(params: Params) -> np.ndarray:
    """Every parameter in one float32 vector (the actor-critic nets have no buffers)."""
    return parameters_to_vector(params).detach().cpu().numpy().astype(np.float32, copy=False)


def flat_gradients(params: Params) -> np.ndarray:
    """Every parameter's gradient in one float32 vector (zeros where there is none)."""
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
    return torch.cat(parts).detach().cpu().numpy().astype(np.float32, copy=False)


def assign_gradients(params: Params, flat: np.ndarray | torch.Tensor) -> None:
    """Set each parameter's .grad from a vector made by `flat_gradients`."""
    # A copy: results from Ray arrive as read-only views of the object store.
    vector = torch.tensor(flat, dtype=torch.float32)
    expected = sum(p.numel() for p in params)
    if len(vector) != expected:
        raise ValueError(f"gradient has {len(vector)} values, the network {expected}")
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = vector[offset : offset + n].view_as(p).to(p.device, p.dtype)
        offset += n


@dataclass(frozen=True)
class GradientRequest:
    """Roll out `num_steps` steps of every env (or whole episodes) and return the
    gradient of the actor-critic loss on them."""

    num_steps: int


@dataclass
class GradientResult(RunnerResult):
    """The loss gradient (flat float32), the samples it averages over, the loss parts."""

    grads: np.ndarray
    samples: int
    stats: dict[str, float]


@dataclass(frozen=True)
class RolloutRequest:
    """Roll out `num_steps` steps of every env and return the samples themselves (PPO),
    normalizing with the learner's merged statistics `norm` (None: no normalization)."""

    num_steps: int
    norm: NormStats | None = None


@dataclass
class RolloutResult(RunnerResult):
    """A rollout's samples, each (T, N, ...): `obs` (as the policy saw them), `action`
    (raw), `log_prob` and `value` under the policy that acted, `next_value` (V(s_{t+1});
    V(final obs) where an episode was truncated), `reward` (scaled when normalized),
    `terminated`, `ended`, `valid`, `mask` (when the env gives one); and the runner's
    normalizer statistics since its last result (`norm`)."""

    batch: dict[str, np.ndarray]
    norm: NormStats


def drop_nonfinite_envs(batch: dict[str, Any]) -> int:
    """Mask out of `batch` (in place) every env whose rollout holds a NaN or inf reward or
    observation, and zero those values: a masked sample still passes through the forward
    pass, and a NaN there would reach the gradient (NaN * 0 is NaN). Whole envs, because
    a bad reward reaches every earlier return of its env through the n-step / GAE sums.
    Returns the number of samples dropped."""
    bad = np.zeros(batch["reward"].shape[1], dtype=bool)
    for key in ("reward", "obs"):
        value = batch[key]
        if np.issubdtype(value.dtype, np.floating):
            finite = np.isfinite(value)
            bad |= ~finite.reshape(*value.shape[:2], -1).all(axis=(0, 2))
            if not finite.all():
                batch[key] = np.where(finite, value, 0).astype(value.dtype)
    last = batch["last_obs"]
    if np.issubdtype(last.dtype, np.floating):
        finite_last = np.isfinite(last).reshape(len(last), -1).all(axis=1)
        bad |= ~finite_last
        batch["last_obs"] = np.where(np.isfinite(last), last, 0).astype(last.dtype)
    if not bad.any():
        return 0
    dropped = int(batch["valid"][:, bad].sum())
    batch["valid"] = batch["valid"] & ~bad
    return dropped


class Acted(NamedTuple):
    """What `ACWorker.act` gives for a batch of B observations."""

    env: np.ndarray  # the env's actions (Box: clipped to the bounds, or squashed into them)
    raw: np.ndarray  # the sampled actions (Box: unclipped / pre-tanh): what log-probs are of
    log_prob: np.ndarray  # log pi(raw | s), float32 (B,)
    value: np.ndarray | None  # V(s), float32 (B,), when the worker keeps values


def stack_masks(masks: list[np.ndarray | None], size: int) -> np.ndarray | None:
    """The rollout's action masks (T, N, size), all-true where a step had none; None
    when the env gave no mask at all."""
    given = [m for m in masks if m is not None]
    if not given:
        return None
    return np.stack([np.ones((len(given[0]), size), bool) if m is None else m for m in masks])


class ACWorker(RunnerBase):
    """Steps `num_envs` envs with a sampled-action policy and returns loss gradients."""

    def __init__(
        self, env: EnvSpec, num_envs: int, policy_fn: Callable[[], ActorCritic], *, seed: int,
        returns: Returns, gamma: float, gae_lambda: float = 1.0, vf_coef: float = 0.5,
        ent_coef: float = 0.0, normalize_advantage: bool = False, runner_index: int = -1,
        generation: int = 0, torch_threads: int | None = 1, max_env_errors: int = 5,
        keep_values: bool = False, normalize_obs: bool = False, normalize_reward: bool = False,
        clip_obs: float = 10.0, clip_reward: float = 10.0,
    ) -> None:
        super().__init__(env, num_envs, policy_fn, seed=seed, runner_index=runner_index,
                         torch_threads=torch_threads, max_env_errors=max_env_errors)
        self.params = list(self.policy.parameters())
        self.returns, self.gamma, self.gae_lambda = returns, gamma, gae_lambda
        self.vf_coef, self.ent_coef = vf_coef, ent_coef
        self.normalize_advantage = normalize_advantage
        # V(s_t) at acting time in the rollout batch ("value"): what PPO's targets need;
        # A2C/A3C recompute values with gradients and skip this forward.
        self.keep_values = keep_values
        # PPO's running statistics (SB3's VecNormalize): this runner's share of them
        self.obs_norm = ObsNormalizer(env.obs_shape, clip_obs) if normalize_obs else None
        self.reward_scaler = RewardScaler(num_envs, gamma, clip_reward) if normalize_reward else None
        self.reset(generation)

    def _start_episodes(self, seeds: list[int] | None) -> None:
        """Reset every env (recreating it if it fails there); open episodes are forgotten."""
        self.obs = self._seen(self._reset_envs(seeds))
        self.mask = self._mask(self.reset_info)
        self.tracker = EpisodeTracker(self.num_envs)

    # -- policy -------------------------------------------------------------------------
    def set_weights(self, weights: dict[str, torch.Tensor] | np.ndarray, version: int) -> None:
        """Load the learner's weights: a state dict, or the flat parameter vector of
        `flat_weights` (what the learner sends with every request)."""
        if isinstance(weights, np.ndarray):
            vector_to_parameters(torch.from_numpy(weights.copy()), self.params)
        else:
            self.policy.load_state_dict(weights)
        self.weights_version = version

    def share_policy(self, policy: torch.nn.Module) -> None:
        """Use the learner's own network (in-process worker on the learner's device)."""
        self.policy = policy
        self.params = list(policy.parameters())

    def act(self, obs: np.ndarray, mask: np.ndarray | None = None) -> Acted:
        """Sample a ~ pi(.|s) for a batch of observations: env actions, raw actions,
        log pi(raw | s) and (`keep_values`) V(s); see `Acted`. Sampling draws from this worker's NumPy RNG
        (reproducible, its state a plain JSON-ready dict; categoricals by the Gumbel-max
        trick). `mask` (B, size) bool: masked actions are never sampled. Env actions are
        what the env takes (Box: clipped to the bounds, or squashed into them); raw
        actions (Box: the unclipped sample) are what log-probs and the loss are of."""
        with torch.inference_mode():
            if self.keep_values:
                params, values = self.policy.logits_and_value(torch.as_tensor(obs))
            else:
                params, values = self.policy(torch.as_tensor(obs)), None
            dist = self.policy.distribution(params, None if mask is None else torch.as_tensor(mask))
            raw = dist.sample(self.rng)
            log_probs = dist.log_prob(torch.as_tensor(raw)).float().numpy()
        return Acted(self.policy.actions.to_env(raw), raw, log_probs,
                     None if values is None else values.float().numpy())

    def _mask(self, info: dict[str, Any]) -> np.ndarray | None:
        """The (num_envs, size) action mask an env gave in `info` (None: no mask)."""
        return self.policy.actions.flat_mask(info.get("action_mask"), self.num_envs)

    # -- rollouts -----------------------------------------------------------------------
    def _rollout(self, num_steps: int) -> dict[str, Any]:
        """`num_steps` steps of every env (n-step / GAE), or, for whole-episode returns,
        steps from fresh resets until every env has finished one episode. When the env
        raises, the fragment collected so far is dropped with its episodes (the envs were
        recreated, so its last states have no successor) and the rollout begins again."""
        if self.obs is None:  # new episodes since reset(generation)
            self._start_episodes(self.pending_seeds)
        while True:
            rollout = self._try_rollout(num_steps)
            if rollout is not None:
                return rollout
            self._start_episodes(self._fresh_seeds())

    def _try_rollout(self, num_steps: int) -> dict[str, Any] | None:
        """One rollout (see `_rollout`), or None when the env raised during it."""
        episode_mode = self.returns == "episode"
        if episode_mode:
            self._start_episodes(None)
            finished = np.zeros(self.num_envs, bool)
        obs_l, act_l, rew_l, term_l, end_l, valid_l = [], [], [], [], [], []
        mask_l: list[np.ndarray | None] = []
        logp_l: list[np.ndarray] = []
        value_l: list[np.ndarray | None] = []
        truncated_final: list[tuple[int, int, np.ndarray]] = []
        episodes: list[tuple[float, int]] = []
        t = 0
        while (not episode_mode and t < num_steps) or (episode_mode and not finished.all()):
            assert self.obs is not None
            acted = self.act(self.obs, self.mask)
            stepped = self._step_envs(acted.env)
            if stepped is None:
                return None
            next_obs, rewards, terminated, truncated, info = stepped
            ended = terminated | truncated
            learn_rewards, learn_terminal = training_signals(
                rewards, terminated, info, self.clip_rewards, self.life_loss_terminal
            )
            if self.reward_scaler is not None:
                learn_rewards = self._scaled(learn_rewards, ended)
            obs_l.append(self.obs)
            act_l.append(acted.raw)
            logp_l.append(acted.log_prob)
            value_l.append(acted.value)
            mask_l.append(self.mask)
            rew_l.append(np.asarray(learn_rewards, np.float32))
            term_l.append(learn_terminal)
            end_l.append(learn_terminal | truncated)
            for e in np.flatnonzero(truncated & ~learn_terminal):
                final = info["final_obs"][e]
                if self.obs_norm is not None:
                    final = self.obs_norm.normalize(final[None])[0]
                truncated_final.append((t, int(e), final))
            ended_now = self.tracker.update(rewards, ended)
            if episode_mode:
                # Only each env's first episode counts; later steps are masked out.
                valid_l.append(~finished)
                episodes += [ep for e, ep in zip(np.flatnonzero(ended), ended_now)
                             if not finished[e]]
                finished |= ended
            else:
                episodes += ended_now
            self.obs, self.mask = self._seen(next_obs), self._mask(info)
            t += 1
        batch = {
            "obs": np.stack(obs_l), "action": np.stack(act_l), "reward": np.stack(rew_l),
            "terminated": np.stack(term_l).astype(np.float32),
            "ended": np.stack(end_l).astype(np.float32),
            "valid": np.stack(valid_l) if episode_mode else np.ones((t, self.num_envs), bool),
            "truncated_final": truncated_final, "last_obs": self.obs,
            "log_prob": np.stack(logp_l), "mask": stack_masks(mask_l, self.policy.actions.size),
            "value": np.stack(value_l) if self.keep_values else None,  # type: ignore[arg-type]
        }
        return {"batch": batch, "episodes": episodes, "env_steps": t * self.num_envs}

    def _targets(
        self, batch: dict[str, Any], values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(advantages, value targets), each (T, N), from the rollout and V(s_t)."""
        rewards = torch.as_tensor(batch["reward"])
        terminated = torch.as_tensor(batch["terminated"])
        ended = torch.as_tensor(batch["ended"])
        values = values.detach()
        if self.returns == "episode":
            returns = discounted_returns(rewards, ended, self.gamma)
            return returns - values, returns
        next_values = self._next_values(batch, values)
        if self.returns == "nstep":
            returns = nstep_returns(rewards, next_values, terminated, ended, self.gamma)
            return returns - values, returns
        return gae(rewards, values, next_values, terminated, ended, self.gamma, self.gae_lambda)

    def _next_values(self, batch: dict[str, Any], values: torch.Tensor) -> torch.Tensor:
        """V(s_{t+1}) (T, N): the next row's V(s_t), except after the rollout's last step
        and where an episode was truncated (then it is V(final obs))."""
        with torch.inference_mode():
            _, last = self.policy.logits_and_value(torch.as_tensor(batch["last_obs"]))
            finals = batch["truncated_final"]
            if finals:
                _, final_values = self.policy.logits_and_value(
                    torch.as_tensor(np.stack([f[2] for f in finals]))
                )
        next_values = torch.cat([values[1:], last.unsqueeze(0)]).clone()
        for i, (t, e, _) in enumerate(finals):
            next_values[t, e] = final_values[i]
        return next_values

    def serve(self, request: GradientRequest | RolloutRequest) -> GradientResult | RolloutResult:
        if isinstance(request, RolloutRequest):
            return self.sample_rollout(request)
        return self.compute_gradients(request.num_steps)

    # -- PPO: samples, normalization ----------------------------------------------------
    def sample_rollout(self, request: RolloutRequest) -> RolloutResult:
        """Roll out with the learner's statistics and return the samples (see
        `RolloutResult`); the learner computes the advantages and learns from them."""
        start = time.perf_counter()
        if request.norm is not None:
            sync(self.obs_norm, self.reward_scaler, request.norm)
        rollout = self._rollout(request.num_steps)
        batch = rollout["batch"]
        dropped = drop_nonfinite_envs(batch)
        values = torch.as_tensor(batch["value"])
        samples = {k: batch[k] for k in ("obs", "action", "log_prob", "value", "reward",
                                         "terminated", "ended", "valid")}
        samples["next_value"] = self._next_values(batch, values).numpy()
        if batch["mask"] is not None:
            samples["mask"] = batch["mask"]
        return RolloutResult(batch=samples, norm=take_deltas(self.obs_norm, self.reward_scaler),
                             **self._result(rollout["episodes"], rollout["env_steps"], start, dropped))

    def _seen(self, obs: np.ndarray) -> np.ndarray:
        """Observations as the policy sees them: normalized when PPO normalizes, the
        statistics updated from the finite ones (a NaN would poison them for good)."""
        if self.obs_norm is None:
            return obs
        finite = np.isfinite(obs.reshape(len(obs), -1)).all(axis=1)
        if finite.any():
            self.obs_norm.stats.update(obs[finite])
        return self.obs_norm.normalize(obs)

    def _scaled(self, rewards: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """Rewards scaled by the std of the discounted return; a NaN/inf reward stays one
        (the rollout drops its env) but is kept out of the statistics."""
        assert self.reward_scaler is not None
        finite = np.isfinite(rewards)
        scaled = self.reward_scaler(np.where(finite, rewards, 0.0), ended)
        return np.where(finite, scaled, rewards).astype(np.float32)

    def compute_gradients(self, num_steps: int) -> GradientResult:
        """Roll out, compute the actor-critic loss and return its gradient (flat float32)
        with the rollout's bookkeeping; the learner applies it. (Weights ride along with
        the request, `run(request, weights, version)`: one actor call per gradient.)"""
        start = time.perf_counter()
        rollout = self._rollout(num_steps)
        batch = rollout["batch"]
        dropped = drop_nonfinite_envs(batch)
        steps, envs = batch["action"].shape[:2]
        obs = torch.as_tensor(batch["obs"])
        mask = None if batch["mask"] is None else torch.as_tensor(batch["mask"]).flatten(0, 1)
        self.policy.train()
        params, values = self.policy.logits_and_value(obs.reshape(steps * envs, *obs.shape[2:]))
        values = values.reshape(steps, envs)
        advantages, returns = self._targets(batch, values)
        valid = torch.as_tensor(batch["valid"]).reshape(-1)
        adv = advantages.reshape(-1)[valid]
        if self.normalize_advantage and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        if not bool(valid.any()):  # every env of this rollout paid a NaN/inf: nothing to learn
            self.policy.zero_grad(set_to_none=False)
            return GradientResult(grads=flat_gradients(self.params), samples=0, stats={},
                                  **self._result(rollout["episodes"], rollout["env_steps"], start, dropped))
        dist = self.policy.distribution(params[valid], None if mask is None else mask[valid])
        loss, parts = actor_critic_loss(
            dist, values.reshape(-1)[valid],
            torch.as_tensor(batch["action"]).flatten(0, 1)[valid],
            adv, returns.reshape(-1)[valid], self.vf_coef, self.ent_coef,
        )
        self.policy.zero_grad(set_to_none=True)
        loss.backward()
        return GradientResult(
            grads=flat_gradients(self.params), samples=int(valid.sum()), stats=parts,
            **self._result(rollout["episodes"], rollout["env_steps"], start, dropped),
        )

