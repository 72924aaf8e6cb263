"""`raydl plot`: runs and a search's trials in one figure, each curve the rows it read."""

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from raydl.cli import main
from raydl.errors import ConfigError
from raydl.plot import plot_runs


def _run(root: Path, name: str, rows: list[dict], kind: str = "dqn") -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"kind": kind, "env": "CartPole-v1"}))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_runs_and_trials_are_drawn_from_their_rows(tmp_path: Path) -> None:
    a = _run(tmp_path, "a", [{"iteration": i, "env_steps": 100 * i, "episode_return_mean": 10.0 * i} for i in (1, 2, 3)])
    b = _run(tmp_path, "b", [{"iteration": i, "env_steps": 100 * i, "episode_return_mean": 5.0 * i} for i in (1, 2)])
    search = tmp_path / "search"
    for trial, scale in (("RLTrainable_x_00000_0_lr=1", 1.0), ("RLTrainable_x_00001_1_lr=2", 2.0)):
        (search / trial).mkdir(parents=True)
        (search / trial / "result.json").write_text("".join(
            json.dumps({"training_iteration": i, "env_steps": 50 * i, "episode_return_mean": scale * i}) + "\n"
            for i in (1, 2)))
    (search / "raydl_tune.yaml").write_text(yaml.safe_dump(
        {"name": "s", "experiment": {"kind": "dqn", "env": "CartPole-v1", "tune": {"space": {}}}}))
    out = tmp_path / "plots" / "curves.png"
    drawn = plot_runs([a, b, search], out)
    assert drawn == {"a": ([100, 200, 300], [10.0, 20.0, 30.0]), "b": ([100, 200], [5.0, 10.0]),
                     "RLTrainable_x_00000": ([50, 100], [1.0, 2.0]), "RLTrainable_x_00001": ([50, 100], [2.0, 4.0])}
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (700, 450)


def test_fit_runs_default_to_their_headline_against_epochs(tmp_path: Path) -> None:
    run = _run(tmp_path, "cnn", [{"iteration": e, "epoch": e, "val_accuracy": 0.5 + e / 10} for e in (1, 2)],
               kind="classify")
    (run / "config.yaml").write_text(yaml.safe_dump({"kind": "classify"}))
    drawn = plot_runs([run], tmp_path / "c.png")
    assert drawn == {"cnn": ([1, 2], [0.6, 0.7])}


def test_bad_paths_and_metrics_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _run(tmp_path, "a", [{"iteration": 1, "env_steps": 100, "episode_return_mean": 1.0}])
    with pytest.raises(ConfigError, match="--metric nope: in none of the runs; available: env_steps, "
                                          "episode_return_mean, iteration"):
        plot_runs([run], tmp_path / "x.png", metric="nope")
    assert main(["plot", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y.png")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
