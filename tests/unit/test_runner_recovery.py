"""Pure parts of runner recovery and resource checks: no Ray session needed."""

import pytest
from ray.exceptions import RayActorError

from raydl.errors import ConfigError
from raydl.rl.runners.actors import death_reason
from raydl.runtime import check_fits
from raydl.seeding import env_seeds, restart_generation, restart_rng_state

NODES = [{"CPU": 2.0, "memory": 1e9}, {"CPU": 8.0, "GPU": 1.0}]
TOTAL = {"CPU": 10.0, "GPU": 1.0, "memory": 1e9}


def test_bundles_that_fit_a_node_and_the_totals_pass() -> None:
    check_fits("runners", {"CPU": 0.5}, 20, "fix", NODES, TOTAL)
    check_fits("runners", {"CPU": 4.0, "GPU": 1.0}, 1, "fix", NODES, TOTAL)
    check_fits("runners", {"CPU": 1.0, "nope": 0.0}, 1, "fix", NODES, TOTAL)  # zero: not asked


def test_a_bundle_no_node_holds_names_what_it_asks_and_what_there_is() -> None:
    with pytest.raises(ConfigError) as err:
        check_fits("runners", {"CPU": 1.0, "nope": 1.0}, 1, "lower it", NODES, TOTAL)
    assert str(err.value) == (
        "runners: one needs 1 CPU, 1 nope on a single node and no node has that "
        "(the most any node has: 8 CPU, 0 nope); lower it"
    )
    # each resource exists somewhere, but never together on one node
    with pytest.raises(ConfigError, match="the most any node has: 2 CPU, 1 GPU"):
        check_fits("runners", {"CPU": 2.0, "GPU": 1.0}, 1, "fix", [NODES[0], {"CPU": 1.0, "GPU": 1.0}], TOTAL)


def test_bundles_that_each_fit_but_not_all_together_are_refused() -> None:
    with pytest.raises(ConfigError) as err:
        check_fits("runners", {"CPU": 4.0}, 3, "fix", NODES, TOTAL)
    assert str(err.value) == "runners: 3 need 12 CPU in all and the whole cluster has 10 CPU; fix"


def test_replaced_runners_get_new_env_seeds_and_rng_streams() -> None:
    seeds = {
        tuple(env_seeds(0, 1, 4, restart_generation(generation, restarts)))
        for generation in range(3) for restarts in range(3)
    }
    assert len(seeds) == 9  # no (resume, restart) pair replays another's episodes
    assert restart_generation(5, 0) == 5  # never replaced: the usual seeds
    states = [restart_rng_state(0, 1, 0, r)["state"]["state"] for r in (1, 2)]
    assert states[0] != states[1]


def test_death_reason_is_one_line_without_rays_advice() -> None:
    exc = RayActorError(error_msg=(
        "The actor died unexpectedly before finishing this task.\n\tclass_name: EnvRunner\n"
        "\tpid: 123\nThe actor is dead because its worker process has died. Worker exit "
        "type: SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits with a connection "
        "error code 2. End of file. Some common causes include: (1) the OOM killer"
    ))
    assert death_reason(exc) == "Worker unexpectedly exits with a connection error code 2. End of file."
