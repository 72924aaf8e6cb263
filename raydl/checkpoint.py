"""Atomic checkpoints of the whole training state, loaded without arbitrary pickle.

A checkpoint is a directory ``checkpoints/iter_000042/`` holding:
  model.pt     torch tensors and plain containers (torch.load(weights_only=True))
  buffer.npz   replay buffer arrays (np.load(allow_pickle=False))
  state.json   counters, schedule position, RNG states
  config.yaml  the resolved experiment, so the checkpoint alone can be evaluated

The fit kinds' epoch checkpoints (``checkpoints/epoch_000003/``, written by Ray Train)
end with the same state.json, so one rule finds the newest checkpoint of any run.

It is written into a hidden temporary directory first and renamed into place, so a
crash mid-write leaves the previous checkpoint as the newest complete one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from raydl.errors import CheckpointError, ConfigError, message_line

_NAME = re.compile(r"^iter_(\d{6,})$")
_OLD = re.compile(r"^\.old-iter_(\d{6,})-\d+$")  # the previous copy during a rewrite
COMPLETE_MARKER = "state.json"  # written last: a directory without it is not a checkpoint


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first.

    A kill between the two renames of a same-iteration rewrite leaves that iteration only
    as ``.old-iter_N-PID`` (complete: it was a checkpoint until a moment ago); it counts
    as iteration N until the next write puts it back in place."""
    if not root.is_dir():
        return []
    found: dict[int, Path] = {}
    orphans: dict[int, Path] = {}
    for child in root.iterdir():
        match = _NAME.match(child.name)
        old = _OLD.match(child.name)
        if not (match or old) or not child.is_dir() or not (child / COMPLETE_MARKER).is_file():
            continue
        if match:
            found[int(match.group(1))] = child
        else:
            orphans[int(old.group(1))] = child  # type: ignore[union-attr]
    for iteration, path in orphans.items():
        found.setdefault(iteration, path)
    return [found[i] for i in sorted(found)]


RAY_TRAIN_SNAPSHOT = "checkpoint_manager_snapshot.json"


def latest_epoch_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete epoch checkpoint (``checkpoints/epoch_*``, kept by Ray Train
    for the fit kinds) of a run directory, if any.

    Ray Train copies each epoch's directory into place and registers it in its snapshot
    once the copy is whole; a process killed mid-copy leaves an `epoch_N` it never
    registered, which holds a state.json or not. Where the snapshot is there, only what
    it registered counts, the same checkpoint Ray Train itself restores on `--resume`."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return None
    found = sorted(p for p in root.glob("epoch_*") if (p / COMPLETE_MARKER).is_file())
    snapshot = root / RAY_TRAIN_SNAPSHOT
    if snapshot.is_file():
        try:
            results = json.loads(snapshot.read_text()).get("checkpoint_results", [])
            registered = {r.get("checkpoint_dir_name") for r in results}
        except (ValueError, AttributeError):  # unreadable: fall back to the files
            registered = {p.name for p in found}
        found = [p for p in found if p.name in registered]
    return found[-1] if found else None


def newest_checkpoint(path: Path) -> Path:
    """`path` itself if it is a checkpoint, else the newest checkpoint of run directory
    `path` (epoch_* of the fit kinds, iter_* of the stepped ones)."""
    if not path.exists():
        raise ConfigError(f"{path}: no such checkpoint or run directory")
    if (path / COMPLETE_MARKER).is_file():
        return path
    return latest_epoch_checkpoint(path) or latest_checkpoint(path)


def latest_checkpoint(path: Path) -> Path:
    """The newest checkpoint of a run directory (or `path` itself if it is one)."""
    if (path / COMPLETE_MARKER).is_file():
        return path
    found = checkpoint_dirs(path / "checkpoints") or checkpoint_dirs(path)
    if not found:
        raise CheckpointError(f"{path}: no checkpoint found (expected {path}/checkpoints/iter_*)")
    return found[-1]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _clean_after_crash(root: Path) -> None:
    """Undo what a writer killed mid-write left behind: its ``.tmp-*`` directories (half
    written; their pid suffix is a dead process's, so nothing else removes them) and
    an ``.old-*`` copy, renamed back when the kill came between a rewrite's two renames.
    One run writes its checkpoints from one process, so no live writer is disturbed."""
    for child in root.iterdir():
        if child.name.startswith(".tmp-") and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
    for child in root.iterdir():
        old = _OLD.match(child.name)
        if not old or not child.is_dir():
            continue
        final = root / f"iter_{int(old.group(1)):06d}"
        if not final.exists() and (child / COMPLETE_MARKER).is_file():
            child.rename(final)
        else:
            shutil.rmtree(child, ignore_errors=True)
    _fsync_dir(root)


def write_checkpoint(
    root: Path, iteration: int, write: Callable[[Path], None], keep: int
) -> Path:
    """Create ``root/iter_NNNNNN`` atomically; `write(tmp_dir)` fills it. Keeps `keep`."""
    root.mkdir(parents=True, exist_ok=True)
    _clean_after_crash(root)
    final = root / f"iter_{iteration:06d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    tmp.mkdir()
    write(tmp)
    for child in tmp.iterdir():
        with open(child, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(tmp)
    if final.exists():  # the same iteration saved twice (e.g. at_end after a periodic one)
        old = root / f".old-{final.name}-{os.getpid()}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    _fsync_dir(root)
    for stale in checkpoint_dirs(root)[:-keep]:
        # The marker goes first: a kill mid-delete must not leave a "complete" husk.
        (stale / COMPLETE_MARKER).unlink(missing_ok=True)
        shutil.rmtree(stale, ignore_errors=True)
    return final


# ----------------------------------------------------------------------------- files


# torch is imported by the two functions that use it: finding and naming checkpoints is
# part of loading a run, which `raydl run` does before torch is needed (see raydl.run).


def save_torch(obj: dict[str, Any], path: Path) -> None:
    import torch

    torch.save(obj, path)


# torch.load(weights_only=True) runs code from a crafted file on torch <= 2.5.1
# (CVE-2025-32434: it fell through to torch.jit.load for TorchScript archives).
SAFE_TORCH = (2, 6)


def torch_is_safe(version: str) -> bool:
    """Whether torch `version` ("2.6.0+cpu", "2.14.1") loads weights without running code."""
    parts = [int(p) for p in version.split("+")[0].split(".")[:2] if p.isdigit()]
    return tuple(parts) >= SAFE_TORCH


def load_torch(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True: tensors and plain containers, no code. Refused
    outright on a torch that `weights_only` does not protect."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file is missing")
    import torch

    if not torch_is_safe(torch.__version__):
        raise CheckpointError(
            f"{path}: not loaded: torch {torch.__version__} can run code from a checkpoint file "
            f"(CVE-2025-32434); install torch >= {SAFE_TORCH[0]}.{SAFE_TORCH[1]}"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        reason = message_line(exc)
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "refused: it contains objects other than tensors (possible pickle payload)"
        raise CheckpointError(f"{path}: cannot load checkpoint file: {reason}") from None


def save_arrays(arrays: dict[str, np.ndarray], path: Path) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of named arrays (names, dtypes, shapes and bytes, in name order): what a
    checkpoint records of its replay buffer as it was in memory when saved."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
        h.update(memoryview(value).cast("B") if value.size else b"")
    return h.hexdigest()


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """np.load with allow_pickle=False; every array is read now, so truncation shows."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path}: cannot load checkpoint file: {message_line(exc)}") from None


def save_json(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj))


def load_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file is missing")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot load checkpoint file: {exc}") from None
