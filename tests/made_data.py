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


def reviews(root: Path, per_label: int = 60, test_per_label: int = 20) -> Path:
    """IMDB-style train/ and test/ folders of pos and neg reviews: three filler words, one
    sentiment word that decides the label, the fillers again."""
    rng = np.random.default_rng(0)
    for label, words in (("pos", ["great", "superb", "fine"]), ("neg", ["awful", "dull", "poor"])):
        for split, n in (("train", per_label), ("test", test_per_label)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                filler = " ".join(rng.choice(["the", "film", "was", "plot", "and"], 3))
                (folder / f"{i}.txt").write_text(f"{filler} {rng.choice(words)} {filler}")
    return root


def write_vectors(path: Path, fmt: str, rows: dict[str, list[float]]) -> Path:
    """A word-vectors file as each tool writes it: GloVe (no header), word2vec text
    ("count dim" first), fastText .vec (the same header, a space closing every line)."""
    dim = len(next(iter(rows.values())))
    lines = [f"{w} " + " ".join(f"{v:g}" for v in vec) + (" " if fmt == "fasttext" else "")
             for w, vec in rows.items()]
    header = [] if fmt == "glove" else [f"{len(rows)} {dim}"]
    path.write_text("\n".join(header + lines) + "\n")
    return path
