"""Evaluation during training (`eval:`): in the driver and in an eval runner actor, the best
checkpoint, stopping on the eval return, videos, a killed eval actor, Tune on the eval
metric."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from raydl.cli import main
from raydl.config import load_experiment
from raydl.envs.spec import probe_env
from raydl.metrics import MetricsWriter
from raydl.rl.dqn import DQN
from raydl.rl.evaluate import evaluate
from raydl.rl.evaluation import read_best, with_evaluation
from raydl.run import train
from raydl.tune import tune_experiment
from raydl.video import read_mp4

pytestmark = pytest.mark.usefixtures("ray_session")

TINY = ["stop.env_steps=3000", "algo.steps_per_iteration=500", "algo.learning_starts=500",
        "algo.hidden=[32, 32]", "log.tensorboard=false", "log.curve=false"]
TRAINING = ("env_steps", "episodes", "episode_return_mean", "loss", "q_mean", "learner_updates")


def test_eval_in_the_driver_changes_no_training_number_and_keeps_the_best(tmp_path: Path) -> None:
    base = TINY + ["runners.num=0", "checkpoint.every=2"]
    plain = train("dqn_cartpole", base, out=tmp_path / "plain", progress=False, echo=False)
    run = train("dqn_cartpole", base + ["eval.every=2", "eval.episodes=3"],
                out=tmp_path / "eval", progress=False, echo=False)
    # the eval episodes touch no counter, no replay, no window, no global RNG
    assert [[r[k] for k in TRAINING] for r in run.history] == \
        [[r[k] for k in TRAINING] for r in plain.history]
    evals = [r for r in run.history if "eval_return_mean" in r]
    # iterations 1, 3, 5 evaluate the weights they start with (after 0, 2, 4 iterations)
    assert [r["iteration"] for r in evals] == [1, 3, 5]
    assert [r["eval_iteration"] for r in evals] == [0, 2, 4]
    assert [r["eval_env_steps"] for r in evals] == [0, 1000, 2000]
    assert all(r["eval_episodes"] == 3 for r in evals)

    # checkpoints/best holds the best evaluation's weights: played again on the same
    # seeds they give the same returns, and `raydl eval` takes the directory
    best = read_best(run.run_dir)
    assert best is not None and best["eval_return_mean"] == max(r["eval_return_mean"] for r in evals)
    cfg = load_experiment(run.run_dir / "config.yaml")
    net = DQN.load_policy(run.run_dir / "checkpoints" / "best", cfg, probe_env(cfg.env))
    again = evaluate(probe_env(cfg.env), net, 3, seed=cfg.seed)
    assert again.mean == pytest.approx(best["eval_return_mean"])
    video = tmp_path / "play.mp4"
    assert main(["eval", str(run.run_dir / "checkpoints" / "best"), "--episodes", "1",
                 "--video", str(video)]) == 0
    assert len(read_mp4(video)) == again.lengths[0] + 1  # the reset frame and one per step

    # a resume keeps the best so far and goes on evaluating on schedule
    more = train(resume=run.run_dir, overrides=["stop.env_steps=4000"], progress=False, echo=False)
    rows = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == list(range(1, 9))
    assert [r["iteration"] for r in rows if "eval_return_mean" in r] == [1, 3, 5, 7]
    assert read_best(more.run_dir)["eval_return_mean"] == max(  # type: ignore[index]
        r["eval_return_mean"] for r in rows if "eval_return_mean" in r)


def test_stop_on_the_eval_return(tmp_path: Path) -> None:
    run = train("dqn_cartpole", TINY + ["runners.num=0", "eval.every=1", "eval.episodes=1",
                                        "stop.eval_return_mean=1"],
                out=tmp_path, progress=False, echo=False)
    assert run.metrics["iteration"] == 1 and run.stopped_by.startswith("eval_return_mean")


def test_a_killed_eval_actor_is_replaced_and_videos_are_recorded(tmp_path: Path) -> None:
    cfg = load_experiment("dqn_cartpole", TINY + [
        "runners.num=1", "eval.every=1", "eval.episodes=1", "eval.video_every=2",
        "eval.cpus=0.5", "eval.video_max_frames=50"])
    algo = with_evaluation(DQN(cfg), cfg, tmp_path)
    try:
        first = algo.step()
        infos = algo.runner_infos()
        assert [i.get("role") for i in infos] == [None, "eval"]
        os.kill(infos[1]["pid"], signal.SIGKILL)
        second = algo.step()  # its evaluation goes to the eval actor's replacement
        third = algo.step()
        assert second["eval_runner_restarts"] == 1 and third["eval_runner_restarts"] == 1
        assert algo.runner_infos()[1]["pid"] != infos[1]["pid"]
        assert second["runner_restarts"] == 0  # the training runner was never touched
        assert [m["eval_iteration"] for m in (first, second, third)] == [0, 1, 2]
    finally:
        algo.close()
    # videos of the weights after 0 and 2 iterations, capped at 50 frames
    assert first["eval_video"] == "videos/iteration_000000.mp4" and "eval_video" not in second
    for row in (first, third):
        frames = read_mp4(tmp_path / row["eval_video"])
        assert len(frames) == min(50, row["eval_len_mean"] + 1) and frames.shape[-1] == 3
    # and TensorBoard shows them (an animated GIF per video)
    writer = MetricsWriter(tmp_path, tensorboard=True, curve=False)
    writer.write(first)
    writer.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    (image,) = events.Images("eval_video")
    assert image.encoded_image_string[:6] == b"GIF89a" and image.step == first["env_steps"]


def test_tune_searches_on_the_eval_return(tmp_path: Path) -> None:
    results = tune_experiment("tune_dqn_cartpole", TINY + [
        "runners.num=0", "eval.every=2", "eval.episodes=1", "stop.iterations=3",
        "tune.metric=eval_return_mean", "tune.scheduler.type=fifo", "tune.search=random",
    ], num_samples=2, out=tmp_path, echo=False)
    assert len(results) == 2 and all(r.error is None for r in results)
    for result in results:
        # every report carries the latest evaluation (Tune wants its metric in each one)
        rows = result.metrics_dataframe
        assert rows["eval_return_mean"].notna().all() and list(rows["eval_iteration"]) == [0, 0, 2]
    best = results.get_best_result(metric="eval_return_mean", mode="max", scope="all")
    assert np.isfinite(best.metrics["eval_return_mean"])
