"""A heterogeneous ensemble on scikit-learn's digits (offline): raydl's CNN on the 8 px
images beside torchvision backbones trained from random weights at 32 px with ImageNet
normalization, each a whole `raydl.train` fit on 2 Ray Train workers; then each model's
and the ensemble's test accuracy (soft and hard vote) on the one held-out set.

    python benchmarks/ensemble_digits.py                     # cnn, resnet18, mobilenet_v3_small
    python benchmarks/ensemble_digits.py --members cnn resnet18 --epochs 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def member_overrides(arch: str, epochs: int) -> list[str]:
    """cnn_digits' data and split for every member; the backbones at 32 px."""
    common = ["log.tensorboard=false", f"train.epochs={epochs}", "checkpoint.keep=1"]
    if arch == "cnn":
        return common
    return common + [f"model.arch={arch}", "data.image_size=32", "train.lr=1e-3", "train.batch_size=32",
                     "train.schedule=cosine"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", nargs="+", default=["cnn", "resnet18", "mobilenet_v3_small"])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", default="runs/ensemble_digits")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from raydl.run import train
    from raydl.sl.evaluate import evaluate_classifiers, load_checkpoint

    runs = [train("cnn_digits", member_overrides(arch, args.epochs), out=args.out, progress=False, echo=False)
            for arch in args.members]
    models = [load_checkpoint(run.checkpoint) for run in runs]
    soft = evaluate_classifiers(models, how="soft")
    hard = evaluate_classifiers(models, how="hard")
    print(f"\n{soft['examples']} test digits, {args.epochs} epochs each")
    print(f"  {'member':<22}{'input':>12}{'test accuracy':>16}{'wall s':>9}")
    for arch, model, acc, run in zip(args.members, models, soft["accuracies"], runs):
        shape = "x".join(map(str, json.loads((model.directory / "data.json").read_text())["input_shape"]))
        print(f"  {arch:<22}{shape:>12}{acc:>16.4f}{run.wall_s:>9.0f}")
    best = max(soft["accuracies"])
    for name, report in (("soft vote", soft), ("hard vote", hard)):
        acc = report["ensemble_accuracy"]
        print(f"  {'ensemble, ' + name:<34}{acc:>16.4f}   ({acc / best:.3f}x the best member)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
