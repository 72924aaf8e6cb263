"""Character-level language models on the same wall-time budget: lstm_lm_pydoc (the
anchor) against transformer_lm_pydoc, on Python's pydoc_data.topics.

Each experiment runs as its own whole `raydl run` process, one after the other, with its
shipped settings except the stopping rule: `train.max_minutes` (the epoch loop stops at
the first epoch end past the budget, so both overrun it by under one epoch) with an
epoch count that never binds, and a constant learning rate (a cosine schedule over
epochs would need the epoch count the budget gives; the transformer keeps its warm-up).
Printed side by side, with transformer / LSTM ratios: the last epoch's validation and
test bits per character, epochs done, the training loop's seconds (training and
validation, what the budget counts), the whole process's seconds and the parameters.

Evaluation reads each split in consecutive windows of data.seq_len: the LSTM carries its
state across them, the transformer sees only its window (on average seq_len / 2
characters of context), as each trains.

    python benchmarks/transformer_vs_lstm.py --minutes 10 --json bench_results/transformer_vs_lstm.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EXPERIMENTS = ("lstm_lm_pydoc", "transformer_lm_pydoc")  # the anchor first
ROWS = (("val_bpc", "validation bpc", ".3f"), ("test_bpc", "test bpc", ".3f"), ("epochs", "epochs", "d"),
        ("train_s", "training loop s", ".0f"), ("wall_s", "process wall s", ".0f"), ("params", "parameters", ",d"))


def parameters(model_file: Path) -> int:
    """Distinct weights in a checkpoint's network (a tied matrix once)."""
    import torch

    tensors = torch.load(model_file, weights_only=True)["model"].values()
    return sum({t.untyped_storage().data_ptr(): t.numel() for t in tensors}.values())


def run(name: str, minutes: float, out: Path, extra: list[str]) -> dict[str, Any]:
    """One whole `raydl run` process of `name` on the budget; its numbers."""
    from raydl.checkpoint import latest_epoch_checkpoint
    from raydl.metrics import read_metrics

    sets = [f"train.max_minutes={minutes}", "train.epochs=100000", "train.schedule=constant",
            "train.early_stop_patience=0", "log.tensorboard=false", *extra]
    argv = [sys.executable, "-m", "raydl", "run", name, "--out", str(out / name)]
    for item in sets:
        argv += ["--set", item]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name}: raydl run exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    run_dir = max((out / name).iterdir(), key=lambda p: p.stat().st_mtime)  # this run's
    last = read_metrics(run_dir)[-1]
    checkpoint = latest_epoch_checkpoint(run_dir)
    state = json.loads((checkpoint / "state.json").read_text())
    return {"val_bpc": last["val_bpc"], "test_bpc": last.get("test_bpc"), "epochs": last["epoch"],
            "train_s": state["train_seconds"], "wall_s": wall, "params": parameters(checkpoint / "model.pt"),
            "run_dir": str(run_dir), "summary": done.stdout.strip().splitlines()[-1]}


def table(results: dict[str, dict[str, Any]], minutes: float) -> None:
    anchor, other = (results[name] for name in EXPERIMENTS)
    print(f"\nsame wall-time budget: {minutes:g} minutes of training each")
    print(f"{'':<18}{EXPERIMENTS[0]:>16}{EXPERIMENTS[1]:>22}{'ratio':>8}")
    for key, label, fmt in ROWS:
        a, b = anchor[key], other[key]
        ratio = f"{b / a:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else "-"
        shown = [format(v, fmt) if v is not None else "-" for v in (a, b)]
        print(f"{label:<18}{shown[0]:>16}{shown[1]:>22}{ratio:>8}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget of each model")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="an extra override for both runs (repeatable), e.g. scaling.workers=1")
    parser.add_argument("--out", type=Path, help="keep the run directories here (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-lm-") as scratch:
        out = args.out or Path(scratch)
        results = {}
        for name in EXPERIMENTS:
            results[name] = run(name, args.minutes, out, args.sets)
            print(results[name]["summary"], flush=True)
        table(results, args.minutes)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"minutes": args.minutes, "sets": args.sets, **results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
