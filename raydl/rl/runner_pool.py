"""N runner actors with one request in flight each, collected by `ray.wait`.

The runner class is any plain class with `set_weights`, `reset`, `get_state`,
`set_state`, `info` (EnvRunner for DQN, ACWorker for the actor-critic family); it is
wrapped with `ray.remote` here, at the call site.

A runner whose actor dies (its process killed, its node lost) is replaced: the pool kills
the dead handle, starts a new actor for the same index with fresh env seeds and RNG
(`seeding.restart_generation`), sends it the latest weights and re-sends the request the
dead one never finished. That request's result is dropped, never counted: the learner
only ever sees whole results. Past `runners.max_restarts` deaths of one runner the run
fails with a one-line TrainingError.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ray
import torch
from ray.exceptions import RayActorError

from raydl.config import RunnersConfig, TrainingError
from raydl.runtime import check_fits, cluster_resources
from raydl.seeding import restart_generation, restart_rng_state

StateDictFn = Callable[[], dict[str, torch.Tensor]]
Call = tuple[str, tuple[Any, ...]]  # (method name, args) of one actor request


def death_reason(exc: RayActorError) -> str:
    """One line out of Ray's multi-line actor-death message: the exit detail, without
    the paragraph of generic advice that follows it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    if "Worker exit detail:" in text:
        text = text.split("Worker exit detail:", 1)[1].strip()
    text = text.split(" Some common causes", 1)[0]
    return text if len(text) <= 200 else text[:197] + "..."


class RunnerPool:
    """Owns the runner actors; hands back whichever result finishes first."""

    def __init__(
        self,
        cfg: RunnersConfig,
        runner_kwargs: Callable[[int], dict[str, Any]],
        runner_cls: type,
    ) -> None:
        self.cfg = cfg
        bundle = {"CPU": cfg.cpus_per_runner, **cfg.resources}
        # Refuse now what Ray would leave pending forever.
        check_fits(
            "runners", bundle, cfg.num,
            "lower runners.num, runners.cpus_per_runner or runners.resources",
            *cluster_resources(),
        )
        self.runner_kwargs = runner_kwargs
        self.remote_cls = ray.remote(
            num_cpus=cfg.cpus_per_runner, resources=cfg.resources or None
        )(runner_cls)
        # Env-seed generation the runners were last reset to (+1 per resume).
        self.generation = int(runner_kwargs(0).get("generation", 0)) if cfg.num else 0
        self.restarts = [0] * cfg.num  # deaths of each runner (for its seeds and the limit)
        self.total_restarts = 0  # all replacements of this run, resumes included (a metric)
        # Per replacement: which runner, when it was replaced and when its first result
        # came in (time.monotonic(); for diagnostics and tests).
        self.recoveries: list[dict[str, Any]] = []
        self.results_returned = 0  # results handed to the learner
        self.requests_resent = 0  # requests a dead runner never answered (results dropped)
        self.actors = [self._create(i) for i in range(cfg.num)]
        self.in_flight: dict[ray.ObjectRef, int] = {}
        self._calls: dict[ray.ObjectRef, Call] = {}  # what each in-flight request asked
        self.requests = [0] * cfg.num
        self._weights_ref: ray.ObjectRef | None = None
        self._weights_version = -1
        self._latest: tuple[Callable[[], Any], int] | None = None  # for replacements

    # ------------------------------------------------------------------ actors
    def _create(self, index: int) -> Any:
        kwargs = dict(self.runner_kwargs(index))
        restarts = self.restarts[index]
        if not restarts:
            return self.remote_cls.remote(**kwargs)
        kwargs["generation"] = restart_generation(self.generation, restarts)
        actor = self.remote_cls.remote(**kwargs)
        state = restart_rng_state(int(kwargs.get("seed", 0)), index, self.generation, restarts)
        actor.set_state.remote({"rng": state})  # runs before any later call of this actor
        return actor

    def _replace(self, index: int, exc: RayActorError) -> None:
        """Runner `index` died: start its successor with the latest weights and move its
        unfinished requests there (their results will come from the new actor)."""
        if exc.actor_init_failed:  # the same code would fail the same way again
            reason = death_reason(exc)
            raise TrainingError(f"env runner {index} failed to start: {reason}") from None
        self.restarts[index] += 1
        died = self.restarts[index]
        if died > self.cfg.max_restarts:
            raise TrainingError(
                f"env runner {index} died {died} times (runners.max_restarts: "
                f"{self.cfg.max_restarts}); last error: {death_reason(exc)}"
            ) from None
        self.total_restarts += 1
        try:
            ray.kill(self.actors[index], no_restart=True)
        except Exception:  # already gone: nothing to free
            pass
        actor = self.actors[index] = self._create(index)
        if self._latest is not None:
            weights, version = self._latest
            actor.set_weights.remote(self.weights_ref(weights, version), version)
        self.recoveries.append(
            {"runner": index, "replaced_at": time.monotonic(), "first_result_at": None}
        )
        for ref in [r for r, i in self.in_flight.items() if i == index]:
            _, call = self._take(ref)
            self._resend(index, call)

    def _resend(self, index: int, call: Call) -> None:
        self.requests_resent += 1
        self._call(index, *call)

    def _call(self, index: int, method: str, args: tuple[Any, ...]) -> ray.ObjectRef:
        ref = getattr(self.actors[index], method).remote(*args)
        self.in_flight[ref] = index
        self._calls[ref] = (method, args)
        return ref

    def _take(self, ref: ray.ObjectRef) -> tuple[int, Call]:
        return self.in_flight.pop(ref), self._calls.pop(ref)

    def _received(self, index: int) -> None:
        """Note a result of runner `index` (the first one of a replacement ends its recovery)."""
        self.results_returned += 1
        for rec in reversed(self.recoveries):
            if rec["runner"] == index:
                if rec["first_result_at"] is None:
                    rec["first_result_at"] = time.monotonic()
                break

    def _on_all(self, method: str, args: Callable[[int], tuple[Any, ...]]) -> list[Any]:
        """`method(*args(i))` on every runner, results in runner order; a runner that
        died is replaced and asked again."""
        refs = [getattr(a, method).remote(*args(i)) for i, a in enumerate(self.actors)]
        out = []
        for index, ref in enumerate(refs):
            while True:
                try:
                    out.append(ray.get(ref))
                    break
                except RayActorError as exc:
                    self._replace(index, exc)
                    ref = getattr(self.actors[index], method).remote(*args(index))
        return out

    # ------------------------------------------------------------------ weights
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
        self._latest = (lambda: state_dict, version)
        ref = self.weights_ref(lambda: state_dict, version)
        self._on_all("set_weights", lambda _: (ref, version))

    # ------------------------------------------------------------------ requests
    def start(self, method: str, args: Callable[[int], tuple[Any, ...]]) -> None:
        """Put one `method(*args(index))` request in flight on every idle runner."""
        busy = set(self.in_flight.values())
        for index in range(len(self.actors)):
            if index not in busy:
                self._call(index, method, args(index))

    def next_result(self) -> dict[str, Any]:
        """Block until any runner's request is done; return its result. A request whose
        runner died is sent again to its replacement and waited for like any other."""
        while True:
            if not self.in_flight:
                raise RuntimeError("no request in flight; call start() first")
            ready, _ = ray.wait(list(self.in_flight), num_returns=1)
            index, call = self._take(ready[0])
            try:
                result = ray.get(ready[0])
            except RayActorError as exc:
                self._replace(index, exc)
                self._resend(index, call)
                continue
            self._received(index)
            return result

    def all_results(self) -> list[dict[str, Any]]:
        """Block until every in-flight request is done; results in runner order. A runner
        that dies is replaced and its request waited for again, so there is still one
        result per request (A2C averages over every worker)."""
        results: list[tuple[int, dict[str, Any]]] = []
        while self.in_flight:
            ref = min(self.in_flight, key=self.in_flight.__getitem__)
            index, call = self._take(ref)
            try:
                results.append((index, ray.get(ref)))
            except RayActorError as exc:
                self._replace(index, exc)
                self._resend(index, call)
                continue
            self._received(index)
        results.sort(key=lambda pair: pair[0])
        return [result for _, result in results]

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
        if weights is not None:
            self._latest = (weights, version)
            if self.requests[index] % self.cfg.sync_weights_every == 0:
                # Actor calls run in submission order, so the request uses these weights.
                actor.set_weights.remote(self.weights_ref(weights, version), version)
        self._call(index, method, args)

    # ------------------------------------------------------------------ state
    def reset(self, generation: int, states: list[dict[str, Any]]) -> None:
        """Drop in-flight requests; restart every runner's episodes and restore its RNG."""
        self.in_flight = {}
        self._calls = {}
        self.generation = generation
        self._on_all("reset", lambda i: (restart_generation(generation, self.restarts[i]),))
        if len(states) == len(self.actors):  # else a different runner count: fresh RNGs
            self._on_all("set_state", lambda i: (states[i],))

    def get_states(self) -> list[dict[str, Any]]:
        return self._on_all("get_state", lambda _: ())

    def restart_state(self) -> dict[str, Any]:
        """Replacement counts for a checkpoint (JSON-ready)."""
        return {"total": self.total_restarts, "per_runner": list(self.restarts)}

    def load_restart_state(self, state: dict[str, Any] | None) -> None:
        """Counts from `restart_state` (None: a checkpoint from before they were kept);
        per-runner counts only carry over to the same number of runners."""
        if not state:
            return
        self.total_restarts = int(state.get("total", 0))
        per_runner = list(state.get("per_runner", []))
        if len(per_runner) == len(self.restarts):
            self.restarts = [int(n) for n in per_runner]

    def infos(self) -> list[dict[str, Any]]:
        """Where each runner lives (index, pid, node) and how often it was replaced."""
        infos = self._on_all("info", lambda _: ())
        return [{**info, "restarts": self.restarts[i]} for i, info in enumerate(infos)]

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        self.in_flight = {}
        self._calls = {}
