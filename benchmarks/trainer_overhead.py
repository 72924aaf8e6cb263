"""What Ray Train costs per epoch: a plain PyTorch loop vs raydl with 1 and 2 workers.

The same model (raydl/experiments/cnn_digits.yaml's CNN), data (scikit-learn digits, the same
split and standardization), batch size per worker, optimizer and number of epochs:

  (a) a plain PyTorch loop in this process, one torch thread;
  (b) `raydl run cnn_digits` with 1 Ray Train worker (1 CPU, one torch thread);
  (c) the same with 2 workers (DDP over gloo, each worker half of every epoch).

Epoch time = the training pass only (forward, backward, optimizer step over the
training split), the median over epochs 2..N (epoch 1 warms up); start-up (Ray Train's
controller and worker group, process group, data loading) is reported separately as the
wall time of the whole run minus the epochs. Target: (b) / (a) <= 1.10.

Command:

    python benchmarks/trainer_overhead.py --epochs 8 --json bench_results/trainer_overhead.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET = 1.10


def plain_loop(epochs: int, batch_size: int) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader

    from raydl.config import load_experiment
    from raydl.nn import make_optimizer
    from raydl.seeding import seed_everything
    from raydl.sl.data import image_splits
    from raydl.sl.models import build_model

    torch.set_num_threads(1)
    start = time.perf_counter()
    cfg = load_experiment("cnn_digits")
    seed_everything(cfg.seed)
    splits = image_splits(cfg.data)
    net = build_model(cfg.model, splits.input_shape, splits.num_classes)
    opt = make_optimizer(cfg.train.optimizer, net.parameters(), cfg.train.lr)
    loader = DataLoader(splits.train, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        net.train()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    return {"epoch_times_s": times, "wall_s": wall}


def raydl_run(workers: int, epochs: int, batch_size: int) -> dict[str, Any]:
    from raydl.run import train

    overrides = [
        f"scaling.workers={workers}", f"train.epochs={epochs}", f"train.batch_size={batch_size}",
        "train.early_stop_patience=0", "train.schedule=constant", "scaling.max_failures=0",
        "log.tensorboard=false", "log.curve=false", "checkpoint.every=0",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-sl-") as out:
        start = time.perf_counter()
        result = train("cnn_digits", overrides, out=out, progress=False, echo=False)
        wall = time.perf_counter() - start
    times = [row["epoch_time_s"] for row in result.history]
    return {"epoch_times_s": times, "wall_s": wall,
            "test_accuracy": result.metrics.get("test_accuracy")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32, help="per worker")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    from raydl.runtime import init_ray

    init_ray(num_cpus=2)
    runs = {
        "(a) plain PyTorch": plain_loop(args.epochs, args.batch_size),
        "(b) raydl, 1 worker": raydl_run(1, args.epochs, args.batch_size),
        "(c) raydl, 2 workers": raydl_run(2, args.epochs, args.batch_size),
    }
    base = statistics.median(runs["(a) plain PyTorch"]["epoch_times_s"][1:])
    print(f"\n{'':24}{'epoch s (median)':>18}{'/ (a)':>8}{'start-up s':>12}")
    for name, r in runs.items():
        epoch = statistics.median(r["epoch_times_s"][1:])
        r["epoch_median_s"] = epoch
        r["ratio_to_plain"] = epoch / base
        r["startup_s"] = r["wall_s"] - sum(r["epoch_times_s"])
        print(f"{name:<24}{epoch:>18.3f}{epoch / base:>8.2f}{r['startup_s']:>12.1f}")
    ratio = runs["(b) raydl, 1 worker"]["ratio_to_plain"]
    print(f"target (b)/(a) <= {TARGET}: {'met' if ratio <= TARGET else 'not met'} ({ratio:.3f})")
    print("note: raydl's start-up includes each epoch's validation and the checkpoint at the "
          "end; (a) validates nothing.")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"epochs": args.epochs, "batch_size": args.batch_size,
                                         "runs": runs, "target": TARGET}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
