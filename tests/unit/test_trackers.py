"""A tracker turned on without its package (or, for MLflow's default SQLite store, without
full mlflow) is one line and exit 2 at check time, before any run directory exists."""

import contextlib
import io
import sys
from pathlib import Path

import pytest

from raydl.cli import main
from raydl.trackers import flat, numbers


def cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue()


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_a_tracker_without_its_package_is_one_line_before_any_work(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # what Python does for an absent package
    line = f"raydl: error: log.{name}: needs the {name} package; pip install 'raydl[{name}]'\n"
    assert cli("check", "dqn_cartpole", "--set", f"log.{name}.enabled=true") == (2, line)
    out = tmp_path / "runs"
    assert cli("run", "cnn_digits", "--set", f"log.{name}.enabled=true", "--out", str(out)) == (2, line)
    assert not out.exists() or not any(out.iterdir())
    assert cli("check", "dqn_cartpole")[0] == 0  # off, as by default: not needed


def test_a_blank_wandb_project_is_refused() -> None:
    assert cli("check", "dqn_cartpole", "--set", "log.wandb.enabled=true", "--set", "log.wandb.project=' '") == (
        2, "raydl: error: log.wandb.project: expected a W&B project name, got ' '\n")


def test_mlflows_sqlite_store_needs_full_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # as with mlflow-skinny alone
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, err = cli("check", "dqn_cartpole", "--set", "log.mlflow.enabled=true")
    assert code == 2 and err.count("\n") == 1
    assert "log.mlflow: the tracking store sqlite:/// needs the full mlflow package" in err
    assert cli("check", "dqn_cartpole", "--set", "log.mlflow.enabled=true",
               "--set", "log.mlflow.tracking_uri=http://127.0.0.1:5000")[0] == 0


def test_what_a_tracker_gets_of_a_row_and_of_the_config() -> None:
    row = {"iteration": 3, "loss": 0.5, "done": True, "note": "x", "q": float("nan"), "r": None}
    assert numbers(row) == {"iteration": 3, "loss": 0.5}  # as TensorBoard: finite numbers
    assert flat({"algo": {"lr": 1e-3, "hidden": [64]}, "seed": 0, "resources": {}}) == {
        "algo.lr": 1e-3, "algo.hidden": [64], "seed": 0, "resources": {}}

