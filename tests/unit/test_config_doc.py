"""`raydl config`: every shipped experiment printed with its fields' defaults and help
loads back to the same experiment (and the same tune: section)."""

import contextlib
import io
from pathlib import Path

import pytest

from raydl import registry
from raydl.cli import main
from raydl.config import experiment_from_data, load_experiment, read_experiment, read_yaml

NAMES = sorted(p.stem for p in registry.experiment_files())


def _config(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["config", *argv]) == 0
    return out.getvalue()


@pytest.mark.parametrize("name", NAMES)
def test_the_printed_experiment_loads_back_to_the_same_one(name: str, tmp_path: Path) -> None:
    text = _config(name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    original = read_experiment(name, [])
    printed = read_yaml(path)
    assert printed.get("tune") == original.get("tune")
    printed.pop("tune", None)
    original.pop("tune", None)
    assert experiment_from_data(printed) == experiment_from_data(original)
    # every value line says its default; every section and field is there
    fields = [line for line in text.splitlines() if line and not line.startswith("#")]
    in_tune = False
    for line in fields:
        in_tune = in_tune or line.startswith("tune:")
        section = line.split("  #")[0].rstrip().endswith(":")
        if not in_tune and not section:
            assert "(default " in line or "(required)" in line, line


def test_overrides_and_kind_defaults_are_shown(tmp_path: Path) -> None:
    text = _config("a2c_cartpole", "--set", "algo.lr=0.01")
    assert text.splitlines()[0] == "# raydl config a2c_cartpole --set algo.lr=0.01"
    assert "  lr: 0.01  # learning rate (default 0.0007)" in text
    assert "  asynchronous: false  #" in text and text.split("  asynchronous: false")[1].split("\n")[0].endswith("(default false)")
    (tmp_path / "a.yaml").write_text(text)
    assert load_experiment(tmp_path / "a.yaml").algo.lr == 0.01


def test_a_bad_override_is_one_line() -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["config", "dqn_cartpole", "--set", "algo.lr=-1"]) == 2
    assert err.getvalue().count("\n") == 1 and "algo.lr" in err.getvalue()
