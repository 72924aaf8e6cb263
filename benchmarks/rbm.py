"""RBM kinds' accuracy: raydl's RBM features beside scikit-learn's, the DBN, the CF-RBM.

(a) rbm_digits: raydl's Bernoulli RBM (2 Ray Train workers) against scikit-learn's
    Pipeline(BernoulliRBM, LogisticRegression) on the same images and split (the 70/15/15
    split of raydl's digits, pixels / 16), the same hyperparameters (100 hidden units,
    PCD-1, learning rate 0.06, 10 examples per update (5 per worker on raydl's side), 20
    epochs; LogisticRegression(C=6000, solver newton-cg, tol 1e-6) on the hidden
    probabilities of the training images). Test accuracy per seed, means and their ratio.
    One difference stays: raydl starts the visible biases at log p/(1-p) of the data
    (Hinton's guide, section 8), scikit-learn at 0.
(b) dbn_digits as shipped: test accuracy per seed, beside a logistic regression on the
    raw pixels (C=100, as scikit-learn's RBM example has it).
(c) rbm_movielens on made-up ratings with a planted rank-3 taste structure (300 users x
    200 items, 10% observed, 1..5 stars; raydl.rbm.ratings.planted_ratings): held-out
    RMSE against the item-mean baseline's, 60 epochs, 8 users per worker per batch.

    python benchmarks/rbm.py                     # all three, seeds 0 1 2
    python benchmarks/rbm.py --parts a --seeds 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
QUIET = ["log.tensorboard=false", "log.curve=false", "log.progress=false"]


def _raydl(name: str, overrides: list[str], out: Path) -> dict[str, Any]:
    from raydl.run import train

    return train(name, QUIET + overrides, out=out, progress=False, echo=False).metrics


def _images() -> Any:
    from raydl.config import load_experiment
    from raydl.rbm.tasks import flat_images

    return flat_images(load_experiment("rbm_digits").data)


def _sklearn_rbm(images: Any, seed: int) -> float:
    """scikit-learn's BernoulliRBM + LogisticRegression with rbm_digits' settings."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import BernoulliRBM
    from sklearn.pipeline import Pipeline

    model = Pipeline([
        ("rbm", BernoulliRBM(n_components=100, learning_rate=0.06, batch_size=10, n_iter=20, random_state=seed)),
        ("logistic", LogisticRegression(C=6000, solver="newton-cg", tol=1e-6, max_iter=1000)),
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(images.x["train"].numpy(), images.y["train"].numpy())
    return float(model.score(images.x["test"].numpy(), images.y["test"].numpy()))


def _raw_pixels(images: Any) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=100, solver="newton-cg", tol=1e-6, max_iter=1000)
    clf.fit(images.x["train"].numpy(), images.y["train"].numpy())
    return float(clf.score(images.x["test"].numpy(), images.y["test"].numpy()))


def part_a(seeds: list[int], out: Path) -> dict[str, Any]:
    images = _images()
    overrides = ["train.epochs=20", "score.every=0"]  # rbm_digits as shipped, scored once
    ours = [_raydl("rbm_digits", overrides + [f"seed={s}"], out)["test_accuracy"] for s in seeds]
    theirs = [_sklearn_rbm(images, s) for s in seeds]
    mean_ours, mean_theirs = statistics.mean(ours), statistics.mean(theirs)
    print("\n(a) RBM features + logistic regression, digits test accuracy")
    print(f"  {'seed':<6}{'raydl (2 workers)':>20}{'scikit-learn':>16}")
    for s, a, b in zip(seeds, ours, theirs):
        print(f"  {s:<6}{a:>20.4f}{b:>16.4f}")
    print(f"  {'mean':<6}{mean_ours:>20.4f}{mean_theirs:>16.4f}   ratio raydl / scikit-learn {mean_ours / mean_theirs:.3f}")
    return {"raydl": ours, "sklearn": theirs, "ratio": mean_ours / mean_theirs}


def part_b(seeds: list[int], out: Path) -> dict[str, Any]:
    raw = _raw_pixels(_images())
    runs = [_raydl("dbn_digits", [f"seed={s}"], out) for s in seeds]
    tests = [m["test_accuracy"] for m in runs]
    print("\n(b) DBN (dbn_digits), digits test accuracy")
    for s, m in zip(seeds, runs):
        print(f"  seed {s}: test {m['test_accuracy']:.4f} (val {m['val_accuracy']:.4f})")
    mean = statistics.mean(tests)
    print(f"  mean {mean:.4f}; logistic regression on raw pixels {raw:.4f} (ratio {mean / raw:.3f})")
    return {"dbn": tests, "raw_pixels": raw, "ratio": mean / raw}


def part_c(seeds: list[int], out: Path) -> dict[str, Any]:
    from raydl.rbm.ratings import planted_ratings, write_udata

    print("\n(c) CF-RBM on planted rank-3 ratings (300 users x 200 items, 10% observed), RMSE")
    print(f"  {'seed':<6}{'val':>8}{'item means':>12}{'test':>8}{'item means':>12}{'ratio':>8}")
    rows = []
    for s in seeds:
        ratings = write_udata(out / f"planted_{s}" / "u.data", planted_ratings(300, 200, 3, 0.1, seed=s))
        m = _raydl("rbm_movielens", [f"data.ratings_file={ratings}", "train.epochs=60", "train.batch_size=8",
                                     f"seed={s}"], out)
        ratio = m["test_rmse"] / m["baseline_test_rmse"]
        rows.append({k: m[k] for k in ("val_rmse", "baseline_val_rmse", "test_rmse", "baseline_test_rmse")})
        print(f"  {s:<6}{m['val_rmse']:>8.4f}{m['baseline_val_rmse']:>12.4f}{m['test_rmse']:>8.4f}"
              f"{m['baseline_test_rmse']:>12.4f}{ratio:>8.3f}")
    return {"runs": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="abc", help="which parts to run: any of a, b, c")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--json", type=Path, default=RESULTS / "rbm.json")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    parts = {"a": part_a, "b": part_b, "c": part_c}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.parts:
            results[name] = parts[name](args.seeds, Path(tmp))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(args.json.read_text()) if args.json.is_file() else {}
    args.json.write_text(json.dumps({**earlier, **results}, indent=1))  # parts not rerun are kept
    return 0


if __name__ == "__main__":
    sys.exit(main())
