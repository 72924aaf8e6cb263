"""N runner actors with one request in flight each, collected by `ray.wait`.

The runner class is any plain class with `set_weights`, `reset`, `get_state`,
`set_state`, `info` (EnvRunner for DQN, ACWorker for the actor-critic family); it is
wrapped with `ray.remote` here, at the call site.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray
import torch

from raydl.config import RunnersConfig

StateDictFn = Callable[[], dict[str, torch.Tensor]]


class RunnerPool:
    """Owns the runner actors; hands back whichever result finishes first."""

    def __init__(
        self,
        cfg: RunnersConfig,
        runner_kwargs: Callable[[int], dict[str, Any]],
        runner_cls: type,
    ) -> None:
        self.cfg = cfg
        remote_cls = ray.remote(
            num_cpus=cfg.cpus_per_runner, resources=cfg.resources or None
        )(runner_cls)
        self.actors = [remote_cls.remote(**runner_kwargs(i)) for i in range(cfg.num)]
        self.in_flight: dict[ray.ObjectRef, int] = {}
        self.requests = [0] * cfg.num
        self._weights_ref: ray.ObjectRef | None = None
        self._weights_version = -1

    def weights_ref(self, weights: Callable[[], Any], version: int) -> Any:
        """One object-store copy per learner version, shared by every runner that needs
        it. `weights()` gives a state dict (copied to CPU) or a flat NumPy vector (which
        Ray hands to the actors without a copy: much cheaper for small, frequent syncs)."""
        if self._weights_version != version or self._weights_ref is None:
            value = weights()
            if isinstance(value, dict):
                value = {k: v.detach().to("cpu", copy=True) for k, v in value.items()}
            self._weights_ref = ray.put(value)
            self._weights_version = version
        return self._weights_ref

    def broadcast_weights(self, state_dict: Any, version: int) -> None:
        ref = self.weights_ref(lambda: state_dict, version)
        ray.get([a.set_weights.remote(ref, version) for a in self.actors])

    def start(self, method: str, args: Callable[[int], tuple[Any, ...]]) -> None:
        """Put one `method(*args(index))` request in flight on every idle runner."""
        busy = set(self.in_flight.values())
        for index, actor in enumerate(self.actors):
            if index not in busy:
                self.in_flight[getattr(actor, method).remote(*args(index))] = index

    def next_result(self) -> dict[str, Any]:
        """Block until any runner's request is done; return its result."""
        if not self.in_flight:
            raise RuntimeError("no request in flight; call start() first")
        ready, _ = ray.wait(list(self.in_flight), num_returns=1)
        self.in_flight.pop(ready[0])
        return ray.get(ready[0])

    def all_results(self) -> list[dict[str, Any]]:
        """Block until every in-flight request is done; results in runner order."""
        refs = sorted(self.in_flight, key=self.in_flight.__getitem__)
        self.in_flight = {}
        return ray.get(refs)

    def submit(
        self,
        index: int,
        method: str,
        *args: Any,
        weights: StateDictFn | None = None,
        version: int = -1,
    ) -> None:
        """Send runner `index` its next request, with fresh `weights` first when due
        (every `sync_weights_every` requests)."""
        actor = self.actors[index]
        self.requests[index] += 1
        if weights is not None and self.requests[index] % self.cfg.sync_weights_every == 0:
            # Actor calls run in submission order, so the request uses these weights.
            actor.set_weights.remote(self.weights_ref(weights, version), version)
        self.in_flight[getattr(actor, method).remote(*args)] = index

    def reset(self, generation: int, states: list[dict[str, Any]]) -> None:
        """Drop in-flight requests; restart every runner's episodes and restore its RNG."""
        self.in_flight = {}
        refs = [a.reset.remote(generation) for a in self.actors]
        if len(states) == len(self.actors):  # else a different runner count: fresh RNGs
            refs += [a.set_state.remote(s) for a, s in zip(self.actors, states)]
        ray.get(refs)

    def get_states(self) -> list[dict[str, Any]]:
        return ray.get([a.get_state.remote() for a in self.actors])

    def infos(self) -> list[dict[str, Any]]:
        return ray.get([a.info.remote() for a in self.actors])

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        self.in_flight = {}
