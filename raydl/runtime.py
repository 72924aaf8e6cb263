"""Connect to a Ray cluster or start a quiet embedded one on loopback."""

from __future__ import annotations

import logging
import os
import warnings

from raydl.config import ConfigError

# Set before Ray is imported anywhere: no usage-stats banner, no pages of deduplication
# notes; these only silence chatter, errors still surface.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")

AUTH_TOKEN_FILE = os.path.expanduser("~/.ray/auth_token")


def use_token_auth_if_available() -> None:
    """Turn on Ray's token mode when a token is at hand: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH
    or ~/.ray/auth_token, where `ray start` and `ray get-auth-token` put it. Ray clients
    send no token otherwise, and token-auth clusters refuse them. Ray reads the mode once,
    when it is first used, so this runs before any connection."""
    if (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or os.path.isfile(AUTH_TOKEN_FILE)):
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def resolve_address(address: str | None) -> str | None:
    """--address wins, then RAY_ADDRESS; None means an embedded local Ray."""
    return address or os.environ.get("RAY_ADDRESS") or None


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process, quietly.

    Embedded Ray binds to 127.0.0.1 and runs no dashboard; joining a cluster started
    with `ray start --head` uses the token Ray wrote there (token auth is on by default).
    """
    address = resolve_address(address)
    if address:
        use_token_auth_if_available()
    import ray

    if ray.is_initialized():
        return
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray")
    warnings.filterwarnings("ignore", category=FutureWarning, module="ray")
    # Actors' and Ray Train workers' own logs stay out of the terminal; their errors
    # still reach the driver as exceptions, which raydl turns into one line.
    common = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
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
        ray.init(
            # "local" always starts a new instance; a bare init() would silently join
            # whatever `ray start` cluster happens to run on this machine.
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **common,
        )
    for name in ("ray", "ray.train", "ray.tune", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
