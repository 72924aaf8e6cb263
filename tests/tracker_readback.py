"""Read back what the experiment trackers hold, offline, to compare with metrics.jsonl.

W&B offline runs are W&B's transaction log (RUN_DIR/wandb/offline-run-*-ID/run-ID.wandb):
a LevelDB-log-format file (a 7-byte header, then 32 KiB blocks of checksummed, possibly
split records) whose records are wandb's own `wandb_internal_pb2.Record` protobufs, which
`wandb sync` uploads; a resumed run is one file per process, synced in start order.
MLflow runs are read with MlflowClient.get_metric_history.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from raydl.metrics import MetricsWriter, read_metrics
from raydl.config import MlflowConfig
from raydl.trackers import numbers, read_state, tracking_uri

BLOCK = 32768
HEADER = 7  # both the file header (":W&B", magic, version) and each record header
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list[Any]:
    """Every record of one .wandb file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B transaction log"
    records, pos, pending = [], HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0:
            break
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def wandb_history(root: Path, run_id: str) -> list[tuple[int, dict[str, Any]]]:
    """(step, values) of every row a W&B run logged under `root`, its files in start order."""
    rows = []
    for path in sorted(root.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")):
        for record in wandb_records(path):
            if record.WhichOneof("record_type") == "history":
                values = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                          for item in record.history.item}
                rows.append((record.history.step.num, {k: v for k, v in values.items()
                                                       if not k.startswith("_")}))
    return rows


def wandb_artifacts(root: Path, run_id: str) -> list[tuple[str, set[str], int]]:
    """(name, aliases, number of files) of every artifact a W&B run under `root` logged."""
    found = []
    for path in sorted(root.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")):
        for record in wandb_records(path):
            if record.WhichOneof("record_type") == "artifact":
                art = record.artifact
                found.append((art.name, set(art.aliases), len(art.manifest.contents)))
    return found


def mlflow_history(uri: str, run_id: str) -> list[tuple[int, dict[str, Any]]]:
    """(step, values) of an MLflow run, one row per step, every logged value kept (a step
    logged twice would show as a repeated step)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    by_step: dict[int, list[dict[str, Any]]] = {}
    for key in client.get_run(run_id).data.metrics:
        for metric in client.get_metric_history(run_id, key):
            rows = by_step.setdefault(metric.step, [])
            slot = next((r for r in rows if key not in r), None)
            if slot is None:
                slot = {}
                rows.append(slot)
            slot[key] = metric.value
    return [(step, row) for step in sorted(by_step) for row in by_step[step]]


def expected(run_dir: Path) -> list[tuple[int, dict[str, Any]]]:
    """metrics.jsonl's rows as a tracker should hold them: (step, finite numbers)."""
    return [(MetricsWriter.step(r), numbers(r)) for r in read_metrics(run_dir)]


def tracker_ids(run_dir: Path) -> dict[str, str]:
    return {name: entry["run_id"] for name, entry in read_state(run_dir).items()}


def held(run_dir: Path) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """What each tracker run named in RUN_DIR/trackers.json holds (W&B offline, MLflow in
    the run's default SQLite store): (step, numbers) per row."""
    ids = tracker_ids(run_dir)
    found = {}
    if "wandb" in ids:
        found["wandb"] = wandb_history(run_dir, ids["wandb"])
    if "mlflow" in ids:
        found["mlflow"] = mlflow_history(tracking_uri(MlflowConfig(), run_dir), ids["mlflow"])
    return found
