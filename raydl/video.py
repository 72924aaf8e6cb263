"""Episode recordings: MP4 through imageio's FFMPEG plugin (the imageio-ffmpeg wheel ships
its own ffmpeg binary, so no system ffmpeg is needed), animated GIF through Pillow, and
the GIF TensorBoard shows a video as."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from raydl.files import write_atomic

# libx264 with yuv420p needs even frame sides; imageio would otherwise round them up to a
# multiple of 16 and warn (CartPole renders 600 x 400).
_MACRO_BLOCK = 2


def mp4_bytes(frames: list[np.ndarray], fps: int) -> bytes:
    """H.264 MP4 of RGB frames (H, W, 3 uint8): made in memory, so a runner actor on
    another node can send its recording to the driver."""
    import imageio.v3 as iio

    return bytes(iio.imwrite("<bytes>", np.stack(frames), extension=".mp4", plugin="FFMPEG",
                             fps=fps, macro_block_size=_MACRO_BLOCK))


def read_mp4(path: Path) -> np.ndarray:
    """Every frame of an MP4, (T, H, W, 3) uint8."""
    import imageio.v3 as iio

    return np.asarray(iio.imread(path, plugin="FFMPEG", index=None))


def gif_bytes(frames: list[np.ndarray] | np.ndarray, fps: int, max_side: int = 0) -> bytes:
    """An endlessly looping animated GIF of RGB frames, each shrunk to at most `max_side`
    pixels a side (0: as they are)."""
    from PIL import Image

    images = [Image.fromarray(np.asarray(f)) for f in frames]
    if max_side and max(images[0].size) > max_side:
        scale = max_side / max(images[0].size)
        size = (max(1, round(images[0].width * scale)), max(1, round(images[0].height * scale)))
        images = [im.resize(size) for im in images]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, int(1000 / fps)), loop=0)
    return out.getvalue()


def write_video(frames: list[np.ndarray], path: Path, fps: int) -> None:
    """`path` as MP4 or GIF, by its suffix."""
    if path.suffix.lower() == ".gif":
        write_atomic(gif_bytes(frames, fps), path)
    else:
        write_atomic(mp4_bytes(frames, fps), path)
