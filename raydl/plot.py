"""`raydl plot`: the curves of several runs (or of a Tune search's trials) in one figure.

A path is a run directory (its metrics.jsonl) or a search folder of `raydl tune` (each
trial's result.json). The metric defaults to the first run's headline metric; the x axis
to env steps where the rows have them, else epochs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raydl.errors import ConfigError
from raydl.metrics import read_jsonl, read_metrics

X_AXES = ("env_steps", "epoch", "iteration", "time_total_s")


def curves_of(path: Path) -> dict[str, list[dict[str, Any]]]:
    """{label: rows} of a run directory or of a search folder's trials."""
    if (path / "metrics.jsonl").is_file():
        return {path.name: read_metrics(path)}
    if (path / "raydl_tune.yaml").is_file():
        trials = sorted(p for p in path.iterdir() if (p / "result.json").is_file())
        return {"_".join(t.name.split("_")[:3]): read_jsonl(t / "result.json") for t in trials}
    raise ConfigError(f"{path}: not a run directory (no metrics.jsonl) or a search folder "
                      "(no raydl_tune.yaml)")


def _headline(path: Path) -> str | None:
    """The headline metric of a run's (or a search's) experiment."""
    from raydl import registry
    from raydl.config import load_experiment, read_yaml

    if (path / "config.yaml").is_file():
        return registry.headline(load_experiment(path / "config.yaml"))
    if (path / "raydl_tune.yaml").is_file():
        experiment = dict(read_yaml(path / "raydl_tune.yaml")["experiment"])
        experiment.pop("tune", None)
        return registry.headline(load_experiment(experiment))
    return None


def plot_runs(paths: list[Path], out: Path, metric: str | None = None, x: str | None = None) -> dict[str, tuple[list, list]]:
    """Draw `metric` against `x` for every run (or trial) of `paths` into `out` (PNG);
    returns {label: (xs, ys)} as drawn."""
    series: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        series.update(curves_of(path))
    metric = metric or _headline(paths[0]) or "episode_return_mean"
    rows_all = [r for rows in series.values() for r in rows]
    if not any(r.get(metric) is not None for r in rows_all):
        names = sorted({k for r in rows_all for k, v in r.items() if isinstance(v, (int, float))})
        raise ConfigError(f"--metric {metric}: in none of the runs; available: {', '.join(names)}")
    x = x or next((a for a in X_AXES if any(a in r for r in rows_all)), "iteration")
    drawn = {label: ([r.get(x) for r in rows if r.get(metric) is not None],
                     [r[metric] for r in rows if r.get(metric) is not None]) for label, rows in series.items()}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, (xs, ys) in drawn.items():
        ax.plot(xs, ys, label=label, linewidth=1.2)
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.stem + ".tmp.png")
        fig.savefig(tmp)
        tmp.replace(out)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write the plot: {exc.strerror}") from None
    finally:
        plt.close(fig)
    return drawn
