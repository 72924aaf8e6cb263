"""`env: path/to/module.py:ENV_ID`: the user's env module named by its file (no Ray)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from raydl.envs import check_env_id, make_env
from raydl.errors import ConfigError
from raydl.runtime import module_files

MODULE = '''
import gymnasium as gym
from {neighbour} import Corridor

gym.register("{env_id}", entry_point=Corridor)
'''
NEIGHBOUR = '''
import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    def __init__(self, render_mode=None):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
'''


def test_a_module_file_imports_with_its_neighbours_relative_or_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "pathenv_corridor.py").write_text(NEIGHBOUR)
    (tmp_path / "envs" / "pathenv_maze.py").write_text(
        MODULE.format(neighbour="pathenv_corridor", env_id="PathMaze-v0"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert check_env_id("envs/pathenv_maze.py:PathMaze-v0") == "PathMaze-v0"
    assert sys.modules["pathenv_maze"].__file__ == str(tmp_path / "envs" / "pathenv_maze.py")
    assert make_env(f"{tmp_path}/envs/pathenv_maze.py:PathMaze-v0").action_space.n == 2
    cfg = type("Cfg", (), {"env": "envs/pathenv_maze.py:PathMaze-v0"})()
    assert module_files(cfg) == [tmp_path / "envs" / "pathenv_maze.py"]  # shipped to Ray workers
    assert module_files(type("Cfg", (), {"env": "my_envs:Maze-v0"})()) == []


@pytest.mark.parametrize("name, message", [
    ("envs/missing.py", "env: envs/missing.py: no such file (a FILE.py:ENV_ID path is absolute or "
                        "relative to the current directory, {cwd})"),
    ("json.py", "env: json.py: the module name 'json' is already taken by "),
    ("my-envs.py", "env: my-envs.py: the file name must be a Python module name"),
])
def test_a_bad_module_file_is_one_line_naming_it(
    name: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for present in ("json.py", "my-envs.py"):
        (tmp_path / present).write_text("x = 1\n")
    with pytest.raises(ConfigError) as err:
        check_env_id(f"{name}:Maze-v0")
    assert str(err.value).startswith(message.format(cwd=tmp_path)) and "\n" not in str(err.value)


def test_in_a_submitted_job_the_jobs_own_modules_are_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A `raydl submit` job ships raydl (py_modules); the driver's env module file joins
    it instead of replacing it, which would leave the workers without that raydl."""
    import json

    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    from raydl.runtime import shipping_runtime_env

    path = tmp_path / "my_envs.py"
    monkeypatch.delenv(RAY_JOB_CONFIG_JSON_ENV_VAR, raising=False)
    assert shipping_runtime_env([]) is None
    assert shipping_runtime_env([path]) == {"py_modules": [str(path)]}
    job = {"runtime_env": {"py_modules": ["gcs://_ray_pkg_raydl.zip"], "working_dir": "gcs://w.zip"}}
    monkeypatch.setenv(RAY_JOB_CONFIG_JSON_ENV_VAR, json.dumps(job))
    monkeypatch.setenv("RAY_OVERRIDE_JOB_RUNTIME_ENV", "0")  # restored after the test
    assert shipping_runtime_env([path]) == {"py_modules": ["gcs://_ray_pkg_raydl.zip", str(path)]}
    assert os.environ["RAY_OVERRIDE_JOB_RUNTIME_ENV"] == "1"  # Ray merges the rest (working_dir)
