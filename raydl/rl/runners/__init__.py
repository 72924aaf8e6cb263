"""Runners: one interface wherever the sampling happens.

`make_runners` gives the driver's own runner (`runners.num: 0`, `LocalRunners`) or N Ray
actors (`ActorRunners`); both answer the same calls, so an algorithm's loop has one path
(as RLlib's `synchronous_parallel_sample` falls back to its local worker):

    runners.start(request_for)       a request in flight on every idle runner
    result = runners.next()          the first one finished (typed: SampleResult, ...)
    results = runners.all()          every one in flight, in runner order
    runners.submit(index, request)   that runner's next request, with fresh weights
                                     when due (runners.sync_weights_every)

Weights come from the learner through two callables given at construction, the weights
themselves and their version (the learner's update count), so each runner receives them
when its next request needs them and a replaced actor starts with the latest ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from torch import nn

from raydl.config import RunnersConfig
from raydl.rl.runners.base import RunnerBase, RunnerResult
from raydl.rl.runners.local import LocalRunners

__all__ = ["LocalRunners", "RunnerBase", "RunnerResult", "Runners", "make_runners"]


class Runners(Protocol):
    """What an algorithm asks of its runners, wherever they run."""

    count: int  # runner slots (1 for the driver's own runner)
    total_restarts: int  # actors replaced, this run and its resumes

    def start(self, request_for: Callable[[int], Any]) -> None: ...
    def next(self, max_env_steps: int | None = None) -> Any: ...
    def all(self) -> list[Any]: ...
    def submit(self, index: int, request: Any) -> None: ...
    def states(self) -> list[dict[str, Any]]: ...
    def restart_state(self) -> dict[str, Any] | None: ...
    def restore(self, generation: int, states: list[dict[str, Any]],
                restarts: dict[str, Any] | None) -> None: ...
    def infos(self) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


def make_runners(
    cfg: RunnersConfig, runner_cls: type[RunnerBase], kwargs: dict[str, Any], *,
    learner_policy: nn.Module, on_cpu: bool, weights: Callable[[], Any],
    version: Callable[[], int], inline_weights: bool = False,
) -> Runners:
    """The driver's own runner (`cfg.num == 0`), acting with `learner_policy` itself when
    the learner is on the CPU, or `cfg.num` runner actors. `inline_weights` sends weights
    with each request instead of through the object store (A3C: each version goes to one
    runner only, so a round trip through the store buys nothing)."""
    kwargs = {**kwargs, "max_env_errors": cfg.max_env_errors}
    if cfg.num == 0:
        return LocalRunners(runner_cls(**kwargs, torch_threads=None),
                            learner_policy if on_cpu else None, weights, version)
    from raydl.rl.runners.actors import ActorRunners

    return ActorRunners(cfg, runner_cls, kwargs, weights, version, inline_weights)
