"""Sample quality of raydl's generative experiments beside held-out real images (issue 6).

Runs each experiment with `raydl.train` (or reads finished runs with --runs) and prints,
for the last scored epoch, the classifier score / Frechet distance / class coverage of the
generated samples next to the same numbers for held-out real images, with their ratio
(and, for a class-conditional GAN, the share of samples the scorer puts in the class they
were drawn as). The final sample grids are copied to docs/results/; the figures are
merged into docs/results/generative_quality.json under each run's name (a conditional
GAN's with `_conditional`).

    python benchmarks/generative_quality.py                       # dcgan_digits, vae_digits
    python benchmarks/generative_quality.py --runs runs/dcgan_digits-... runs/vae_digits-...
    python benchmarks/generative_quality.py --experiments dcgan_digits --set model.conditional=false
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"


def last_scored(run_dir: Path) -> dict[str, Any]:
    from raydl.metrics import read_metrics

    rows = [r for r in read_metrics(run_dir) if "classifier_score" in r]
    if not rows:
        raise SystemExit(f"{run_dir}: no scored epoch in metrics.jsonl")
    return rows[-1]


def report(run_dir: Path) -> dict[str, Any]:
    from raydl.config import load_experiment

    row = last_scored(run_dir)
    cfg = load_experiment(run_dir / "config.yaml")
    conditional = cfg.kind == "gan" and cfg.model.conditional
    name = run_dir.name.rsplit("-", 2)[0] + ("_conditional" if conditional else "")
    ratio = row["classifier_score"] / row["real_classifier_score"]
    print(f"\n{name} (epoch {row['epoch']}, {run_dir})")
    print(f"  {'':<22}{'generated':>12}{'real (held out)':>18}{'ratio':>8}")
    print(f"  {'classifier score':<22}{row['classifier_score']:>12.3f}{row['real_classifier_score']:>18.3f}{ratio:>8.3f}")
    print(f"  {'Frechet distance':<22}{row['frechet_distance']:>12.2f}{row['real_frechet_distance']:>18.2f}")
    print(f"  {'class coverage':<22}{row['class_coverage']:>12.2f}{row['real_class_coverage']:>18.2f}")
    if "label_accuracy" in row:
        print(f"  {'asked class drawn':<22}{row['label_accuracy']:>12.3f}")
    grid = run_dir / "samples" / f"epoch_{row['epoch']:06d}.png"
    if grid.is_file():
        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(grid, RESULTS / f"{name}_samples.png")
    recon = run_dir / "reconstructions" / f"epoch_{row['epoch']:06d}.png"
    if recon.is_file():
        shutil.copy(recon, RESULTS / f"{name}_reconstructions.png")
    summary = {k: row[k] for k in ("epoch", "classifier_score", "real_classifier_score", "frechet_distance",
                                   "real_frechet_distance", "class_coverage", "real_class_coverage")}
    summary["ratio"] = ratio
    if "label_accuracy" in row:
        summary["label_accuracy"] = row["label_accuracy"]
    return {name: summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", type=Path, help="finished run directories to read instead")
    parser.add_argument("--experiments", nargs="*", default=["dcgan_digits", "vae_digits"])
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="overrides for every experiment run")
    parser.add_argument("--out", default="runs")
    args = parser.parse_args()
    runs = args.runs
    if not runs:
        from raydl.run import train

        runs = [train(name, args.overrides, out=args.out, progress=True).run_dir for name in args.experiments]
    out = RESULTS / "generative_quality.json"
    results: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    for run_dir in runs:
        results.update(report(run_dir))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
