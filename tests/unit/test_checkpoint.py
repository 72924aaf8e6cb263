import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from raydl import checkpoint as ckpt
from raydl.errors import CheckpointError


def _writer(value: int):
    def write(directory: Path) -> None:
        ckpt.save_torch({"w": torch.tensor([value])}, directory / "model.pt")
        ckpt.save_arrays({"a": np.arange(value)}, directory / "buffer.npz")
        ckpt.save_json({"value": value}, directory / ckpt.COMPLETE_MARKER)

    return write


def test_write_keeps_newest_and_ignores_partial(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for i in range(1, 5):
        ckpt.write_checkpoint(root, i, _writer(i), keep=2)
    assert [p.name for p in ckpt.checkpoint_dirs(root)] == ["iter_000003", "iter_000004"]
    # a crash mid-write leaves a temp dir (and maybe a half dir): neither is "latest"
    (root / ".tmp-iter_000005-123").mkdir()
    (root / "iter_000006").mkdir()  # no state.json: incomplete
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == "iter_000004"
    assert ckpt.load_json(latest / "state.json") == {"value": 4}


def test_write_failure_keeps_previous(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    ckpt.write_checkpoint(root, 1, _writer(1), keep=3)

    def crash(directory: Path) -> None:
        ckpt.save_torch({"w": torch.zeros(3)}, directory / "model.pt")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ckpt.write_checkpoint(root, 2, crash, keep=3)
    assert ckpt.latest_checkpoint(tmp_path).name == "iter_000001"


def test_truncated_files_give_one_line_errors(tmp_path: Path) -> None:
    d = ckpt.write_checkpoint(tmp_path, 1, _writer(50), keep=1)
    for name in ("model.pt", "buffer.npz"):
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.pt: cannot load checkpoint file") as e1:
        ckpt.load_torch(d / "model.pt")
    with pytest.raises(CheckpointError, match=r"buffer\.npz: cannot load checkpoint file") as e2:
        ckpt.load_arrays(d / "buffer.npz")
    assert "\n" not in str(e1.value) and "\n" not in str(e2.value)
    with pytest.raises(CheckpointError, match="missing"):
        ckpt.load_torch(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        ckpt.latest_checkpoint(tmp_path / "empty")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "model.pt"
    torch.save({"q": _Payload()}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        ckpt.load_torch(evil)
    assert not (tmp_path / "pwned").exists()
    npz = tmp_path / "buffer.npz"
    np.savez(npz, a=np.array([_Payload()], dtype=object))
    with pytest.raises(CheckpointError, match="cannot load"):
        ckpt.load_arrays(npz)
    assert not (tmp_path / "pwned").exists()


# A child process that writes checkpoints of a ~50 MB model in a loop, each iteration
# twice (a periodic save, then the at-end rewrite of the same iteration), carrying on
# from the newest checkpoint it finds. With "die-between-renames" it SIGKILLs itself
# right after a rewrite has moved the old copy aside and before the new one is in place.
_WRITER = r"""
import os, signal, sys
from pathlib import Path
import numpy as np, torch
from raydl import checkpoint as ckpt

root, mode = Path(sys.argv[1]), sys.argv[2]
if mode == "die-between-renames":
    rename = Path.rename
    def killing_rename(self, target):
        done = rename(self, target)
        if Path(target).name.startswith(".old-"):
            os.kill(os.getpid(), signal.SIGKILL)
        return done
    Path.rename = killing_rename
found = ckpt.checkpoint_dirs(root)
start = ckpt.load_json(found[-1] / "state.json")["iteration"] + 1 if found else 1
weights = torch.zeros(50 * 2**20 // 4)  # 50 MiB of float32
for iteration in range(start, start + 10_000):
    weights[0] = iteration
    def write(d):
        ckpt.save_torch({"w": weights}, d / "model.pt")
        ckpt.save_arrays({"a": np.full(1000, iteration)}, d / "buffer.npz")
        ckpt.save_json({"iteration": iteration}, d / "state.json")
    for _ in range(2):
        ckpt.write_checkpoint(root, iteration, write, keep=2)
"""


def _loads_fully(checkpoint: Path) -> int:
    """Every file of `checkpoint` loads and all of them are of the same iteration."""
    iteration = ckpt.load_json(checkpoint / "state.json")["iteration"]
    weights = ckpt.load_torch(checkpoint / "model.pt")["w"]
    assert weights.numel() == 50 * 2**20 // 4 and int(weights[0]) == iteration
    assert (ckpt.load_arrays(checkpoint / "buffer.npz")["a"] == iteration).all()
    return iteration


def test_sigkill_during_checkpoint_writes_keeps_the_previous_loadable(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "checkpoints"
    repo = Path(__file__).resolve().parents[2]

    def start(mode: str = "loop") -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", _WRITER, str(root), mode], cwd=repo)

    # Where the writer is when it dies: its temp dir just made; the 50 MB model.pt being
    # written; every file written (fsync and the renames still to come).
    kill_points = {
        "temp dir created": lambda tmp: True,
        "model.pt being written": lambda tmp: (tmp / "model.pt").stat().st_size > 0
        and not (tmp / "buffer.npz").exists(),
        "all files written": lambda tmp: (tmp / "state.json").exists(),
    }
    newest, dead_pids = 0, []
    for point, reached in kill_points.items():
        child = start()
        deadline = time.monotonic() + 120
        seen = None
        while seen is None and time.monotonic() < deadline and child.poll() is None:
            # kill only once this writer has completed a checkpoint of its own, so each
            # kill lands on a later iteration (and there is a previous one to keep)
            done = ckpt.checkpoint_dirs(root)
            ahead = done and int(done[-1].name.split("_")[-1].split("-")[0]) > newest
            writing = root.glob(f".tmp-*-{child.pid}") if ahead else []
            for tmp in writing:
                try:
                    if reached(tmp):
                        child.send_signal(signal.SIGKILL)
                        seen = sorted(f"{f.name}={f.stat().st_size}" for f in tmp.iterdir())
                except OSError:  # renamed away between glob and stat: try the next one
                    pass
            time.sleep(0.0005)
        child.kill()
        child.wait()
        assert seen is not None, f"never saw the writer at '{point}'"
        # what any earlier killed writer left was cleared by this one's first write
        assert not [p for pid in dead_pids for p in root.glob(f".*-{pid}")]
        dead_pids.append(child.pid)
        iteration = _loads_fully(ckpt.latest_checkpoint(tmp_path))
        assert iteration >= newest
        newest = iteration
        print(f"killed at {point} ({', '.join(seen) or 'empty'}): newest iteration {iteration} loads")

    # killed between a rewrite's two renames: only .old-iter_N is left of iteration N
    child = start("die-between-renames")
    assert child.wait(timeout=120) == -signal.SIGKILL
    (orphan,) = root.glob(f".old-iter_*-{child.pid}")
    assert not (root / orphan.name.split("-")[1]).exists()
    assert ckpt.latest_checkpoint(tmp_path) == orphan and _loads_fully(orphan) > newest
    # the next write puts it back in place and clears the dead writer's temp dir
    ckpt.write_checkpoint(root, 10**6, lambda d: ckpt.save_json({}, d / "state.json"), keep=3)
    names = sorted(p.name for p in root.iterdir())
    assert not [n for n in names if n.startswith(".")], names
    assert orphan.name.split("-")[1] in names and "iter_1000000" in names


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, not gone
@pytest.mark.filterwarnings("ignore:.*TorchScript archive:UserWarning")
def test_a_torchscript_archive_is_refused_where_a_checkpoint_is_loaded(tmp_path: Path) -> None:
    """CVE-2025-32434's way in: `weights_only=True` used to hand TorchScript archives to
    torch.jit.load, which runs the archive's code. On a safe torch it is one line."""
    class Payload(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    archive = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(Payload()), str(archive))
    with pytest.raises(CheckpointError, match=f"{archive}: cannot load checkpoint file"):
        ckpt.load_torch(archive)


def test_checkpoints_are_not_loaded_on_a_torch_that_weights_only_does_not_protect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, saved)
    assert set(ckpt.load_torch(saved)) == {"w"}
    for unsafe in ("2.5.1", "2.2.0+cpu", "1.13.1"):
        monkeypatch.setattr(torch, "__version__", unsafe)
        with pytest.raises(CheckpointError, match=f"torch {re.escape(unsafe)} can run code .*CVE-2025-32434"):
            ckpt.load_torch(saved)
    assert ckpt.torch_is_safe("2.6.0") and ckpt.torch_is_safe("2.14.1+cu128")
    assert not ckpt.torch_is_safe("2.5.1")


def test_a_replay_buffer_file_that_is_not_the_saved_one_is_refused(tmp_path: Path) -> None:
    """state.json records the digest of the buffer as it was in memory when saved; a
    buffer.npz that loads fine but holds other arrays (swapped, edited) is refused."""
    from raydl.config import load_experiment
    from raydl.rl.dqn import DQN

    cfg = load_experiment("dqn_cartpole", ["runners.num=0", "algo.steps_per_iteration=300",
                                           "algo.learning_starts=100"])
    algo = DQN(cfg)
    try:
        algo.step()
        algo.save(tmp_path)
        state = ckpt.load_json(tmp_path / "state.json")
        assert state["buffer_sha256"] == ckpt.arrays_digest(algo.buffer.state_dict())
        arrays = ckpt.load_arrays(tmp_path / "buffer.npz")
        arrays["reward"] = arrays["reward"] + 1.0  # still a valid file
        ckpt.save_arrays(arrays, tmp_path / "buffer.npz")
        with pytest.raises(CheckpointError, match="buffer.npz: does not hold the replay buffer"):
            algo.restore(tmp_path)
    finally:
        algo.close()
