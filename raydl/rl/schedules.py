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


def apex_epsilons(num_runners: int, base: float = 0.4, alpha: float = 7.0) -> list[float]:
    """Ape-X's fixed per-runner exploration rates (Horgan et al. 2018):
    eps_i = base^(1 + alpha * i / (N - 1)), from `base` down to base^(1 + alpha)."""
    if num_runners <= 1:
        return [base]
    return [base ** (1 + alpha * i / (num_runners - 1)) for i in range(num_runners)]
