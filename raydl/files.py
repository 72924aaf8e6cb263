"""Writing a file whole: through a temporary name and a rename, so a kill mid-write
leaves the previous file (or none), never half of one."""

from __future__ import annotations

from pathlib import Path


def write_atomic(data: bytes | str, path: Path) -> None:
    """`data` to `path` via `path.tmp` and a rename (same folder: the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    tmp.replace(path)
