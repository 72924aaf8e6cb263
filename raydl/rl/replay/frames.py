"""Memory-lean replay for pixel observations: each frame is stored once.

A stacked Atari observation (4 x 84 x 84 uint8) shares 3 of its 4 frames with the next
one, and next_obs equals the following obs, so storing (obs, next_obs) per transition
keeps every frame 8 times. Here each env step stores only its newest frame plus a few
scalars; stacks and n-step next observations are rebuilt at sampling time by following
per-slot links within the same episode:

    prev[g]  the slot of the previous frame of the same episode (g itself at its start,
             so the stack repeats the first frame, as FrameStackObservation pads)
    next[g]  the slot of the following frame of the same env stream

Slots are addressed by a global, ever-increasing index g (ring position g % capacity);
`written[g % capacity] == g` tells whether slot g still holds what was written there, so
transitions whose oldest stacked frame was overwritten are never sampled. Any number of
env streams (runners x envs) write interleaved into one ring.

Bytes per transition: 84*84 frame + ~37 bytes of links and scalars, about 7.1 KB, so
1M transitions fit in about 7 GB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from raydl.rl.replay.uniform import Batch
_ARRAYS = ("frames", "prev", "next", "written", "action", "reward", "terminated", "ended",
           "has_action")


@dataclass
class FrameSample:
    """What a frame-mode EnvRunner sends instead of transitions: the first frame of each
    episode begun, and per step (arrays shaped (steps, num_envs, ...)) the action, the
    learning reward, the newest frame after it, terminal and episode-end flags."""

    starts: list[tuple[int, np.ndarray]]  # (env, first frame) before step 0
    restarts: list[tuple[int, int, np.ndarray]]  # (step, env, first frame) after that step
    action: np.ndarray
    reward: np.ndarray
    next_frame: np.ndarray
    terminated: np.ndarray
    ended: np.ndarray


class FrameReplayBuffer:
    """Ring of single frames with per-step action/reward/end flags and episode links.
    Sampling folds `n_step` rewards with `gamma`, so batches look like the uniform
    replay's and the learner does not care which buffer it has."""

    def __init__(
        self,
        capacity: int,
        frame_shape: tuple[int, ...] = (84, 84),
        stack: int = 4,
        seed: int = 0,
        n_step: int = 1,
        gamma: float = 0.99,
    ) -> None:
        self.capacity = capacity
        self.stack = stack
        self.n_step, self.gamma = n_step, gamma
        self.frames = np.zeros((capacity, *frame_shape), np.uint8)
        self.prev = np.zeros(capacity, np.int64)
        self.next = np.full(capacity, -1, np.int64)
        self.written = np.full(capacity, -1, np.int64)
        self.action = np.zeros(capacity, np.uint8)  # Atari has at most 18 actions
        self.reward = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.bool_)  # terminal for learning
        self.ended = np.zeros(capacity, np.bool_)  # episode (or life) ended here
        self.has_action = np.zeros(capacity, np.bool_)  # False: newest/final frame
        self.count = 0  # global index of the next slot to write
        self.head: dict[Any, int] = {}  # stream -> its newest slot (awaiting an action)
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ writing
    def _write_frame(self, frame: np.ndarray, prev: int | None) -> int:
        g = self.count
        i = g % self.capacity
        self.frames[i] = frame
        self.prev[i] = g if prev is None else prev
        self.next[i] = -1
        self.written[i] = g
        self.has_action[i] = False
        self.terminated[i] = False
        self.ended[i] = False
        self.count += 1
        return g

    def start_episode(self, stream: Any, frame: np.ndarray) -> None:
        """The first frame of a new episode of `stream` (an env id of your choice)."""
        self.head[stream] = self._write_frame(frame, None)

    def add_step(
        self,
        stream: Any,
        action: int,
        reward: float,
        next_frame: np.ndarray,
        terminated: bool,
        ended: bool,
    ) -> None:
        """The step taken from the stream's newest frame. `next_frame` is the newest frame
        of the resulting observation (the final one if the episode ended); `terminated`
        marks a learning terminal (no bootstrap); `ended` closes the n-step window
        (termination, truncation or a life loss). After an episode ends, call
        `start_episode` with the reset frame."""
        g = self.head[stream]
        i = g % self.capacity
        if self.written[i] != g:
            raise RuntimeError("the stream's newest frame was overwritten: capacity too small")
        self.action[i] = action
        self.reward[i] = reward
        self.terminated[i] = terminated
        self.ended[i] = ended or terminated
        self.has_action[i] = True
        nxt = self._write_frame(next_frame, g)
        self.next[i] = nxt
        self.head[stream] = nxt

    def add(self, sample: FrameSample, source: int = 0) -> None:
        """Replay a frame-mode EnvRunner sample into the ring, in the order it happened;
        streams are (source runner, env)."""
        for e, frame in sample.starts:
            self.start_episode((source, e), frame)
        restarts = {(t, e): frame for t, e, frame in sample.restarts}
        steps, num_envs = sample.action.shape
        for t in range(steps):
            for e in range(num_envs):
                self.add_step(
                    (source, e), int(sample.action[t, e]), float(sample.reward[t, e]),
                    sample.next_frame[t, e], bool(sample.terminated[t, e]),
                    bool(sample.ended[t, e]),
                )
                if (t, e) in restarts:
                    self.start_episode((source, e), restarts[(t, e)])

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """No priorities here (prioritized replay is refused for frame stacks)."""

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        """The stored part of every array (no pickle needed). Stream heads are not
        kept: a restored run starts new episodes."""
        live = min(self.count, self.capacity)
        state = {name: getattr(self, name)[:live] for name in _ARRAYS}
        state["_counters"] = np.array([self.count, self.capacity], np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        count, capacity = (int(x) for x in state["_counters"])
        if capacity != self.capacity:
            raise ValueError(
                f"replay buffer capacity in checkpoint is {capacity}, config says "
                f"{self.capacity}"
            )
        live = min(count, capacity)
        for name in _ARRAYS:
            getattr(self, name)[:live] = state[name]
        self.count = count
        self.head = {}

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        """Transitions that can currently be sampled from (upper bound)."""
        live = min(self.count, self.capacity)
        return int(np.count_nonzero(self.has_action[:live]))

    def _valid(self, g: np.ndarray) -> np.ndarray:
        """Slot g is sampleable: it has an action and its whole stack is still stored."""
        i = g % self.capacity
        ok = (self.written[i] == g) & self.has_action[i]
        oldest = g.copy()
        for _ in range(self.stack - 1):
            oldest = np.where(ok, self.prev[oldest % self.capacity], oldest)
            ok &= self.written[oldest % self.capacity] == oldest
        return ok

    def _stacks(self, g: np.ndarray) -> np.ndarray:
        """(B, stack, H, W) observations ending at slots g."""
        slots = [g]
        for _ in range(self.stack - 1):
            slots.append(self.prev[slots[-1] % self.capacity])
        order = np.stack(slots[::-1], axis=1) % self.capacity  # oldest first
        return self.frames[order]

    def sample(self, batch_size: int, beta: float = 1.0) -> Batch:
        """A uniform batch of n-step transitions with rebuilt stacks (uint8); `beta` is
        unused (uniform replay: every importance weight is 1)."""
        n_step, gamma = self.n_step, self.gamma
        live = min(self.count, self.capacity)
        lo = self.count - live
        g = self.rng.integers(lo, self.count, size=batch_size)
        for _ in range(100):  # invalid picks are rare (oldest slots, newest frames)
            bad = ~self._valid(g)
            if not bad.any():
                break
            g[bad] = self.rng.integers(lo, self.count, size=int(bad.sum()))
        else:
            raise RuntimeError("replay holds too few complete transitions to sample")
        ret = np.zeros(batch_size, np.float32)
        disc = np.ones(batch_size, np.float32)
        term = np.zeros(batch_size, np.float32)
        cur = g.copy()
        active = np.ones(batch_size, np.bool_)
        for _ in range(n_step):
            i = cur % self.capacity
            ret += np.where(active, disc * self.reward[i], 0.0)
            disc = np.where(active, disc * gamma, disc)
            term = np.where(active & self.terminated[i], 1.0, term)
            stop = self.ended[i]
            cur = np.where(active, self.next[i], cur)
            active &= ~stop
            # the window also stops at the stream's newest frame (no action yet)
            active &= self.has_action[cur % self.capacity] & (
                self.written[cur % self.capacity] == cur
            )
        return {
            "obs": self._stacks(g),
            "action": self.action[g % self.capacity].astype(np.int64),
            "reward": ret,
            "next_obs": self._stacks(cur),
            "terminated": term,
            "discount": disc.astype(np.float32),
            "indices": g % self.capacity,
            "weights": np.ones(batch_size, np.float32),
        }

    def nbytes(self) -> int:
        """Bytes held by the buffer's arrays."""
        return int(sum(getattr(self, name).nbytes for name in _ARRAYS))
