"""Exploration and annealing schedules as pure functions of the step count."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinearSchedule:
    """Linear from `start` to `end` over `duration` steps, then constant at `end`."""

    start: float
    end: float
    duration: int

    def __call__(self, step: int) -> float:
        if self.duration <= 0 or step >= self.duration:
            return self.end
        frac = max(step, 0) / self.duration
        return self.start + frac * (self.end - self.start)
