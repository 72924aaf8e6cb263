"""Connect to a Ray cluster or start a quiet embedded one on loopback."""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raydl.errors import ConfigError

# Set before Ray is imported anywhere: no usage-stats banner, no pages of deduplication
# notes; these only silence chatter, errors still surface.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")

AUTH_TOKEN_FILE = os.path.expanduser("~/.ray/auth_token")


def token_available() -> bool:
    """Whether this machine has a Ray token to send: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH
    or ~/.ray/auth_token."""
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or os.path.isfile(AUTH_TOKEN_FILE))


def use_token_auth_if_available() -> None:
    """Turn on Ray's token mode when a token is at hand: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH
    or ~/.ray/auth_token, where `ray start` and `ray get-auth-token` put it. Ray clients
    send no token otherwise, and token-auth clusters refuse them. Ray reads the mode once,
    when it is first used, so this runs before any connection."""
    if token_available():
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def _restrict_token_file() -> None:
    """Make Ray's token file (~/.ray/auth_token, which a new local Ray creates with the
    umask's mode, usually world-readable) readable by its owner only: with the token,
    any local user could connect to this user's Ray and run code as this user."""
    try:
        info = os.stat(AUTH_TOKEN_FILE)
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            os.chmod(AUTH_TOKEN_FILE, 0o600)
    except OSError:
        pass  # no token file (token auth off), or not ours to change


def create_private_token() -> None:
    """A new embedded Ray writes ~/.ray/auth_token with the umask's mode (commonly
    world-readable) and raydl could only make it private once Ray was up: a window in
    which any local user could read it. When the token file is about to be made, it is
    made here instead, owner-only from its first byte, with Ray's own generator; Ray
    then finds and uses it."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled" or token_available():
        return
    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )

    os.makedirs(os.path.dirname(AUTH_TOKEN_FILE), mode=0o700, exist_ok=True)
    try:
        fd = os.open(AUTH_TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: Ray reads that one
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(generate_new_authentication_token())


def resolve_address(address: str | None) -> str | None:
    """--address wins, then RAY_ADDRESS; None means an embedded local Ray."""
    return address or os.environ.get("RAY_ADDRESS") or None


def init_ray(
    address: str | None = None, num_cpus: int | None = None, state_api: bool = False, *,
    preload: Sequence[str] = (), meanwhile: Sequence[str] = (), ship: Sequence[Path] = (),
) -> None:
    """Start or join Ray once per process, quietly.

    Embedded Ray binds to 127.0.0.1 and runs no dashboard; joining a cluster started
    with `ray start --head` uses the token Ray wrote there (token auth is on by default).
    `state_api` starts the embedded Ray's dashboard server (on 127.0.0.1, behind the
    token) because Ray's State API lives there: Ray Train inside Tune needs it, see
    raydl.tune.

    Start-up (docs/benchmarks.md, "Time to first step"): an embedded Ray's worker
    processes import the `preload` modules as they start, before any actor is placed on
    them, and this process imports the `meanwhile` modules on a second thread while Ray
    starts (a start that mostly waits on Ray's own processes).

    `ship`: the user's module files (`env: path/to/my_envs.py:Maze-v0`), sent to every
    worker of this job, on any node, through Ray's runtime_env (py_modules).
    """
    address = resolve_address(address)
    if address:
        use_token_auth_if_available()
    import ray

    if ray.is_initialized():
        return
    importer = threading.Thread(target=_import_all, args=(list(meanwhile),), daemon=True)
    importer.start()
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray")
    warnings.filterwarnings("ignore", category=FutureWarning, module="ray")
    # Actors' and Ray Train workers' own logs stay out of the terminal; their errors
    # still reach the driver as exceptions, which raydl turns into one line.
    common = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True,
                  runtime_env=shipping_runtime_env(ship))
    if address:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "auth" in str(exc).lower() or "token" in str(exc).lower():
                reason = (
                    "authentication failed: set RAY_AUTH_MODE=token and put the cluster's "
                    f"token in {AUTH_TOKEN_FILE} (or RAY_AUTH_TOKEN)"
                )
            raise ConfigError(f"--address {address}: cannot connect to Ray: {reason}") from None
    else:
        _start_embedded(num_cpus, state_api, preload, common)
    importer.join()
    for name in ("ray", "ray.train", "ray.tune", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from raydl.profile import mark

    mark("driver: Ray started")


def env_module_file(env_id: str) -> Path | None:
    """The module file a `path/to/module.py:EnvId` env names, absolute (a relative path is
    relative to the current directory); None for any other id."""
    module, sep, _ = env_id.partition(":")
    if not sep or not module.endswith(".py"):
        return None
    return Path(module).expanduser().resolve()


def module_files(cfg: object) -> list[Path]:
    """The user's module files an experiment's env needs in Ray's workers (init_ray ships
    them): `[my_envs.py]` for `env: path/to/my_envs.py:Maze-v0`, else none."""
    env = getattr(cfg, "env", None)
    path = env_module_file(env) if isinstance(env, str) else None
    return [path] if path is not None else []


def shipping_runtime_env(files: Sequence[Path]) -> dict[str, Any] | None:
    """The job's runtime_env that makes each of `files` importable by its name in every
    worker (runner actors, Tune trials). In a `raydl submit` job, whose own runtime_env
    ships raydl itself (py_modules), the job's modules are kept beside these: Ray would
    otherwise refuse a driver's py_modules next to the job's."""
    if not files:
        return None
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    modules = [str(path) for path in files]
    job = os.environ.get(RAY_JOB_CONFIG_JSON_ENV_VAR)
    if job:
        inherited = (json.loads(job).get("runtime_env") or {}).get("py_modules") or []
        modules = [*inherited, *modules]
        os.environ["RAY_OVERRIDE_JOB_RUNTIME_ENV"] = "1"  # py_modules: ours, the job's included
    return {"py_modules": modules}


# Ray Train defaults for an embedded Ray, set before it starts so every process inherits
# them: no node of a one-machine Ray can be preempted, so no watcher actor (a process that
# imports Ray Train, ~1.5 CPU-s); and the controller notices a finished or failed worker
# group within half a second instead of two.
EMBEDDED_TRAIN_ENV = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}


def _import_all(modules: list[str]) -> None:
    """Import `modules` now (on the importer thread). A failure is left for the caller's
    own import of the same module to raise, with its real traceback."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - re-raised by the caller's own import
            pass


def _start_embedded(
    num_cpus: int | None, state_api: bool, preload: Sequence[str], common: dict[str, Any],
) -> None:
    """A new Ray on this machine, on loopback, without the processes a one-machine Ray
    started by one program has no use for: the autoscaler's monitor (nothing to scale)
    and the log monitor (worker logs are not sent to the driver: log_to_driver=False).
    Each is a Python process importing Ray (~0.7 CPU-s at start, 1 s to stop)."""
    import ray
    from ray._private import parameter, ray_constants

    for key, value in EMBEDDED_TRAIN_ENV.items():
        os.environ.setdefault(key, value)
    # Ray turns _node_ip_address="127.0.0.1" into this machine's routable address
    # (ray._private.services.resolve_ip_for_localhost); its agents then listen on that
    # address and its gRPC and metrics servers on every interface. Ray's one-machine
    # mode (its default on macOS and Windows) keeps the node, and so every server, on
    # loopback. Only for this start: a later --address connection is unaffected.
    # ray.init has no arguments for the two processes; RayParams has (ray is pinned in
    # pyproject.toml; tests/integration/test_runtime.py fails if either starts again).
    cluster_mode = ray_constants.ENABLE_RAY_CLUSTER
    params_init = parameter.RayParams.__init__

    def without_monitors(self: Any, *args: Any, **kwargs: Any) -> None:
        params_init(self, *args, **{**kwargs, "no_monitor": True, "include_log_monitor": False})

    create_private_token()
    ray_constants.ENABLE_RAY_CLUSTER = False
    parameter.RayParams.__init__ = without_monitors  # type: ignore[method-assign]
    try:
        ray.init(
            # "local" always starts a new instance; a bare init() would silently join
            # whatever `ray start` cluster happens to run on this machine.
            address="local",
            num_cpus=num_cpus,
            include_dashboard=state_api,
            dashboard_host="127.0.0.1",
            _node_ip_address="127.0.0.1",
            _system_config={"preload_python_modules": list(preload)} if preload else None,
            **common,
        )
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
        parameter.RayParams.__init__ = params_init  # type: ignore[method-assign]
    _restrict_token_file()


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


# ----------------------------------------------------------------------------- resources
# Ray leaves an actor or placement group that no node can ever hold pending forever (with a
# warning in a log nobody reads), so raydl checks the cluster before asking for one.


def cluster_resources() -> tuple[list[dict[str, float]], dict[str, float]]:
    """(resources of each alive node, the cluster's totals) of the connected Ray."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    return nodes, dict(ray.cluster_resources())


def format_resources(resources: dict[str, float], zeros: bool = False) -> str:
    """'2 CPU, 1 GPU'; zero amounts are left out unless `zeros` (to show what is lacking)."""
    return ", ".join(f"{v:g} {k}" for k, v in resources.items() if v or zeros) or "nothing"


def check_fits(
    what: str,
    bundle: dict[str, float],
    count: int,
    fix: str,
    nodes: list[dict[str, float]],
    total: dict[str, float],
) -> None:
    """ConfigError unless `count` copies of `bundle` could ever run on this cluster: one
    must fit on some alive node, and all of them in the cluster's totals.

    Always checked: Ray exposes no reliable flag for "an autoscaler may add such a node",
    so a cluster that would scale up to a missing resource is refused too."""
    bundle = {r: v for r, v in bundle.items() if v > 0}
    eps = 1e-9  # fractional CPUs (0.5 + 0.5 ...) must not fail on rounding
    if not any(all(node.get(r, 0.0) + eps >= v for r, v in bundle.items()) for node in nodes):
        most = {r: max((node.get(r, 0.0) for node in nodes), default=0.0) for r in bundle}
        raise ConfigError(
            f"{what}: one needs {format_resources(bundle)} on a single node and no node has "
            f"that (the most any node has: {format_resources(most, zeros=True)}); {fix}"
        )
    need = {r: v * count for r, v in bundle.items()}
    if any(v > total.get(r, 0.0) + eps for r, v in need.items()):
        have = {r: total.get(r, 0.0) for r in need}
        raise ConfigError(
            f"{what}: {count} need {format_resources(need)} in all and the whole cluster has "
            f"{format_resources(have, zeros=True)}; {fix}"
        )
