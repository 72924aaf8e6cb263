"""`raydl export`: the written ONNX / TorchScript file against torch, on many inputs.

RL policies come from tiny real runs in the driver (no Ray); the classifier and the
generator from one epoch checkpoint each, written by the epoch loop's own checkpoint
writer for a task trained (or built) in this process. The exported graphs take what a
user has: the env's raw observations, [0, 1] images, noise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from raydl import registry
from raydl.checkpoint import newest_checkpoint
from raydl.config import load_experiment
from raydl.export import Exportable, export, exportable, load_onnx, load_torchscript, run_onnx
from raydl.rl.export import GreedyPolicy, batch
from raydl.rl.networks import QNetwork
from raydl.run import train

TOLERANCE = 1e-5
OBSERVATIONS = 10_000
TINY_RL = ["runners.num=0", "stop.env_steps=256", "algo.steps_per_iteration=128",
           "log.tensorboard=false", "log.curve=false", "log.progress=false", "checkpoint.every=1"]


@pytest.fixture(scope="module")
def rl_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny real run of a DQN and of an A2C agent on CartPole: their run directories."""
    out = tmp_path_factory.mktemp("runs")
    extra = {"dqn_cartpole": ["algo.learning_starts=64", "algo.hidden=[32]"], "a2c_cartpole": []}
    return {name.split("_")[0]: train(name, TINY_RL + more, out=out, echo=False).run_dir
            for name, more in extra.items()}


def real_observations(env_id: str, n: int, seed: int = 0) -> list[Any]:
    """`n` observations as the env returns them, under random actions."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    seen = [obs]
    while len(seen) < n:
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            obs, _ = env.reset()
        seen.append(obs)
    env.close()
    return seen


def outputs_of(path: Path, fmt: str, item: Exportable, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The written file's outputs for `inputs`: by onnxruntime, or the loaded TorchScript."""
    if fmt == "onnx":
        return run_onnx(load_onnx(path), item.input_names, inputs)
    outs = load_torchscript(path)(*(torch.from_numpy(x) for x in inputs))
    return [t.numpy() for t in (outs if isinstance(outs, tuple) else (outs,))]


def report(name: str, diffs: dict[str, float]) -> None:
    """The measured parity, in the test log (pytest -s, or on failure)."""
    print(f"{name}: " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("kind", ["dqn", "a2c"])
def test_greedy_policy_matches_torch_on_10k_real_observations(
    rl_runs: dict[str, Path], kind: str, fmt: str, tmp_path: Path
) -> None:
    directory = newest_checkpoint(rl_runs[kind])
    cfg = load_experiment(directory / "config.yaml")
    item = exportable(directory, cfg)
    out = tmp_path / f"policy.{fmt}"
    export(item, fmt, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temp file left
    env = registry.check(cfg)
    observations = real_observations(cfg.env, OBSERVATIONS)
    raw = batch(observations, env.observation_space, cfg.env)
    values, actions = outputs_of(out, fmt, item, [raw])
    # torch, the way `raydl eval` feeds the network (the env spec's adapted observations)
    net = registry.algorithm_class(cfg.kind).load_policy(directory, cfg, env)
    with torch.no_grad():
        expected = net(torch.as_tensor(raw)).numpy()
    diff = float(np.abs(values - expected).max())
    agree = float((actions == expected.argmax(axis=1)).mean())
    report(f"{kind} {fmt}", {"max abs diff": diff, "action agreement": agree,
                             "distinct actions": len(np.unique(actions))})
    assert values.shape == (OBSERVATIONS, env.num_actions) and actions.shape == (OBSERVATIONS,)
    assert diff <= TOLERANCE and agree == 1.0
    assert len(np.unique(actions)) == env.num_actions  # both actions chosen: agreement means something
    assert np.array_equal(actions, values.argmax(axis=1))


@pytest.mark.parametrize("name", ["sac_pendulum", "td3_pendulum"])
def test_continuous_actor_exports_its_greedy_action_in_the_bounds(name: str, tmp_path: Path) -> None:
    """SAC's / TD3's actor: the graph gives tanh(mean) in [-1, 1] and the greedy action
    scaled into Pendulum's [-2, 2], as `raydl eval` plays it."""
    run = train(name, ["runners.num=0", "stop.env_steps=300", "algo.steps_per_iteration=150",
                       "algo.learning_starts=100", "algo.hidden=[32]", "algo.batch_size=32",
                       "eval.every=0", "stop.eval_return_mean=null", "checkpoint.every=2",
                       "log.tensorboard=false", "log.curve=false"], out=tmp_path / "runs", echo=False)
    directory = newest_checkpoint(run.run_dir)
    cfg = load_experiment(directory / "config.yaml")
    item = exportable(directory, cfg)
    export(item, "onnx", tmp_path / "policy.onnx")
    raw = np.random.default_rng(0).uniform(-1, 1, (1000, 3)).astype(np.float32)
    unscaled, actions = outputs_of(tmp_path / "policy.onnx", "onnx", item, [raw])
    net = registry.algorithm_class(cfg.kind).load_policy(directory, cfg, registry.check(cfg))
    with torch.no_grad():
        expected = net.greedy(torch.as_tensor(raw)).numpy()
    assert item.output_names == ("mean", "action") and actions.shape == (1000, 1)
    assert float(np.abs(actions - expected).max()) <= TOLERANCE
    np.testing.assert_allclose(actions, 2.0 * unscaled, atol=TOLERANCE)  # [-1, 1] -> [-2, 2]
    assert np.abs(actions).max() <= 2.0 and np.ptp(actions) > 0.1  # a policy, not a constant


def test_atari_shaped_q_network_takes_uint8_frame_stacks(tmp_path: Path) -> None:
    """The Nature CNN's /255 scaling is in the graph: the input is the uint8 frame stack."""
    torch.manual_seed(0)
    net = QNetwork((4, 84, 84), 6, [64]).eval()
    space = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 4, 84, 84), np.uint8))
    item = Exportable(GreedyPolicy(net, space, "none").eval(), (frames,), ("obs",),
                      ("q_values", "action"))
    out = tmp_path / "atari.onnx"
    export(item, "onnx", out)
    session = load_onnx(out)
    assert session.get_inputs()[0].type == "tensor(uint8)"
    # frames that are mostly dark with bright objects, like a game's
    rng = np.random.default_rng(1)
    stack = np.where(rng.random((1000, 4, 84, 84)) < 0.1, 255, rng.integers(0, 40, (1000, 4, 84, 84)))
    stack = stack.astype(np.uint8)
    values, actions = run_onnx(session, ["obs"], [stack])
    with torch.no_grad():
        expected = net(torch.from_numpy(stack)).numpy()
    diff = float(np.abs(values - expected).max())
    report("atari-shaped dqn onnx", {"max abs diff": diff,
                                     "action agreement": float((actions == expected.argmax(1)).mean())})
    assert diff <= TOLERANCE and np.array_equal(actions, expected.argmax(axis=1))


def _epoch_checkpoint(experiment: str, sets: list[str], root: Path, trained: bool) -> Path:
    """An epoch checkpoint written by the epoch loop's writer for a task in this process."""
    from raydl.train.loop import Counters, Worker, _train, _write_checkpoint

    cfg = load_experiment(experiment, sets + ["scaling.workers=1", "log.tensorboard=false"])
    worker = Worker(cfg, root, rank=0, world=1, device=torch.device("cpu"), group=False)
    task = registry.resolve({"classify": "raydl.sl.tasks:SupervisedTask",
                             "language_model": "raydl.sl.tasks:SupervisedTask",
                             "gan": "raydl.gen.tasks:GenerativeTask"}[cfg.kind])(worker)
    if trained:
        _train(task, worker, Counters(epoch=1))
    directory = root / "checkpoints" / "epoch_000001"
    directory.mkdir(parents=True)
    _write_checkpoint(task, cfg, {"epoch": 1}, directory)
    return directory


def test_classifier_takes_01_images_and_gives_the_probabilities_eval_computes(tmp_path: Path) -> None:
    from dataclasses import replace

    from raydl.sl.data import image_splits, image_transform
    from raydl.sl.evaluate import load_checkpoint

    directory = _epoch_checkpoint("cnn_digits", ["model.channels=[8]", "model.hidden=16",
                                                 "data.image_size=12"], tmp_path, trained=True)
    cfg = load_experiment(directory / "config.yaml")
    out = tmp_path / "classifier.onnx"
    item = exportable(newest_checkpoint(tmp_path), cfg)
    export(item, "onnx", out)
    # the real held-out images: the graph gets them as [0, 1] pixels at the model's size,
    # torch gets them through the training transform (resize, standardization)
    saved = json.loads((directory / "data.json").read_text())
    splits = image_splits(cfg.data)
    raw = splits.test.images  # uint8 (N, 1, 8, 8)
    plain = image_transform(replace(cfg.data, normalize=False), [], [], train=False)
    full = image_transform(cfg.data, saved["mean"], saved["std"], train=False)
    pixels = torch.stack([plain(x) for x in raw]).numpy()
    (probs,) = run_onnx(load_onnx(out), ["image"], [pixels])
    net = load_checkpoint(directory).net
    with torch.no_grad():
        expected = torch.softmax(net(torch.stack([full(x) for x in raw])), dim=1).numpy()
    diff = float(np.abs(probs - expected).max())
    report("classifier onnx", {"max abs diff": diff, "images": len(raw)})
    assert probs.shape == (len(raw), saved["num_classes"]) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert diff <= TOLERANCE and np.array_equal(probs.argmax(1), expected.argmax(1))


def test_language_model_takes_token_ids_of_any_length(tmp_path: Path) -> None:
    from raydl.sl.evaluate import load_checkpoint

    directory = _epoch_checkpoint("lstm_lm_pydoc", ["model.embedding=16", "model.hidden=16",
                                                    "data.seq_len=16"], tmp_path, trained=False)
    cfg = load_experiment(directory / "config.yaml")
    out = tmp_path / "lm.onnx"
    export(exportable(directory, cfg), "onnx", out)
    session = load_onnx(out)
    net = load_checkpoint(directory).net
    vocab = net.embed.num_embeddings
    for length in (1, 5, 40):  # the example was 8 tokens long: none of these
        tokens = torch.randint(0, vocab, (4, length), generator=torch.Generator().manual_seed(length))
        (probs,) = run_onnx(session, ["tokens"], [tokens.numpy()])
        with torch.no_grad():
            expected = torch.softmax(net(tokens)[0], dim=-1).numpy()
        assert probs.shape == (4, length, vocab)
        assert float(np.abs(probs - expected).max()) <= TOLERANCE


@pytest.mark.parametrize(("fmt", "conditional"), [("onnx", False), ("torchscript", False), ("onnx", True),
                                                   ("torchscript", True)])
def test_generator_maps_noise_to_images_as_raydl_sample_does(fmt: str, conditional: bool, tmp_path: Path) -> None:
    from raydl.gen.trainer import load_generator, sample_images

    directory = _epoch_checkpoint("dcgan_digits", ["model.latent=8", "model.g_width=8", "model.d_width=8",
                                                   "score.classifier=null", f"model.conditional={conditional}"],
                                  tmp_path, trained=False)
    cfg, net = load_generator(directory)
    assert net.classes == (10 if conditional else 0)  # data.json told the loader
    out = tmp_path / f"generator.{fmt}"
    item = exportable(directory, cfg)
    export(item, fmt, out)
    n, seed = 256, 3
    noise = torch.randn(n, cfg.model.latent, generator=torch.Generator().manual_seed(seed))
    # raydl sample cycles through the classes; the graph takes them as an int64 input
    labels = [(torch.arange(n) % 10).numpy()] if conditional else []
    assert item.input_names == (("noise", "label") if conditional else ("noise",))
    (images,) = outputs_of(out, fmt, item, [noise.numpy(), *labels])
    expected = sample_images(cfg, net, n, seed=seed).numpy()  # the same noise
    diff = float(np.abs(images - expected).max())
    report(f"generator {fmt}", {"max abs diff": diff})
    assert images.shape == (n, cfg.channels, cfg.image_size, cfg.image_size)
    assert diff <= TOLERANCE and images.min() >= 0 and images.max() <= 1


def test_eval_onnx_refuses_another_envs_policy_and_non_rl_checkpoints(
    rl_runs: dict[str, Path], tmp_path: Path
) -> None:
    from tests.unit.test_export_inputs import cli

    other = tmp_path / "three_inputs.onnx"  # a policy of an env with 3-float observations
    net = QNetwork(3, 2, [8]).eval()
    export(Exportable(GreedyPolicy(net, spaces.Box(-1, 1, (3,), np.float32), "none").eval(),
                      (torch.zeros(3, 3),), ("obs",), ("q_values", "action")), "onnx", other)
    code, err = cli("eval", str(rl_runs["dqn"]), "--onnx", str(other), "--episodes", "1")
    assert code == 2 and err.count("\n") == 1
    assert f"{other}: takes tensor(float) observations of shape (3,); CartPole-v1 gives " \
           "tensor(float) of shape (4,)" in err
    code, err = cli("eval", str(rl_runs["dqn"]), "--onnx", str(tmp_path / "none.onnx"))
    assert code == 2 and "none.onnx: no such file" in err
    classifier = _epoch_checkpoint("cnn_digits", ["model.channels=[4]", "model.hidden=8"],
                                   tmp_path / "cls", trained=False)
    code, err = cli("eval", str(classifier), "--onnx", str(other))
    assert code == 2 and "eval --onnx: plays episodes of RL kinds (a2c, a3c, dqn, ppo, reinforce, sac, td3); " \
                         "this checkpoint is classify" in err
