"""Data files made inside tests: torchvision's raw MNIST format and image folders."""

import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file, as torchvision's MNIST reads from MNIST/raw."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def image_folder(root: Path, per_class: int = 24) -> Path:
    """Two classes of 32x32 RGB PNGs: a bright horizontal or vertical bar on noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(["horizontal", "vertical"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
            if label == 0:
                img[12:20, :, :] = 255
            else:
                img[:, 12:20, :] = 255
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root
