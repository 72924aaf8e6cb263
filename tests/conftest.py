import os
from collections.abc import Iterator

import pytest

# Tests never reach W&B's servers: runs with log.wandb on write offline runs. Set before
# Ray starts, so Ray's workers (Ray Train workers, Tune's W&B logging actors) see it too.
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One embedded Ray for the whole test session (starting Ray takes seconds)."""
    from raydl.runtime import init_ray, shutdown_ray

    init_ray(num_cpus=2)
    yield
    shutdown_ray()
