"""Environment construction: gymnasium ids (and MODULE:ENV_ID or FILE.py:ENV_ID), Atari preprocessing.

`make_env` builds one env as gymnasium gives it; raydl.envs.spec probes it once and
adapts its observations for the learner (`EnvSpec.make`)."""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from pathlib import Path

import gymnasium as gym

from raydl.config import AtariConfig
from raydl.errors import ConfigError
from raydl.envs.atari import is_atari, make_atari, register_ale
from raydl.envs.box2d import require_box2d


def check_env_id(env_id: str) -> str:
    """The id gymnasium registered `env_id` under, or a one-line ConfigError if gymnasium
    does not know it.

    `module:EnvId` (gymnasium's own syntax) first imports `module`, which registers the
    user's environment; Ray actors import it too, from the driver's working directory.
    `path/to/module.py:EnvId` imports that file (relative to the current directory, or
    absolute); Ray workers get the file from the driver (raydl.runtime.init_ray ships it).
    Importing runs the module's code: experiment files are trusted like scripts."""
    if is_atari(env_id):
        register_ale()
    module, sep, name = env_id.partition(":")
    if sep:
        if not module or not name:
            raise ConfigError(f"env: {env_id!r}: expected MODULE:ENV_ID or FILE.py:ENV_ID, "
                              "e.g. my_envs:Maze-v0 or envs/my_envs.py:Maze-v0")
        try:
            if module.endswith(".py"):
                _import_file(module)
            else:
                importlib.import_module(module)
        except ConfigError:
            raise
        except Exception as exc:  # any failure of the user's module is one line here
            raise ConfigError(f"env: cannot import module {module!r} for {env_id!r}: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        env_id = name
    if env_id in gym.registry:
        return env_id
    close = difflib.get_close_matches(env_id, list(gym.registry), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"env: unknown environment id {env_id!r}{hint}")


def _in_ray_worker() -> bool:
    """Whether this process is a Ray worker (a runner actor, a Tune trial), not a driver."""
    if "ray" not in sys.modules:
        return False
    from ray._private.worker import WORKER_MODE, global_worker

    return getattr(global_worker, "mode", None) == WORKER_MODE


def _import_file(text: str) -> None:
    """Import the module file `text` under its own name (its stem), with its directory on
    sys.path, as Python does for a script, so the file's imports of its neighbours work."""
    path = Path(text).expanduser()
    name = path.stem
    if not name.isidentifier():
        raise ConfigError(f"env: {text}: the file name must be a Python module name "
                          "(letters, digits and _), e.g. my_envs.py")
    if _in_ray_worker():
        # The driver shipped the file to the job's workers (runtime_env py_modules): the
        # driver's path may not exist here (another node, another working directory).
        try:
            importlib.import_module(name)
            return
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module is there; something it imports is not
                raise
            # Not shipped (a Ray that raydl did not start): the path is all there is.
    if not path.is_file():
        raise ConfigError(f"env: {text}: no such file (a FILE.py:ENV_ID path is absolute or "
                          f"relative to the current directory, {os.getcwd()})")
    path = path.resolve()
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    origin = getattr(importlib.import_module(name), "__file__", None)
    if origin is None or Path(origin).resolve() != path:
        raise ConfigError(f"env: {text}: the module name {name!r} is already taken by "
                          f"{origin or 'a built-in module'}; rename the file")


def make_env(
    env_id: str, render_mode: str | None = None, atari: AtariConfig | None = None
) -> gym.Env:
    """One environment; ALE/* ids get DeepMind preprocessing (`atari`, or its defaults)."""
    registered = check_env_id(env_id)
    require_box2d(registered)
    if is_atari(env_id):
        a = atari or AtariConfig()
        return make_atari(
            env_id, sticky_actions=a.sticky_actions, noop_max=a.noop_max,
            frame_skip=a.frame_skip, screen_size=a.screen_size, frame_stack=a.frame_stack,
            render_mode=render_mode,
        )
    return gym.make(registered, render_mode=render_mode)
