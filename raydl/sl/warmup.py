"""Linear learning-rate warm-up over optimizer steps (`train.warmup_steps`), in front of
the per-epoch schedule (raydl.sl.tasks).

The epoch schedule owns each parameter group's `lr`; the warm-up only scales it for the
duration of one optimizer step and puts it back, so the two never fight over the value
(torch's cosine and step schedules compute the next rate from the current one). Step k
(from 0) runs at lr * (k + 1) / (W + 1) while k < W, then at lr: nanoGPT's ramp. The
count of applied steps is all the state there is; model.pt keeps it, so a resumed run
continues the ramp where it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class Warmup:
    """The warm-up of one optimizer: its length and the optimizer steps applied so far."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.done = 0

    def factor(self) -> float:
        """The learning-rate multiplier of the next optimizer step."""
        return (self.done + 1) / (self.steps + 1) if self.done < self.steps else 1.0

    @contextmanager
    def scaled(self, optimizer: torch.optim.Optimizer) -> Iterator[float]:
        """Every group's rate times `factor()` inside the block (its value yielded)."""
        factor = self.factor()
        saved = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * factor
        try:
            yield factor
        finally:
            for group, lr in zip(optimizer.param_groups, saved):
                group["lr"] = lr

    def stepped(self) -> None:
        """Count an applied optimizer step (a skipped non-finite one is not counted)."""
        self.done += 1

    def state_dict(self) -> dict[str, int]:
        return {"steps": self.steps, "done": self.done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """The count of a saved warm-up; this run's length stays (it may differ)."""
        self.done = int(state["done"])
