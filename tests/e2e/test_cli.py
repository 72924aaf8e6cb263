import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def raydl(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "raydl", *args], cwd=cwd, env=env, text=True,
        capture_output=True, timeout=timeout,
    )


def _run_dir(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("runs")
    # the runner actor samples 4 envs x 16 steps = 64 per request: 512 is a multiple
    proc = raydl("run", "dqn_cartpole", "--set", "stop.env_steps=2048",
                 "--set", "algo.steps_per_iteration=512", "--set", "checkpoint.every=2",
                 "--out", str(out), cwd=out)
    return out, proc


def test_run_writes_a_complete_run_directory(trained) -> None:
    out, proc = trained
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = _run_dir(out)
    assert run_dir.name.startswith("dqn_cartpole-")
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("raydl: dqn on CartPole-v1 stopped (env_steps 2,048 reached)")
    assert str(run_dir) in summary
    assert (run_dir / "config.yaml").read_text().count("stop:") == 1
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["env_steps"] == 2048
    runners = json.loads((run_dir / "runners.json").read_text())
    assert len(runners) == 1 and runners[0]["node_id"]  # a real Ray actor sampled
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "curve.png").read_bytes()[:4] == b"\x89PNG"
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["iter_000002", "iter_000004"]
    assert "Traceback" not in proc.stderr and "WARNING" not in proc.stderr


def test_eval_plays_episodes_and_writes_gif(trained) -> None:
    out, _ = trained
    run_dir = _run_dir(out)
    gif = out / "play.gif"
    proc = raydl("eval", str(run_dir), "--episodes", "2", "--gif", str(gif), cwd=out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "episode 2: return" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("raydl eval: CartPole-v1, 2 episodes")
    assert gif.read_bytes()[:6] == b"GIF89a"


def test_resume_continues_the_run(trained) -> None:
    out, _ = trained
    run_dir = _run_dir(out)
    proc = raydl("run", "--resume", str(run_dir), "--set", "stop.env_steps=3072", cwd=out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["env_steps"] == 3072


def _group_alive(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`."""
    alive = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def test_resume_after_the_driver_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the whole process group (driver, Ray, runner actor) mid-run, then
    `raydl run --resume`: the run continues from the newest checkpoint as if never
    stopped, redoing only the env steps after that checkpoint."""
    from raydl import checkpoint as ckpt
    from raydl import registry
    from raydl.config import load_experiment
    from raydl.metrics import read_metrics

    out, chunk, iterations = tmp_path / "runs", 256, 20  # 256: 4 runner requests of 4 x 16
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "raydl", "run", "dqn_cartpole",
             "--set", f"stop.env_steps={chunk * iterations}",
             "--set", f"algo.steps_per_iteration={chunk}", "--set", "checkpoint.every=3",
             "--set", "log.tensorboard=false", "--no-progress", "--out", str(out)],
            cwd=tmp_path, env=env, stdout=log, stderr=log, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        rows: list = []
        while time.monotonic() < deadline and proc.poll() is None:
            runs = list(out.iterdir()) if out.is_dir() else []
            rows = read_metrics(runs[0]) if runs else []
            # past iteration 7: a checkpoint (iteration 6) with learner updates in it
            if rows and rows[-1]["iteration"] >= 7 and ckpt.checkpoint_dirs(runs[0] / "checkpoints"):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed: " + (
            tmp_path / "first.log").read_text()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    while _group_alive(proc.pid) and time.monotonic() < killed_at + 60:
        time.sleep(0.1)
    assert not _group_alive(proc.pid)  # Ray's daemons and the actor died with the driver

    run_dir = _run_dir(out)
    before = read_metrics(run_dir)
    newest = ckpt.latest_checkpoint(run_dir)
    state = ckpt.load_json(newest / "state.json")
    k = state["iteration"]
    at_ckpt = before[k - 1]
    assert at_ckpt["iteration"] == k and at_ckpt["env_steps"] == state["env_steps"]
    lost = before[-1]["env_steps"] - state["env_steps"]

    # What --resume restores is what the run had at that checkpoint: the learner with
    # an in-process sampler here (no Ray needed to look), compared with the run's own row.
    cfg = load_experiment(run_dir / "config.yaml", ["runners.num=0"])
    algo = registry.algorithm_class(cfg.kind)(cfg)
    try:
        algo.restore(newest)
        assert (algo.iteration, algo.book.env_steps, algo.book.updates) == (
            k, at_ckpt["env_steps"], at_ckpt["learner_updates"]
        )
        assert len(algo.buffer) == at_ckpt["buffer_size"] > 0
        # the killed process recorded the digest of its buffer as it was in memory when it
        # saved (state.json); the restored buffer must be that one, not merely the file
        assert ckpt.arrays_digest(algo.buffer.state_dict()) == state["buffer_sha256"]
        steps = {int(s["step"]) for s in algo.optimizer.state_dict()["state"].values()}
        assert steps == {at_ckpt["learner_updates"]} and at_ckpt["learner_updates"] > 0
        assert algo._epsilon_for(0) == pytest.approx(at_ckpt["epsilon"])  # exploration position
    finally:
        algo.close()

    started, first_row_s = time.monotonic(), None
    resumed = subprocess.Popen(
        [sys.executable, "-m", "raydl", "run", "--resume", str(run_dir), "--no-progress"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    while resumed.poll() is None and first_row_s is None:  # only measured, not asserted
        now = read_metrics(run_dir)  # cut back to k rows on restore, then it grows
        if len(now) > k and now[k] not in before:
            first_row_s = time.monotonic() - started
        time.sleep(0.05)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-2000:]
    rows = read_metrics(run_dir)
    assert [r["iteration"] for r in rows] == list(range(1, iterations + 1))
    assert [r["env_steps"] for r in rows] == [chunk * i for i in range(1, iterations + 1)]
    assert rows[:k] == before[:k]  # the history up to the checkpoint is kept as it was
    assert rows[k]["env_steps"] == state["env_steps"] + chunk
    assert rows[k]["learner_updates"] > at_ckpt["learner_updates"]
    print(f"\ndriver killed after iteration {before[-1]['iteration']} "
          f"({before[-1]['env_steps']} env steps); newest checkpoint iteration {k} "
          f"({state['env_steps']} env steps): {lost} env steps lost and redone; resumed "
          f"run's first new row after {first_row_s or float('nan'):.1f}s, end after "
          f"{time.monotonic() - started:.1f}s")


def test_eval_refuses_a_truncated_or_pickled_checkpoint(trained, tmp_path: Path) -> None:
    import torch

    from raydl import checkpoint as ckpt

    out, _ = trained
    run = tmp_path / "copy"
    shutil.copytree(_run_dir(out), run)
    model = ckpt.latest_checkpoint(run) / "model.pt"

    def eval_fails() -> str:
        proc = raydl("eval", str(run), "--episodes", "1", cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"raydl: error: {model}: ")
        return lines[0]

    model.write_bytes(model.read_bytes()[:5000])  # a write cut short
    assert "cannot load checkpoint file" in eval_fails()

    # A crafted pickle whose loading would run a shell command.
    payload = tmp_path / "payload-ran"
    torch.save({"q": _ShellPayload(f"touch {payload}")}, model)
    assert "refused" in eval_fails()
    assert not payload.exists()
    torch.load(model, weights_only=False)  # the payload is real: unsafe loading runs it
    assert payload.exists()


class _ShellPayload:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("kind: dqn\nalgo: {lr: -3}\n", [], "algo.lr: expected a number > 0, got -3"),
        ("kind: dqn\nalgo: {batch: 3}\n", [], "algo.batch: unknown key (did you mean 'batch_size'?)"),
        ("kind: dqn\n", ["--set", "algo.gamma=2"], "algo.gamma: expected a number >= 0 and <= 1"),
        ("kind: dqn\nenv: NoSuchEnv-v0\n", [], "env: unknown environment id 'NoSuchEnv-v0'"),
        ("kind: dqn\nalgo: [\n", [], "invalid YAML at line"),
        ("kind: a2c\nalgo: {asynchronous: true}\n", [], "algo.asynchronous: true is A3C"),
    ],
)
def test_bad_experiment_is_a_one_line_error_with_exit_code_2(
    tmp_path: Path, content: str, args: list[str], message: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    proc = raydl("run", str(bad), *args, "--out", str(tmp_path / "runs"), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("raydl: error: ") and message in lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_export_then_eval_the_onnx_policy_plays_the_same_episodes(trained, tmp_path: Path) -> None:
    out, _ = trained
    run_dir = _run_dir(out)
    policy = tmp_path / "policy.onnx"
    proc = raydl("export", str(run_dir), "--format", "onnx", "--out", str(policy), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "obs float32 (N, 4) -> q_values float32 (N, 2), action int64 (N)" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.onnx"]
    played = raydl("eval", str(run_dir), "--onnx", str(policy), "--episodes", "3", cwd=tmp_path)
    assert played.returncode == 0, played.stderr[-2000:]
    assert f"the greedy policy of {policy}, by onnxruntime" in played.stdout
    by_torch = raydl("eval", str(run_dir), "--episodes", "3", cwd=tmp_path)
    episodes = [line for line in played.stdout.splitlines() if line.startswith("episode ")]
    assert len(episodes) == 3
    assert episodes == [line for line in by_torch.stdout.splitlines() if line.startswith("episode ")]


def test_unwritable_out_and_missing_checkpoint(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = raydl("run", "dqn_cartpole", "--out", str(blocker / "runs"), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "cannot create output directory" in proc.stderr
    proc = raydl("eval", str(tmp_path / "nope"), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "no such checkpoint or run directory" in proc.stderr
    proc = raydl("eval", str(tmp_path / "nope"), "--video", "play.gif", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "--video play.gif: expected a .mp4 file" in proc.stderr


def test_list_shows_experiments(tmp_path: Path) -> None:
    proc = raydl("list", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0
    assert "dqn_cartpole" in proc.stdout and "ddqn_cartpole_parallel" in proc.stdout
    for name in ("a3c_cartpole", "a2c_cartpole", "reinforce_cartpole", "a3c_pong", "dcgan_digits",
                 "tune_dqn_cartpole"):
        assert name in proc.stdout
    assert "kinds: a2c, a3c, cf_rbm, classify, dbn, dqn, gan, language_model, ppo, rbm, reinforce, sac, td3, vae" in proc.stdout
    assert "kind=gan  data=digits" in proc.stdout  # non-RL experiments show their data source


def test_reinforce_run_then_eval_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    proc = raydl("run", "reinforce_cartpole", "--set", "stop.env_steps=1000",
                 "--set", "algo.steps_per_iteration=500", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("raydl: reinforce on CartPole-v1 stopped")
    proc = raydl("eval", str(_run_dir(out)), "--episodes", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("raydl eval: CartPole-v1, 2 episodes")


def test_supervised_run_ensemble_eval_and_viz(tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "runs"
    proc = raydl("run", "cnn_digits", "--set", "train.epochs=2", "--set", "log.tensorboard=false",
                 "--no-progress", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("raydl: classify cnn on digits stopped (epochs 2 reached) after 2 epochs on 2 workers")
    assert "(RayTrainWorker" not in proc.stdout + proc.stderr  # Ray Train stays quiet
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    # Two checkpoints of one run (the run keeps 3) are an ensemble as good as any for
    # the command line: one fit less.
    members = sorted((run / "checkpoints").glob("epoch_*"))
    assert [m.name for m in members] == ["epoch_000001", "epoch_000002"]

    proc = raydl("eval", *map(str, members), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "raydl eval: 270 test examples, ensemble of 2 accuracy" in proc.stdout

    digit = tmp_path / "seven.png"
    img = np.zeros((8, 8), np.uint8)
    img[1, 1:7], img[2:7, 5] = 255, 255
    Image.fromarray(img).save(digit)
    proc = raydl("viz", str(run), "--image", str(digit), "--out", str(tmp_path / "viz"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pngs = sorted(p.name for p in (tmp_path / "viz").iterdir())
    assert pngs == ["activations_01_features_0.png", "activations_02_features_2.png", "filters_01.png"]
    assert all((tmp_path / "viz" / n).read_bytes()[:4] == b"\x89PNG" for n in pngs)


def test_missing_dataset_is_one_line_with_exit_code_2(tmp_path: Path) -> None:
    proc = raydl("run", "cnn_mnist", "--set", f"data.data_dir={tmp_path / 'nowhere'}",
                 "--out", str(tmp_path / "runs"), cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "put torchvision's MNIST files there" in lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _interruptible(tmp_path: Path, *sets: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "raydl", "run", "dqn_cartpole", "--no-progress", "--out", str(tmp_path / "runs"),
            "--set", "runners.num=0", "--set", "stop.env_steps=10000000", "--set", "log.tensorboard=false"]
    for text in sets:
        args += ["--set", text]
    env = {**os.environ, "RAY_ADDRESS": ""}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(check, proc: subprocess.Popen, what: str, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert proc.poll() is None, f"ended before {what}: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"no {what} after {limit} s"
        time.sleep(0.1)


def test_ctrl_c_ends_the_iteration_then_saves_and_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    """One Ctrl-C: the iteration in progress finishes, a whole checkpoint of it is
    written and named. In an env that hangs inside `step`, the iteration cannot finish:
    a second Ctrl-C stops at once, writes nothing (a torn state would overwrite a clean
    checkpoint), and names the newest checkpoint. (Used to: save whatever state the
    interrupt cut, then say "a checkpoint was written" in any case.)"""
    from raydl import checkpoint as ckpt
    from raydl.metrics import read_metrics
    from tests.faulty_envs import arm_hang

    proc = _interruptible(tmp_path, "algo.steps_per_iteration=500", "checkpoint.every=0")
    runs = tmp_path / "runs"
    _wait_for(lambda: runs.is_dir() and any(len(read_metrics(r)) >= 2 for r in runs.iterdir()), proc, "two rows")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    (run_dir,) = runs.iterdir()
    rows = read_metrics(run_dir)
    newest = ckpt.latest_checkpoint(run_dir)
    assert stderr.strip().splitlines()[-1] == (
        f"raydl: interrupted after iteration {rows[-1]['iteration']}; checkpoint {newest} written; "
        f"continue with `raydl run --resume {run_dir}`")
    assert ckpt.load_json(newest / "state.json")["iteration"] == rows[-1]["iteration"]

    arm_hang()
    shutil.rmtree(runs)
    proc = _interruptible(tmp_path, "env=tests.faulty_envs:raydl_test/HangOnce-v0", "algo.steps_per_iteration=10",
                          "runners.envs_per_runner=1",
                          "checkpoint.every=1", "algo.learning_starts=5", "algo.batch_size=4")
    _wait_for(lambda: runs.is_dir() and any((run / "checkpoints" / "iter_000002" / "state.json").is_file()
                                            for run in runs.iterdir()),
              proc, "the checkpoint of iteration 2")  # step 30 of the env, in iteration 3, hangs
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    time.sleep(2.0)
    assert proc.poll() is None, proc.stderr.read()  # still hung: the iteration cannot finish
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    (run_dir,) = runs.iterdir()
    newest = ckpt.latest_checkpoint(run_dir)
    assert newest.name == "iter_000002" and ckpt.load_json(newest / "state.json")["iteration"] == 2
    assert stderr.strip().splitlines()[-1] == (
        f"raydl: interrupted mid-iteration; no checkpoint written (newest: {newest}); "
        f"continue with `raydl run --resume {run_dir}`")


MY_ENVS = '''
import gymnasium as gym
import numpy as np


class Maze(gym.Env):
    """A corridor: walk right to the exit (reward 1), 20 steps at most."""

    def __init__(self, length: int = 5, render_mode=None):
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.t = 0, 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if action == 1 else -1))
        self.t += 1
        done = self.pos >= self.length
        return np.array([self.pos / self.length], np.float32), float(done), done, self.t >= 20, {}


gym.register("Maze-v0", entry_point=Maze)
'''


def test_an_env_module_of_the_users_own_directory_runs_in_the_driver_and_a_runner_actor(tmp_path: Path) -> None:
    """The `raydl` console script did not find `my_envs` in the current directory ("cannot
    import module"); the driver and the runner actor import it now."""
    (tmp_path / "my_envs.py").write_text(MY_ENVS)
    raydl = Path(sys.executable).parent / "raydl"
    env = {**os.environ, "RAY_ADDRESS": ""}
    checked = subprocess.run([str(raydl), "check", "dqn_cartpole", "--set", "env=my_envs:Maze-v0"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    ran = subprocess.run([str(raydl), "run", "dqn_cartpole", "--set", "env=my_envs:Maze-v0", "--set", "runners.num=1",
                          "--set", "stop.env_steps=500", "--set", "log.tensorboard=false", "--no-progress"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "raydl: dqn on my_envs:Maze-v0 stopped (env_steps" in ran.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    infos = json.loads((run_dir / "runners.json").read_text())
    assert len(infos) == 1 and infos[0]["pid"] != os.getpid()  # sampled in an actor process


def test_an_env_module_named_by_path_runs_in_the_driver_and_a_runner_actor(tmp_path: Path) -> None:
    """`env: ../envs/my_envs.py:Maze-v0`, from another directory: the driver imports the
    file, the runner actor gets its own copy from Ray (runtime_env py_modules), as an actor
    on another node would; a path that is not there is one line."""
    (tmp_path / "envs").mkdir()
    (tmp_path / "work").mkdir()
    imports = tmp_path / "imports.txt"
    (tmp_path / "envs" / "my_envs.py").write_text(
        MY_ENVS + f"\nimport os\nwith open({str(imports)!r}, 'a') as f:\n    f.write(f'{{os.getpid()}} {{__file__}}\\n')\n")
    ran = raydl("run", "dqn_cartpole", "--set", "env=../envs/my_envs.py:Maze-v0", "--set", "runners.num=1",
                "--set", "stop.env_steps=500", "--set", "log.tensorboard=false", "--no-progress",
                cwd=tmp_path / "work")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "raydl: dqn on ../envs/my_envs.py:Maze-v0 stopped (env_steps" in ran.stdout
    (run_dir,) = (tmp_path / "work" / "runs").iterdir()
    (actor,) = json.loads((run_dir / "runners.json").read_text())
    files = dict(line.split(" ", 1) for line in imports.read_text().splitlines())
    assert files[str(actor["pid"])] != str(tmp_path / "envs" / "my_envs.py")  # Ray's copy
    assert str(tmp_path / "envs" / "my_envs.py") in files.values()  # the driver's import
    missing = raydl("check", "dqn_cartpole", "--set", "env=envs/my_envs.py:Maze-v0", cwd=tmp_path / "work")
    assert missing.returncode == 2 and missing.stderr.startswith(
        "raydl: error: env: envs/my_envs.py: no such file") and missing.stderr.count("\n") == 1
