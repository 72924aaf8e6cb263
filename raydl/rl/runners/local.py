"""LocalRunners: the driver's own runner behind the runners interface (no Ray)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from raydl.rl.runners.base import RunnerBase, RunnerResult


class LocalRunners:
    """One in-process runner. A request is carried out when its result is asked for
    (`next` / `all`), so the learner's updates in between are already in the weights it
    acts with; with a learner on the CPU it acts with the learner's own network."""

    count = 1
    total_restarts = 0

    def __init__(
        self, runner: RunnerBase, shared_policy: nn.Module | None,
        weights: Callable[[], Any], version: Callable[[], int],
    ) -> None:
        self.runner = runner
        self.shared = shared_policy is not None
        if shared_policy is not None:
            runner.share_policy(shared_policy)  # same process, same device: no copies
        self.weights, self.version = weights, version
        self.pending: Any = None

    def start(self, request_for: Callable[[int], Any]) -> None:
        if self.pending is None:
            self.pending = request_for(0)

    def submit(self, index: int, request: Any) -> None:
        self.pending = request

    def next(self, max_env_steps: int | None = None) -> RunnerResult:
        """Carry out the pending request now. `max_env_steps` shortens it so that the
        driver never samples past a step budget (results in flight elsewhere cannot be)."""
        if self.pending is None:
            raise RuntimeError("no request pending; call start() first")
        request, self.pending = self.pending, None
        if max_env_steps is not None:
            steps = -(-max_env_steps // self.runner.num_envs)  # whole vector-env steps
            request = dataclasses.replace(request, num_steps=min(request.num_steps, steps))
        if self.shared:
            self.runner.weights_version = self.version()  # it acts with the live network
        elif self.runner.weights_version != self.version():  # a learner on the GPU
            self.runner.set_weights(self.weights(), self.version())
        return self.runner.serve(request)

    def all(self) -> list[RunnerResult]:
        return [self.next()]

    # -- state --------------------------------------------------------------------------
    def states(self) -> list[dict[str, Any]]:
        return [self.runner.get_state()]

    def restart_state(self) -> dict[str, Any] | None:
        return None  # nothing is ever replaced in the driver

    def restore(self, generation: int, states: list[dict[str, Any]],
                restarts: dict[str, Any] | None) -> None:
        """Fresh episodes with the env seeds of `generation`, the saved RNG."""
        self.pending = None
        self.runner.reset(generation)
        self.runner.set_state(states[0])

    def infos(self) -> list[dict[str, Any]]:
        return [self.runner.info()]

    def close(self) -> None:
        self.runner.close()
