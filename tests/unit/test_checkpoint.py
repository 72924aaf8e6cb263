import os
from pathlib import Path

import numpy as np
import pytest
import torch

from raydl import checkpoint as ckpt


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
    with pytest.raises(ckpt.CheckpointError, match=r"model\.pt: cannot load checkpoint file") as e1:
        ckpt.load_torch(d / "model.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"buffer\.npz: cannot load checkpoint file") as e2:
        ckpt.load_arrays(d / "buffer.npz")
    assert "\n" not in str(e1.value) and "\n" not in str(e2.value)
    with pytest.raises(ckpt.CheckpointError, match="missing"):
        ckpt.load_torch(tmp_path / "nope.pt")
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint found"):
        ckpt.latest_checkpoint(tmp_path / "empty")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "model.pt"
    torch.save({"q": _Payload()}, evil)
    with pytest.raises(ckpt.CheckpointError, match="refused"):
        ckpt.load_torch(evil)
    assert not (tmp_path / "pwned").exists()
    npz = tmp_path / "buffer.npz"
    np.savez(npz, a=np.array([_Payload()], dtype=object))
    with pytest.raises(ckpt.CheckpointError, match="cannot load"):
        ckpt.load_arrays(npz)
    assert not (tmp_path / "pwned").exists()
