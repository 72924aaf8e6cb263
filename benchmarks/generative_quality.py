"""Sample quality of raydl's generative experiments beside held-out real images (issue 6).

Runs each experiment with `raydl.train` (or reads finished runs with --runs) and prints,
for the last scored epoch, the classifier score / Frechet distance / class coverage of the
generated samples next to the same numbers for held-out real images, with their ratio.
The final sample grids are copied to docs/results/.

    python benchmarks/generative_quality.py                       # dcgan_digits, vae_digits
    python benchmarks/generative_quality.py --runs runs/dcgan_digits-... runs/vae_digits-...
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
    row = last_scored(run_dir)
    name = run_dir.name.rsplit("-", 2)[0]
    ratio = row["classifier_score"] / row["real_classifier_score"]
    print(f"\n{name} (epoch {row['epoch']}, {run_dir})")
    print(f"  {'':<22}{'generated':>12}{'real (held out)':>18}{'ratio':>8}")
    print(f"  {'classifier score':<22}{row['classifier_score']:>12.3f}{row['real_classifier_score']:>18.3f}{ratio:>8.3f}")
    print(f"  {'Frechet distance':<22}{row['frechet_distance']:>12.2f}{row['real_frechet_distance']:>18.2f}")
    print(f"  {'class coverage':<22}{row['class_coverage']:>12.2f}{row['real_class_coverage']:>18.2f}")
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
    return {name: summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", type=Path, help="finished run directories to read instead")
    parser.add_argument("--experiments", nargs="*", default=["dcgan_digits", "vae_digits"])
    parser.add_argument("--out", default="runs")
    args = parser.parse_args()
    runs = args.runs
    if not runs:
        from raydl.run import train

        runs = [train(name, out=args.out, progress=True).run_dir for name in args.experiments]
    results: dict[str, Any] = {}
    for run_dir in runs:
        results.update(report(run_dir))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "generative_quality.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
