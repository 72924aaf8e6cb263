"""Environment construction: gymnasium ids (and MODULE:ENV_ID), Atari preprocessing.

`make_env` builds one env as gymnasium gives it; raydl.envs.spec probes it once and
adapts its observations for the learner (`EnvSpec.make`)."""

from __future__ import annotations

import difflib
import importlib

import gymnasium as gym

from raydl.config import AtariConfig
from raydl.errors import ConfigError
from raydl.envs.atari import is_atari, make_atari, register_ale


def check_env_id(env_id: str) -> None:
    """Raise a one-line ConfigError if gymnasium does not know `env_id`.

    `module:EnvId` (gymnasium's own syntax) first imports `module`, which registers the
    user's environment; Ray actors import it too, from the driver's working directory.
    Importing runs the module's code: experiment files are trusted like scripts."""
    if is_atari(env_id):
        register_ale()
    module, sep, name = env_id.partition(":")
    if sep:
        if not module or not name:
            raise ConfigError(f"env: {env_id!r}: expected MODULE:ENV_ID, e.g. my_envs:Maze-v0")
        try:
            importlib.import_module(module)
        except Exception as exc:  # any failure of the user's module is one line here
            raise ConfigError(f"env: cannot import module {module!r} for {env_id!r}: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        env_id = name
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"env: unknown environment id {env_id!r}{hint}")


def make_env(
    env_id: str, render_mode: str | None = None, atari: AtariConfig | None = None
) -> gym.Env:
    """One environment; ALE/* ids get DeepMind preprocessing (`atari`, or its defaults)."""
    check_env_id(env_id)
    if is_atari(env_id):
        a = atari or AtariConfig()
        return make_atari(
            env_id, sticky_actions=a.sticky_actions, noop_max=a.noop_max,
            frame_skip=a.frame_skip, screen_size=a.screen_size, frame_stack=a.frame_stack,
            render_mode=render_mode,
        )
    return gym.make(env_id, render_mode=render_mode)
