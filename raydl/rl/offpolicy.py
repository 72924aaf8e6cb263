"""What the replay-based learners (DQN, SAC, TD3) share: the replay buffer, the runners,
the counters and the replay ratio, in one object each learner holds.

One iteration of `ReplayLoop.iterate(learn)`:

    repeat until `steps_per_iteration` new env steps have arrived:
        take the next finished sample batch (from any runner, `ray.wait`)
        store its transitions in replay; owe `replay_ratio` updates per env step past
            `learning_starts`
        re-send that runner its next request (fresh weights ride with it)
        learn(): the learner pays what it owes, one `owed()` update at a time

Runners never wait for the learner except through their own single in-flight request,
so a slow runner never stalls the others, and the replay ratio holds for any number of
runners. The algorithm keeps only its networks, optimizers and update rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from raydl.envs.spec import EnvSpec
from raydl.rl.learner import Book
from raydl.rl.replay import make_replay
from raydl.rl.runners import make_runners
from raydl.rl.runners.env_runner import EnvRunner, SampleResult


class ReplayLoop:
    """Replay buffer + runners + counters of one replay-based learner.

    `algo` is the kind's `algo:` section (buffer_size, prioritized, per_alpha, n_step,
    gamma, batch_size, learning_starts, replay_ratio, steps_per_iteration, per_beta);
    `runner_kwargs` are the EnvRunner's own extras (how it explores)."""

    def __init__(
        self, cfg: Any, env: EnvSpec, policy_fn: Callable[[], nn.Module], *,
        learner_policy: nn.Module, on_cpu: bool, weights: Callable[[], Any],
        runner_kwargs: dict[str, Any] | None = None,
    ) -> None:
        algo = cfg.algo
        self.cfg, self.algo = cfg, algo
        self.buffer = make_replay(
            env, algo.buffer_size, cfg.seed + 1, prioritized=algo.prioritized,
            alpha=algo.per_alpha, n_step=algo.n_step, gamma=algo.gamma,
        )
        # Everything needed to continue exactly is in these, the buffer and the runners.
        self.book = Book()
        self.updates_owed = 0.0
        self.runners = make_runners(
            cfg.runners, EnvRunner,
            dict(env=env, num_envs=cfg.runners.envs_per_runner, policy_fn=policy_fn,
                 seed=cfg.seed, n_step=algo.n_step, gamma=algo.gamma, **(runner_kwargs or {})),
            learner_policy=learner_policy, on_cpu=on_cpu, weights=weights,
            version=lambda: self.book.updates,
        )

    def ingest(self, result: SampleResult) -> None:
        """Store a runner's transitions and count the updates they earn:
        updates = replay_ratio * (env steps - learning_starts)."""
        self.buffer.add(result.transitions, result.runner)
        before = self.book.env_steps
        self.book.ingest(result)
        counted = self.book.env_steps - max(before, self.algo.learning_starts)
        if counted > 0:
            self.updates_owed += counted * self.algo.replay_ratio

    def owed(self) -> Iterator[None]:
        """One turn per update owed (once the buffer holds a minibatch); each turn paid."""
        while self.updates_owed >= 1.0 and len(self.buffer) >= self.algo.batch_size:
            yield
            self.updates_owed -= 1.0

    def per_beta(self) -> float:
        """Prioritized replay's importance exponent, annealed to 1 over stop.env_steps."""
        horizon = max(self.cfg.stop.env_steps, 1)
        beta = self.algo.per_beta
        return min(1.0, beta + (1.0 - beta) * self.book.env_steps / horizon)

    def iterate(
        self, request: Callable[[int], Any], learn: Callable[[], None]
    ) -> tuple[dict[str, Any], list[int]]:
        """One training iteration (see the module's doc): its bookkeeping metrics and the
        weights staleness of each sample batch. `request(runner)`: that runner's next
        request (-1: the driver's own)."""
        clock, goal = self.book.start_iteration(self.algo.steps_per_iteration)
        staleness: list[int] = []
        self.runners.start(request)
        while self.book.env_steps < goal:
            # The driver's own runner never samples past the goal: exact step counts.
            result = self.runners.next(max_env_steps=goal - self.book.env_steps)
            staleness.append(self.book.updates - result.weights_version)
            self.ingest(result)
            # Re-send before learning, so a runner actor samples while the learner trains.
            self.runners.submit(max(result.runner, 0), request(result.runner))
            learn()
        metrics = self.book.finish_iteration(clock, self.runners.total_restarts)
        metrics["buffer_size"] = len(self.buffer)
        metrics["weights_staleness_mean"] = float(np.mean(staleness)) if staleness else None
        return metrics, staleness

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The JSON part of the loop's state (the buffer's arrays: `buffer.state_dict()`)."""
        return {**self.book.state_dict(), "updates_owed": self.updates_owed,
                "buffer_rng": self.buffer.rng.bit_generator.state,
                "runners": self.runners.states(), "runner_restarts": self.runners.restart_state()}

    def load_state_dict(self, state: dict[str, Any], arrays: dict[str, Any]) -> None:
        """Counters, buffer and its RNG (the runners: `restore_runners`, last)."""
        self.buffer.load_state_dict(arrays)
        self.book.load_state_dict(state)
        self.updates_owed = state["updates_owed"]
        self.buffer.rng.bit_generator.state = state["buffer_rng"]

    def restore_runners(self, state: dict[str, Any]) -> None:
        """Runners start fresh episodes with the seeds of the new generation."""
        self.runners.restore(self.book.generation, state["runners"], state.get("runner_restarts"))


def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- tau * source + (1 - tau) * target (tau 1: a hard copy); buffers copied."""
    with torch.no_grad():
        if tau >= 1.0:
            target.load_state_dict(source.state_dict())
            return
        lerp_params(list(target.parameters()), list(source.parameters()), tau)
        for t, s in zip(target.buffers(), source.buffers()):
            t.copy_(s)


def lerp_params(targets: list[torch.Tensor], sources: list[torch.Tensor], tau: float) -> None:
    """targets <- tau * sources + (1 - tau) * targets, one fused kernel over all tensors
    (learners that sync every update keep the lists instead of walking modules)."""
    with torch.no_grad():
        torch._foreach_lerp_(targets, sources, tau)


@contextmanager
def frozen(params: list[nn.Parameter]) -> Iterator[None]:
    """`params` get no gradient inside: an actor's loss backpropagates through the
    critic to the actions without computing the critic's weight gradients, which the
    critic's next step would zero anyway (the same update, less work)."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
