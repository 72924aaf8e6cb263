"""The learners on CUDA (`algo.device: cuda`): runners act on CPU with the learner's
weights, checkpoints load on a CPU-only machine, a resumed run goes on from them. Runs
only where torch sees a CUDA device (a GPU machine); CPU machines skip it, and the
device option's refusal there is tested in tests/unit/test_config.py."""

from pathlib import Path

import pytest
import torch

from raydl import checkpoint as ckpt
from raydl import registry
from raydl.config import load_experiment
from raydl.rl import learner
from raydl.run import train

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.usefixtures("ray_session"),
]

SMALL = {
    "ppo_cartpole": ["stop.env_steps=1024", "algo.steps_per_iteration=256",
                     "algo.normalize_obs=true"],
    "ppo_pendulum": ["stop.env_steps=1024", "algo.steps_per_iteration=512",
                     "runners.rollout_length=128"],
    "dqn_cartpole": ["stop.env_steps=1500", "algo.learning_starts=200"],
    "sac_pendulum": ["stop.env_steps=1024", "algo.steps_per_iteration=256", "eval.every=1",
                     "eval.episodes=1", "stop.eval_return_mean=null"],
    "td3_pendulum": ["stop.env_steps=1024", "algo.steps_per_iteration=256", "eval.every=1",
                     "eval.episodes=1", "stop.eval_return_mean=null", "algo.learning_starts=200"],
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_cuda_learner_trains_with_cpu_runners_and_its_checkpoints_load_on_cpu(
    name: str, tmp_path: Path
) -> None:
    overrides = SMALL[name] + ["algo.device=cuda", "runners.num=1", "log.tensorboard=false",
                               "log.curve=false"]
    run = train(name, overrides, out=tmp_path, progress=False, echo=False)
    assert run.metrics["learner_updates"] > 0 and run.checkpoint is not None
    cfg = load_experiment(run.run_dir / "config.yaml")
    env = registry.check(cfg)
    saved = ckpt.load_torch(run.checkpoint / learner.MODEL_FILE)  # onto the CPU
    assert all(t.device.type == "cpu" for t in saved[next(iter(saved))].values())
    policy = registry.algorithm_class(cfg.kind).load_policy(run.checkpoint, cfg, env)
    assert all(p.device.type == "cpu" for p in policy.parameters())
    again = train(None, ["stop.env_steps=2048"], out=tmp_path, resume=run.run_dir,
                  progress=False, echo=False)
    assert again.metrics["env_steps"] >= 2048
    assert again.metrics["learner_updates"] > run.metrics["learner_updates"]
