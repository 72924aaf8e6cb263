"""`raydl export` without exporting: the observation adaptation folded into a policy graph
against raydl's own env adaptation, and bad arguments refused in one line before any work."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

from raydl.cli import main
from raydl.envs.spec import _as_float32, _channels_first, observation_plan
from raydl.errors import ConfigError
from raydl.export import check_request, require_onnx
from raydl.rl.export import RawObservation, batch, raw_input

SPACES: dict[str, spaces.Space[Any]] = {
    "discrete with start": spaces.Discrete(5, start=2),
    "multi-discrete": spaces.MultiDiscrete([3, 4, 2]),
    "multi-binary": spaces.MultiBinary(6),
    "box rank 2 float64": spaces.Box(-2.0, 2.0, (2, 3), np.float64),
    "box rank 1 float64": spaces.Box(-1.0, 1.0, (4,), np.float64),
    "box rank 1 int": spaces.Box(0, 9, (3,), np.int32),
    "hwc image": spaces.Box(0, 255, (40, 48, 3), np.uint8),
    "chw image": spaces.Box(0, 255, (3, 40, 48), np.uint8),
}


def _adapted(space: spaces.Space[Any], transform: str, obs: Any) -> np.ndarray:
    """One observation as raydl's env adaptation gives it to the network (envs.spec.adapt:
    gymnasium's flattening, then the float32 cast; or channels-first)."""
    if transform == "flatten":
        return _as_float32(spaces.flatten(space, obs))
    if transform == "float32":
        return _as_float32(obs)
    if transform == "chw":
        return _channels_first(obs)
    return np.asarray(obs)


@pytest.mark.parametrize("name", list(SPACES))
def test_the_folded_adaptation_equals_the_envs_on_sampled_observations(name: str) -> None:
    space = SPACES[name]
    space.seed(0)
    _, transform = observation_plan(space)
    observations = [space.sample() for _ in range(64)]
    got = RawObservation(space, transform)(torch.from_numpy(batch(observations, space, name)))
    expected = np.stack([_adapted(space, transform, o) for o in observations])
    assert got.dtype == torch.from_numpy(expected).dtype and got.shape == expected.shape
    assert np.array_equal(got.numpy(), expected)
    shape, _ = raw_input(space, name)
    assert batch(observations, space, name).shape == (64, *shape)


def test_dict_observations_are_refused_in_one_line() -> None:
    space = spaces.Dict({"a": spaces.Discrete(2)})
    with pytest.raises(ConfigError, match=r"^export: Maze-v0 has a Dict observation space; .* "
                                          r"allowed: Box, Discrete, MultiBinary, MultiDiscrete$"):
        raw_input(space, "Maze-v0")


def cli(*argv: str) -> tuple[int, str]:
    """(exit code, stderr) of the CLI in this process."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
    return code, err.getvalue()


def test_bad_export_arguments_are_one_line_exit_2_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out" / "p.onnx"
    out.parent.mkdir()
    empty = tmp_path / "run"
    empty.mkdir()
    cases = {
        ("--format", "zip"): "argument --format: invalid choice: 'zip' (choose from 'onnx', 'torchscript')",
        ("--format", "onnx"): f"{empty}: no checkpoint found",
        ("--format", "torchscript"): f"{empty}: no checkpoint found",
    }
    for args, message in cases.items():
        code, err = cli("export", str(empty), *args, "--out", str(out))
        assert code == 2 and message in err and err.count("\n") == 1, err
    code, err = cli("export", str(tmp_path / "nope"), "--out", str(out))
    assert code == 2 and "nope: no such checkpoint or run directory" in err
    code, err = cli("export", str(empty), "--out", str(tmp_path / "missing" / "p.onnx"))
    assert code == 2 and "directory" in err and "does not exist" in err
    code, err = cli("export", str(empty), "--out", str(out.parent))
    assert code == 2 and "is a directory" in err
    assert list(out.parent.iterdir()) == []


def test_the_python_api_checks_the_same_and_a_missing_package_names_the_extra(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--format: unknown format 'tflite'; allowed: onnx, torchscript$"):
        check_request("tflite", tmp_path / "p.onnx")
    with pytest.raises(ConfigError, match=r"^export --format onnx: needs no_such_module_raydl "
                                          r"\(not installed\); pip install 'raydl\[export\]'$"):
        require_onnx("export --format onnx", ("onnx", "no_such_module_raydl"))
