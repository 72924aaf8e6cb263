"""ActorRunners: N runner actors with one request in flight each, collected by `ray.wait`.

The runner class is any RunnerBase (EnvRunner for DQN, ACWorker for the actor-critic
family); it is wrapped with `ray.remote` here, at the call site, and every request is one
call of its `run(request, weights, version)`.

A runner whose actor dies (its process killed, its node lost) is replaced: the pool kills
the dead handle, starts a new actor for the same index with fresh env seeds and RNG
(`seeding.restart_generation`), sends it the latest weights and re-sends the request the
dead one never finished. That request's result is dropped, never counted: the learner
only ever sees whole results. Past `runners.max_restarts` deaths of one runner the run
fails with a one-line TrainingError; a TrainingError raised inside a runner (an env that
keeps failing) reaches the learner as that one line too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from raydl.config import RunnersConfig
from raydl.errors import TrainingError
from raydl.rl.runners.base import RunnerBase, RunnerResult
from raydl.runtime import check_fits, cluster_resources
from raydl.seeding import restart_generation, restart_rng_state


def death_reason(exc: RayActorError) -> str:
    """One line out of Ray's multi-line actor-death message: the exit detail, without
    the paragraph of generic advice that follows it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    if "Worker exit detail:" in text:
        text = text.split("Worker exit detail:", 1)[1].strip()
    text = text.split(" Some common causes", 1)[0]
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass(frozen=True)
class _Call:
    """One request in flight: who runs it and its arguments (kept to re-send it)."""

    index: int
    request: Any
    weights: Any
    version: int
    sent: float = field(default_factory=time.monotonic)


class ActorRunners:
    """Owns the runner actors; hands back whichever result finishes first."""

    def __init__(
        self, cfg: RunnersConfig, runner_cls: type[RunnerBase], kwargs: dict[str, Any],
        weights: Callable[[], Any], version: Callable[[], int], inline_weights: bool = False,
        what: str = "runners",
    ) -> None:
        self.cfg = cfg
        bundle = {"CPU": cfg.cpus_per_runner, **cfg.resources}
        # Refuse now what Ray would leave pending forever.
        fix = ("lower runners.num, runners.cpus_per_runner or runners.resources"
               if what == "runners" else "lower eval.cpus or runners.resources")
        check_fits(what, bundle, cfg.num, fix, *cluster_resources())
        self.count = cfg.num
        self.kwargs = kwargs
        self.remote_cls = ray.remote(
            num_cpus=cfg.cpus_per_runner, resources=cfg.resources or None
        )(runner_cls)
        self.weights, self.version, self.inline = weights, version, inline_weights
        # Env-seed generation the runners were last reset to (+1 per resume).
        self.generation = int(kwargs.get("generation", 0))
        self.restarts = [0] * cfg.num  # deaths of each runner (for its seeds and the limit)
        self.total_restarts = 0  # all replacements of this run, resumes included (a metric)
        # Per replacement: which runner, when it was replaced and when its first result
        # came in (time.monotonic(); for diagnostics and tests).
        self.recoveries: list[dict[str, Any]] = []
        self.results_returned = 0  # results handed to the learner
        self.requests_resent = 0  # requests a dead runner never answered (results dropped)
        self.actors = [self._create(i) for i in range(cfg.num)]
        self.starting: dict[int, ray.ObjectRef] = {}  # replacements not yet up
        self.in_flight: dict[ray.ObjectRef, _Call] = {}
        self.requests = [0] * cfg.num
        self._weights_ref: ray.ObjectRef | None = None
        self._weights_version = -1
        self.broadcast()

    # ------------------------------------------------------------------ actors
    def _create(self, index: int) -> Any:
        kwargs = {**self.kwargs, "runner_index": index}
        restarts = self.restarts[index]
        if not restarts:
            return self.remote_cls.remote(**kwargs)
        kwargs["generation"] = restart_generation(self.generation, restarts)
        actor = self.remote_cls.remote(**kwargs)
        state = restart_rng_state(int(kwargs.get("seed", 0)), index, self.generation, restarts)
        actor.set_state.remote({"rng": state})  # runs before any later call of this actor
        return actor

    def _replace(self, index: int, exc: RayActorError | str) -> None:
        """Runner `index` died (or hung, `exc` then says so): start its successor with the
        latest weights and move its unfinished requests there (their results will come
        from the new actor)."""
        if isinstance(exc, RayActorError) and exc.actor_init_failed:  # it would fail again
            reason = death_reason(exc)
            raise TrainingError(f"env runner {index} failed to start: {reason}") from None
        self.restarts[index] += 1
        died = self.restarts[index]
        reason = exc if isinstance(exc, str) else death_reason(exc)
        if died > self.cfg.max_restarts:
            raise TrainingError(
                f"env runner {index} died {died} times (runners.max_restarts: "
                f"{self.cfg.max_restarts}); last error: {reason}"
            ) from None
        self.total_restarts += 1
        try:
            ray.kill(self.actors[index], no_restart=True)
        except Exception:  # already gone: nothing to free
            pass
        actor = self.actors[index] = self._create(index)
        # its start-up (a new process, its imports) is not part of any request's time
        self.starting[index] = actor.set_weights.remote(self.weights_ref(), self.version())
        self.recoveries.append(
            {"runner": index, "replaced_at": time.monotonic(), "first_result_at": None}
        )
        for ref in [r for r, call in self.in_flight.items() if call.index == index]:
            self._resend(self.in_flight.pop(ref))

    def _resend(self, call: _Call) -> None:
        self.requests_resent += 1
        self._call(replace(call, sent=time.monotonic()))

    def _started(self) -> None:
        """Replacements that are up now: their requests' clocks start now."""
        for index, ref in list(self.starting.items()):
            if ray.wait([ref], timeout=0)[0]:
                del self.starting[index]
                for r, call in self.in_flight.items():
                    if call.index == index:
                        self.in_flight[r] = replace(call, sent=time.monotonic())

    def _hung(self) -> str:
        return (f"no answer for runners.request_timeout_s ({self.cfg.request_timeout_s:g} s): "
                "taken as hung, replaced")

    def _wait(self, refs: list[ray.ObjectRef]) -> ray.ObjectRef | None:
        """The first of `refs` to finish, or None when one of them has waited past
        `runners.request_timeout_s` (however busy the other runners keep the learner):
        then its runner was replaced as hung (its requests re-sent), and the caller
        waits again."""
        limit = self.cfg.request_timeout_s
        if not limit:
            return ray.wait(refs, num_returns=1)[0][0]
        while True:
            self._started()
            now = time.monotonic()
            timed = [r for r in refs if self.in_flight[r].index not in self.starting]
            overdue = [r for r in timed if self.in_flight[r].sent + limit <= now]
            if overdue:
                _, stuck = ray.wait(overdue, num_returns=len(overdue), timeout=0)
                if stuck:
                    self._replace(self.in_flight[stuck[0]].index, self._hung())
                    return None
            # until the next deadline; a replacement coming up is looked at twice a second
            left = min((self.in_flight[r].sent + limit - now for r in timed), default=0.5)
            wait_s = min(max(left, 0.0), 0.5) if self.starting else max(left, 0.0)
            ready, _ = ray.wait(refs, num_returns=1, timeout=wait_s)
            if ready:
                return ready[0]

    def _call(self, call: _Call) -> None:
        ref = self.actors[call.index].run.remote(call.request, call.weights, call.version)
        self.in_flight[ref] = call

    def _received(self, index: int) -> None:
        """Note a result of runner `index` (the first one of a replacement ends its recovery)."""
        self.results_returned += 1
        for rec in reversed(self.recoveries):
            if rec["runner"] == index:
                if rec["first_result_at"] is None:
                    rec["first_result_at"] = time.monotonic()
                break

    def _get(self, ref: ray.ObjectRef) -> RunnerResult | None:
        """The result of a finished request, or None when its runner died (then it was
        replaced and the request re-sent). A TrainingError raised in the runner is
        re-raised as itself: Ray wraps it in a RayTaskError whose text is the whole
        remote traceback, and the user should see its one line."""
        call = self.in_flight.pop(ref)
        try:
            result = ray.get(ref)
        except RayActorError as exc:
            self._replace(call.index, exc)
            self._resend(call)
            return None
        except RayTaskError as exc:
            if isinstance(exc.cause, TrainingError):
                raise TrainingError(str(exc.cause)) from None
            raise
        self._received(call.index)
        return result

    def _on_all(self, call: Callable[[Any, int], ray.ObjectRef]) -> list[Any]:
        """`call(actor, index)` on every runner (set-up and state calls, not requests),
        results in runner order; a runner that died is replaced and asked again."""
        refs = [call(actor, i) for i, actor in enumerate(self.actors)]
        out = []
        for index, ref in enumerate(refs):
            while True:
                try:
                    out.append(ray.get(ref, timeout=self.cfg.request_timeout_s or None))
                    break
                except RayActorError as exc:
                    self._replace(index, exc)
                except GetTimeoutError:  # busy in a request that hangs
                    self._replace(index, self._hung())
                ref = call(self.actors[index], index)
        return out

    # ------------------------------------------------------------------ weights
    def weights_ref(self) -> Any:
        """One object-store copy per learner version, shared by every runner that needs
        it. The weights are a state dict (copied to CPU) or a flat NumPy vector (which
        Ray hands to the actors without a copy: much cheaper for small, frequent syncs)."""
        version = self.version()
        if self._weights_version != version or self._weights_ref is None:
            value = self.weights()
            if isinstance(value, dict):
                value = {k: v.detach().to("cpu", copy=True) for k, v in value.items()}
            self._weights_ref = ray.put(value)
            self._weights_version = version
        return self._weights_ref

    def broadcast(self) -> None:
        """The learner's current weights to every runner."""
        ref, version = self.weights_ref(), self.version()
        self._on_all(lambda actor, _: actor.set_weights.remote(ref, version))

    # ------------------------------------------------------------------ requests
    def start(self, request_for: Callable[[int], Any]) -> None:
        """Put one request in flight on every idle runner."""
        busy = {call.index for call in self.in_flight.values()}
        for index in range(self.count):
            if index not in busy:
                self._call(_Call(index, request_for(index), None, -1))

    def next(self, max_env_steps: int | None = None) -> RunnerResult:
        """Block until any runner's request is done; return its result. A request whose
        runner died is sent again to its replacement and waited for like any other.
        (`max_env_steps` is for the driver's own runner: requests in flight here were
        sized when they were sent.)"""
        while True:
            if not self.in_flight:
                raise RuntimeError("no request in flight; call start() first")
            ref = self._wait(list(self.in_flight))
            result = self._get(ref) if ref is not None else None
            if result is not None:
                return result

    def all(self) -> list[RunnerResult]:
        """Block until every in-flight request is done; results in runner order. A runner
        that dies is replaced and its request waited for again, so there is still one
        result per request (A2C averages over every worker)."""
        results: list[tuple[int, RunnerResult]] = []
        while self.in_flight:
            ref = min(self.in_flight, key=lambda r: self.in_flight[r].index)
            index = self.in_flight[ref].index
            if self._wait([ref]) is None:  # hung: replaced, its request re-sent
                continue
            result = self._get(ref)
            if result is not None:
                results.append((index, result))
        results.sort(key=lambda pair: pair[0])
        return [result for _, result in results]

    def submit(self, index: int, request: Any) -> None:
        """Send runner `index` its next request, with the learner's current weights when
        due (every `sync_weights_every` requests); actor calls run in submission order,
        so the request acts with them."""
        self.requests[index] += 1
        weights, version = None, -1
        if self.requests[index] % self.cfg.sync_weights_every == 0:
            version = self.version()
            weights = self.weights() if self.inline else self.weights_ref()
        self._call(_Call(index, request, weights, version))

    # ------------------------------------------------------------------ state
    def states(self) -> list[dict[str, Any]]:
        return self._on_all(lambda actor, _: actor.get_state.remote())

    def restart_state(self) -> dict[str, Any]:
        """Replacement counts for a checkpoint (JSON-ready)."""
        return {"total": self.total_restarts, "per_runner": list(self.restarts)}

    def restore(self, generation: int, states: list[dict[str, Any]],
                restarts: dict[str, Any] | None) -> None:
        """Replacement counts from `restart_state` (None: a checkpoint from before they
        were kept; per-runner counts carry over to the same number of runners only),
        then fresh episodes with the seeds of `generation` (replaced runners keep their
        own), the saved RNGs (a different runner count: fresh ones), current weights."""
        if restarts:
            self.total_restarts = int(restarts.get("total", 0))
            per_runner = list(restarts.get("per_runner", []))
            if len(per_runner) == len(self.restarts):
                self.restarts = [int(n) for n in per_runner]
        self.in_flight = {}
        self.generation = generation
        self._on_all(lambda actor, i: actor.reset.remote(
            restart_generation(generation, self.restarts[i])))
        if len(states) == len(self.actors):
            self._on_all(lambda actor, i: actor.set_state.remote(states[i]))
        self.broadcast()

    def infos(self) -> list[dict[str, Any]]:
        """Where each runner lives (index, pid, node) and how often it was replaced."""
        infos = self._on_all(lambda actor, _: actor.info.remote())
        return [{**info, "restarts": self.restarts[i]} for i, info in enumerate(infos)]

    def close(self) -> None:
        """Kill the actors. A request that failed (another runner's copy of the error
        that ended the run) is printed by Ray as an "Unhandled error" traceback when its
        reference is dropped unread; one cut short by killing its actor is not. So: kill
        the actors, then read whatever finished before the kill landed."""
        refs = list(self.in_flight)
        for actor in self.actors:
            ray.kill(actor)
        self.actors, self.in_flight = [], {}
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=5.0) if refs else ([], [])
        for ref in done:
            try:
                ray.get(ref)
            except Exception:  # the run is over; its own error was already raised
                pass
