"""Datasets for the supervised kinds, built inside each Ray Train worker.

Images: scikit-learn's `digits` (offline default), torchvision MNIST / FashionMNIST /
CIFAR-10 (downloaded into `data_dir` when `download: true` and online), and an image
folder (one sub-folder per class). Sequences: images read row by row ("sequential
digits / MNIST") for the LSTM classifier. Text: a character corpus (Python's
`pydoc_data.topics`, offline default, or any text file) for language models.

Every problem is a `DataError` (a `ConfigError`): one line naming what is missing and
where to put it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from raydl.errors import ConfigError
from raydl.sl.backbones import InputSpec
from raydl.sl.experiment import DOCUMENT_SOURCES, TORCHVISION, DataConfig



class DataError(ConfigError):
    """Data that cannot be found or read (exit code 2, one line)."""


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset | None
    num_classes: int
    input_shape: tuple[int, ...]
    mean: list[float] = field(default_factory=list)  # training-set pixel statistics,
    std: list[float] = field(default_factory=list)  # saved so one image can be prepared


def _split_indices(n: int, val: float, test: float, seed: int) -> tuple[np.ndarray, ...]:
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(round(n * test)), int(round(n * val))
    return order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]


class ImageTensors(Dataset):
    """uint8-or-float images (N, C, H, W) with labels, transformed per item."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Any = None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i]
        return (self.transform(x) if self.transform else x), self.labels[i]


def image_transform(cfg: DataConfig, mean: list[float], std: list[float], train: bool) -> Any:
    from torchvision.transforms import v2 as T

    steps: list[Any] = [T.ToImage(), T.ToDtype(torch.float32, scale=True)]
    if cfg.channels == 3:
        steps.append(T.Lambda(lambda x: x.expand(3, -1, -1) if x.shape[0] == 1 else x))
    elif cfg.channels == 1:
        steps.append(T.Grayscale(1))
    if cfg.image_size:
        steps.append(T.Resize((cfg.image_size, cfg.image_size), antialias=True))
    if train and cfg.augment:
        size = cfg.image_size or None
        steps.append(T.RandomCrop(size, padding=4) if size else T.Lambda(lambda x: x))
        if cfg.source == "cifar10":
            steps.append(T.RandomHorizontalFlip())
    if cfg.normalize:
        channels = 3 if cfg.channels == 3 and len(mean) == 1 else None
        steps.append(T.Normalize(mean * 3 if channels else mean, std * 3 if channels else std))
    if cfg.sequence:
        # (C, H, W) -> (H, C*W): one time step per image row
        steps.append(T.Lambda(lambda x: x.permute(1, 0, 2).reshape(x.shape[1], -1)))
    return T.Compose(steps)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: (images (N, 8, 8) of grey levels 0..16, labels).

    Read from the file scikit-learn ships (sklearn/datasets/data/digits.csv.gz) as its
    `load_digits` reads it: importing scikit-learn costs each Ray Train worker ~1.3 CPU-s
    for a 1,797-row file. `load_digits` itself where that file is not found;
    tests/unit/test_sl_data_models.py checks both give the same arrays."""
    spec = importlib.util.find_spec("sklearn")
    shipped = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" \
        if spec is not None and spec.submodule_search_locations else None
    if shipped is None or not shipped.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    data = np.loadtxt(shipped, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def _digits(cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = digits_arrays()
    # 0..16 grey levels -> uint8 0..255, (N, 1, 8, 8)
    pixels = torch.as_tensor((images * (255.0 / 16.0)).round().astype(np.uint8))
    return pixels.unsqueeze(1), torch.as_tensor(labels, dtype=torch.long)


def _torchvision(cfg: DataConfig, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION[cfg.source])
    root = Path(cfg.data_dir).expanduser()
    try:
        ds = cls(str(root), train=train, download=cfg.download)
    except RuntimeError as exc:  # "Dataset not found. You can use download=True ..."
        raise DataError(
            f"data.source: {cfg.source} is not in {root.resolve()} ({str(exc).splitlines()[0]}); "
            f"put torchvision's {TORCHVISION[cfg.source]} files there, or set data.download: "
            "true on a machine that is online"
        ) from None
    except OSError as exc:  # offline download
        raise DataError(
            f"data.source: cannot download {cfg.source} into {root.resolve()}: {exc}; put "
            f"torchvision's {TORCHVISION[cfg.source]} files there"
        ) from None
    data = torch.as_tensor(np.asarray(ds.data))
    images = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)
    return images.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)


def _folder(cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from PIL import Image

    root = Path(cfg.data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data.data_dir: {root} is not a directory (expected one sub-folder per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"data.data_dir: {root} has {len(classes)} class sub-folders; need >= 2")
    size = cfg.image_size or 64
    mode = "L" if cfg.channels == 1 else "RGB"
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() not in {".png", ".jpg", ".jpeg", ".bmp", ".gif"}:
                continue
            with Image.open(path) as img:
                arr = np.asarray(img.convert(mode).resize((size, size)))
            images.append(arr if arr.ndim == 3 else arr[..., None])
            labels.append(label)
    if not images:
        raise DataError(f"data.data_dir: no images (.png/.jpg/.bmp/.gif) under {root}")
    tensor = torch.as_tensor(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return tensor, torch.as_tensor(labels, dtype=torch.long), classes


def backbone_data(cfg: DataConfig, spec: InputSpec | None) -> DataConfig:
    """The data section as a torchvision backbone takes it: 3 channels (grey repeated), and
    its own input size unless `data.image_size` sets one."""
    if spec is None:
        return cfg
    return dataclasses.replace(cfg, channels=3, image_size=cfg.image_size or spec.size)


def image_splits(cfg: DataConfig, spec: InputSpec | None = None) -> Splits:
    """Train/validation/test splits of an image source, transforms attached; for a
    backbone (`spec`), at its input size and standardized with its own mean/std."""
    cfg = backbone_data(cfg, spec)
    if cfg.source == "digits" or cfg.source == "folder":
        if cfg.source == "digits":
            images, labels = _digits(cfg)
        else:
            images, labels, _ = _folder(cfg)
        train_idx, val_idx, test_idx = _split_indices(
            len(labels), cfg.val_fraction, cfg.test_fraction, cfg.seed
        )
        train_x, train_y = images[train_idx], labels[train_idx]
        parts = [(images[val_idx], labels[val_idx]), (images[test_idx], labels[test_idx])]
    else:
        train_x, train_y = _torchvision(cfg, train=True)
        test_x, test_y = _torchvision(cfg, train=False)
        train_idx, val_idx, _ = _split_indices(len(train_y), cfg.val_fraction, 0.0, cfg.seed)
        parts = [(train_x[val_idx], train_y[val_idx]), (test_x, test_y)]
        train_x, train_y = train_x[train_idx], train_y[train_idx]
    scaled = train_x.float() / 255.0
    mean = spec.mean if spec else scaled.mean(dim=(0, 2, 3)).tolist()
    std = spec.std if spec else scaled.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    train = ImageTensors(train_x, train_y, image_transform(cfg, mean, std, train=True))
    val_ds, test_ds = (
        ImageTensors(x, y, image_transform(cfg, mean, std, train=False)) for x, y in parts
    )
    num_classes = int(max(int(y.max()) for y in (train_y, *(p[1] for p in parts)) if len(y)) + 1)
    sample = train[0][0]
    return Splits(train, val_ds, test_ds if len(test_ds) else None, num_classes,
                  tuple(sample.shape), mean, std)


# ----------------------------------------------------------------------------- text


def check_data(cfg: DataConfig) -> None:
    """Fail on the driver, in one line, before any worker starts: the same checks the
    workers' loaders make (torchvision files present or downloadable, folder, text)."""
    if cfg.source in TORCHVISION:
        _torchvision(cfg, train=False)
    elif cfg.source == "folder":
        _folder(cfg)
    elif cfg.source == "text":
        folder = Path(cfg.text_file).expanduser() if cfg.text_file else None
        if folder is not None and folder.is_dir():
            _wikitext_parts(folder)
        else:
            read_corpus(cfg)
    elif cfg.source in DOCUMENT_SOURCES:
        read_documents(cfg)


def read_corpus(cfg: DataConfig) -> str:
    """The text of `text_file`, or Python's own pydoc topics (465 KB of English)."""
    if not cfg.text_file:
        from pydoc_data.topics import topics

        return "\n".join(topics[k] for k in sorted(topics))
    path = Path(cfg.text_file).expanduser()
    if not path.is_file():
        raise DataError(f"data.text_file: {path} does not exist")
    return path.read_text(encoding="utf-8", errors="replace")


class CharVocab:
    """Characters <-> ids; saved next to every checkpoint so sampling uses the same map."""

    def __init__(self, chars: list[str]) -> None:
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def build(cls, text: str) -> CharVocab:
        return cls(sorted(set(text)))

    def encode(self, text: str) -> torch.Tensor:
        # Characters never seen in training map to id 0 (a rare-character bucket).
        return torch.tensor([self.index.get(c, 0) for c in text], dtype=torch.long)

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def encode_text(self, text: str) -> torch.Tensor:
        return self.encode(text)

    def __len__(self) -> int:
        return len(self.chars)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"chars": self.chars}))

    @classmethod
    def load(cls, path: Path) -> CharVocab:
        return cls(json.loads(path.read_text())["chars"])


@dataclass
class TextSplits:
    train: torch.Tensor  # token ids, one long stream
    val: torch.Tensor
    test: torch.Tensor
    vocab: CharVocab | WordVocab


WIKITEXT_FILES = ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens")


def _wikitext_parts(folder: Path) -> list[str]:
    missing = [f for f in WIKITEXT_FILES if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"data.text_file: {folder} is a directory but has no {', '.join(missing)} "
            "(WikiText layout: wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens)"
        )
    return [(folder / f).read_text(encoding="utf-8", errors="replace") for f in WIKITEXT_FILES]


def words(text: str) -> list[str]:
    """Whitespace tokens with an <eos> closing every non-empty line (WikiText's convention)."""
    out: list[str] = []
    for line in text.splitlines():
        tokens = line.split()
        if tokens:
            out += tokens + ["<eos>"]
    return out


def text_splits(cfg: DataConfig) -> TextSplits:
    """Train / validation / test token streams: a WikiText-style directory's three files,
    or contiguous stretches of one corpus (in that order). Characters or words
    (`level`); the vocabulary comes from the training part only."""
    folder = Path(cfg.text_file).expanduser() if cfg.text_file else None
    if folder is not None and folder.is_dir():
        parts = _wikitext_parts(folder)
    else:
        text = read_corpus(cfg)
        n = len(text)
        n_test, n_val = int(n * cfg.test_fraction), int(n * cfg.val_fraction)
        parts = [text[: n - n_val - n_test], text[n - n_val - n_test : n - n_test], text[n - n_test :]]
    if cfg.level == "word":
        tokens = [words(p) for p in parts]
        vocab: CharVocab | WordVocab = WordVocab.build([tokens[0]], cfg.max_vocab)
        streams = [vocab.encode(t) for t in tokens]
    else:
        vocab = CharVocab.build(parts[0])
        streams = [vocab.encode(p) for p in parts]
    return TextSplits(*streams, vocab)


def bptt_batches(stream: torch.Tensor, batch_size: int, seq_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Truncated-BPTT windows: the stream cut into `batch_size` parallel rows; window k
    of every row continues window k-1, so the LSTM state can be carried across them."""
    rows = (len(stream) - 1) // batch_size
    if rows < 2:
        return []
    x = stream[: rows * batch_size].view(batch_size, rows)
    y = stream[1 : rows * batch_size + 1].view(batch_size, rows)
    return [(x[:, i : i + seq_len], y[:, i : i + seq_len]) for i in range(0, rows, seq_len)]


# ----------------------------------------------------------------------------- documents

PAD, UNK = 0, 1
_WORD = re.compile(r"[a-z0-9']+|[^a-z0-9'\s]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks (HTML line breaks, as in IMDB, dropped)."""
    return _WORD.findall(text.lower().replace("<br />", " "))


def read_documents(cfg: DataConfig) -> tuple[list[str], list[str], list[str], list[str]]:
    """(train texts, train labels, test texts, test labels). A text folder holds one
    sub-folder of .txt files per label, or `train/` and `test/` each laid out so (the
    IMDB layout: aclImdb/train/pos/*.txt); a CSV has `text` and `label` columns."""
    if cfg.source == "csv":
        import csv

        path = Path(cfg.csv_file or "").expanduser()
        if not cfg.csv_file or not path.is_file():
            raise DataError(f"data.csv_file: {cfg.csv_file!r} is not a file (a CSV with text and label columns)")
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
                raise DataError(f"data.csv_file: {path} needs columns text and label, has {reader.fieldnames}")
            rows = [(r["text"], r["label"]) for r in reader]
        return [t for t, _ in rows], [lab for _, lab in rows], [], []
    root = Path(cfg.data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data.data_dir: {root} is not a directory (one sub-folder of .txt files per label)")

    def labelled(folder: Path) -> tuple[list[str], list[str]]:
        texts, labels = [], []
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            for f in sorted(sub.glob("*.txt")):
                texts.append(f.read_text(encoding="utf-8", errors="replace"))
                labels.append(sub.name)
        return texts, labels

    if (root / "train").is_dir() and (root / "test").is_dir():
        train, test = labelled(root / "train"), labelled(root / "test")
    else:
        train, test = labelled(root), ([], [])
    if len(set(train[1])) < 2:
        raise DataError(f"data.data_dir: {root} has {len(set(train[1]))} labels with .txt files; need >= 2")
    return train[0], train[1], test[0], test[1]


class WordVocab:
    """The `max_vocab` most frequent training words; 0 pads, 1 is any other word."""

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, texts: list[list[str]], size: int) -> WordVocab:
        counts = Counter(t for tokens in texts for t in tokens)
        return cls(["<pad>", "<unk>"] + [w for w, _ in counts.most_common(size - 2)])

    def encode(self, tokens: list[str]) -> torch.Tensor:
        return torch.tensor([self.index.get(t, UNK) for t in tokens] or [UNK], dtype=torch.long)

    def encode_text(self, text: str) -> torch.Tensor:
        return self.encode(text.split())

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.words[i] for i in ids)

    def __len__(self) -> int:
        return len(self.words)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"words": self.words}))

    @classmethod
    def load(cls, path: Path) -> WordVocab:
        return cls(json.loads(path.read_text())["words"])


class Documents(Dataset):
    """Encoded documents (variable length) with integer labels."""

    def __init__(self, docs: list[torch.Tensor], labels: list[int]) -> None:
        self.docs, self.labels = docs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.docs[i], self.labels[i]


def pad_batch(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(padded token ids (B, T), lengths (B,), labels (B,)): what packed LSTMs need."""
    docs, labels = zip(*batch)
    lengths = torch.tensor([len(d) for d in docs])
    padded = torch.full((len(docs), int(lengths.max())), PAD, dtype=torch.long)
    for i, d in enumerate(docs):
        padded[i, : len(d)] = d
    return padded, lengths, torch.tensor(labels, dtype=torch.long)


@dataclass
class DocumentSplits:
    train: Documents
    val: Documents
    test: Documents | None
    vocab: WordVocab
    labels: list[str]


def document_splits(cfg: DataConfig) -> DocumentSplits:
    """Tokenized, encoded train/validation/test documents; the vocabulary and the label
    order come from the training part only."""
    train_x, train_y, test_x, test_y = read_documents(cfg)
    labels = sorted(set(train_y))
    tokens = [tokenize(t)[: cfg.max_tokens] for t in train_x]
    test_share = 0.0 if test_x else cfg.test_fraction
    train_idx, val_idx, test_idx = _split_indices(len(tokens), cfg.val_fraction, test_share, cfg.seed)
    vocab = WordVocab.build([tokens[i] for i in train_idx], cfg.max_vocab)
    label_id = {lab: i for i, lab in enumerate(labels)}

    def docs(idx: Any, toks: list[list[str]], ys: list[str]) -> Documents:
        keep = [i for i in idx if ys[i] in label_id]
        return Documents([vocab.encode(toks[i]) for i in keep], [label_id[ys[i]] for i in keep])

    if test_x:
        test_tokens = [tokenize(t)[: cfg.max_tokens] for t in test_x]
        test = docs(range(len(test_x)), test_tokens, test_y)
    else:
        test = docs(test_idx, tokens, train_y)
    return DocumentSplits(docs(train_idx, tokens, train_y), docs(val_idx, tokens, train_y),
                          test if len(test) else None, vocab, labels)


def shard(dataset: Dataset, rank: int, world: int) -> Dataset:
    """Every world-th example from `rank` on: an exact split for evaluation (no padding
    or duplicates, unlike DistributedSampler)."""
    return Subset(dataset, list(range(rank, len(dataset), world)))  # type: ignore[arg-type]


__all__ = ["DataConfig", "DataError", "Splits", "image_splits", "text_splits", "CharVocab",
           "bptt_batches", "shard", "TensorDataset"]


def load_vocab(path: Path) -> CharVocab | WordVocab:
    """A vocabulary saved by CharVocab.save or WordVocab.save."""
    data = json.loads(path.read_text())
    return CharVocab(data["chars"]) if "chars" in data else WordVocab(data["words"])
