"""Metric sinks of a run: metrics.jsonl, TensorBoard events, curve.png, progress line."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Protocol, TextIO

from raydl.files import write_atomic

METRICS_FILE = "metrics.jsonl"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file up to the first torn one (none if it is absent)."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
    return rows


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All rows of a run's metrics.jsonl (a torn last line is ignored)."""
    return read_jsonl(run_dir / METRICS_FILE)


VIDEO_KEY = "eval_video"  # a row's video file, relative to the run directory
VIDEO_DIR = "videos"  # where the run directory keeps evaluations' videos
TB_VIDEO_SIDE = 240  # TensorBoard videos are GIFs in memory: keep them small


class RowSink(Protocol):
    """Where rows go besides the run's files: the experiment trackers (raydl.trackers)."""

    def start(self, kept: list[dict[str, Any]]) -> None:
        """Once, with the rows metrics.jsonl holds before the first new one."""

    def log(self, row: dict[str, Any]) -> None:
        """Each new row."""

    def artifact(self, path: Path, name: str) -> None:
        """Each checkpoint written."""

    def close(self) -> None:
        """When the writer closes."""


class MetricsWriter:
    """Appends one JSON line per iteration, mirrors numbers to TensorBoard and to the
    experiment trackers, plots."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, curve: bool = True,
                 trackers: RowSink | None = None) -> None:
        self.run_dir = run_dir
        self.path = run_dir / METRICS_FILE
        self.curve = curve
        self.trackers = trackers
        self.started = False  # whether the trackers have been given the kept rows
        self.tb: Any = self._open_tensorboard() if tensorboard else None
        self.fh: TextIO = open(self.path, "a")

    def _open_tensorboard(self, purge_step: int | None = None) -> Any:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=purge_step)

    @staticmethod
    def step(metrics: dict[str, Any]) -> int:
        """A row's TensorBoard step: its env steps (stepped kinds), else its iteration."""
        return int(metrics.get("env_steps") or metrics.get("iteration") or 0)

    def truncate_after(self, iteration: int) -> None:
        """On resume: drop rows written after the checkpoint, so no step appears twice,
        in metrics.jsonl and in TensorBoard (TensorBoard's own purge_step: its readers
        hide every earlier event at or past the first step written again)."""
        self.fh.close()
        rows = [r for r in read_metrics(self.run_dir) if r.get("iteration", 0) <= iteration]
        write_atomic("".join(json.dumps(r) + "\n" for r in rows), self.path)
        self.fh = open(self.path, "a")
        if self.tb is not None:
            self.tb.close()
            self.tb = self._open_tensorboard(purge_step=max((self.step(r) for r in rows), default=-1) + 1)
        self.begin(rows)

    def begin(self, kept: list[dict[str, Any]] | None = None) -> None:
        """Start the trackers (once) with the rows the run keeps, by default those the
        file holds now; before the first new row at the latest."""
        if self.trackers is not None and not self.started:
            self.trackers.start(read_metrics(self.run_dir) if kept is None else kept)
        self.started = True

    def write(self, metrics: dict[str, Any]) -> None:
        self.begin()
        self.fh.write(json.dumps(metrics) + "\n")
        self.fh.flush()
        if self.trackers is not None:
            self.trackers.log(metrics)
        if self.tb is not None:
            step = self.step(metrics)
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    if math.isfinite(value):
                        self.tb.add_scalar(key, value, step)
            if isinstance(metrics.get(VIDEO_KEY), str):
                self._add_video(VIDEO_KEY, self.run_dir / metrics[VIDEO_KEY], step)

    def _add_video(self, tag: str, path: Path, step: int) -> None:
        """A row's video file as TensorBoard shows videos: an animated GIF in an image
        summary (what SummaryWriter.add_video writes; its own encoder needs moviepy 1.x)."""
        import imageio.v3 as iio
        from tensorboard.compat.proto.summary_pb2 import Summary

        from raydl.video import gif_bytes, read_mp4

        frames = read_mp4(path)
        fps = int(round(iio.immeta(path, plugin="FFMPEG").get("fps", 30)))
        gif = gif_bytes(frames, fps, max_side=TB_VIDEO_SIDE)
        height, width = frames.shape[1:3]
        scale = min(1.0, TB_VIDEO_SIDE / max(height, width))
        image = Summary.Image(height=round(height * scale), width=round(width * scale),
                              colorspace=3, encoded_image_string=gif)
        self.tb._get_file_writer().add_summary(
            Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def plot(self, y: str, x: str = "env_steps") -> Path | None:
        """Write curve.png of `y` against `x` from the whole metrics file."""
        if not self.curve:
            return None
        rows = [r for r in read_metrics(self.run_dir) if r.get(y) is not None]
        if not rows:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        ax.plot([r.get(x, r.get("iteration")) for r in rows], [r[y] for r in rows])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(self.run_dir.name, fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out = self.run_dir / "curve.png"
        tmp = self.run_dir / "curve.tmp.png"
        fig.savefig(tmp)
        plt.close(fig)
        tmp.replace(out)
        return out

    def artifact(self, path: Path, name: str) -> None:
        """A checkpoint just written, for the trackers that keep checkpoints."""
        if self.trackers is not None:
            self.trackers.artifact(path, name)

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()
        if self.trackers is not None:
            self.trackers.close()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """A live progress line: a tqdm bar on a terminal, a line every few seconds otherwise.

    Shows steps, steps/s, the headline metric and an ETA from the step budget."""

    def __init__(
        self,
        total: int,
        unit: str,
        headline: str,
        enabled: bool = True,
        stream: TextIO = sys.stderr,
        every_s: float = 10.0,
        start_done: int = 0,
    ) -> None:
        self.total = total
        self.unit = unit
        self.headline = headline
        self.enabled = enabled
        self.stream = stream
        self.every_s = every_s
        self.start = time.monotonic()
        self.last_print = 0.0
        self.start_done = start_done  # a resumed run's rate counts only its own steps
        self.bar = None
        if enabled and stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total or None, initial=start_done, unit=f" {unit}", file=stream,
                dynamic_ncols=True,
            )

    def update(self, done: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        value = metrics.get(self.headline)
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix_str(f"{self.headline}={_fmt(value)}", refresh=True)
            return
        now = time.monotonic()
        if now - self.last_print < self.every_s:
            return
        self.last_print = now
        elapsed = now - self.start
        rate = (done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 and self.total else None
        line = (
            f"[{_fmt_time(elapsed)}] {self.unit} {done:,}"
            + (f"/{self.total:,}" if self.total else "")
            + (f" | {rate:,.0f} {self.unit}/s" if rate >= 1 or rate == 0 else
               f" | {1 / rate:,.1f} s per {self.unit.rstrip('s')}")
            + f" | {self.headline} {_fmt(value)}"
            + (f" | ETA {_fmt_time(eta)}" if eta is not None else "")
        )
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
