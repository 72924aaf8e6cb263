"""Pretrained word vectors for the word-level text models (`model.embeddings_file`).

Three text formats, told apart by the first line: word2vec's text format and fastText's
`.vec` open with a "count dim" header line, GloVe has none (every line is a word and its
numbers); any of them may be gzipped (`.gz`). The task's vocabulary is aligned to the
file row by row: a word takes the file's vector for the same word, else (a case-
insensitive fallback) the first file word equal to it in lower case; `<pad>` (id 0) is
zero; every other word starts random with the scale (standard deviation) of the vectors
found. `model.freeze_embeddings` keeps the table fixed during training.

The check step reads the first lines only (format, dimension against `model.embedding`);
the workers read the whole file and keep the vocabulary's rows. Without torch at import:
the check step imports this module.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from raydl.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

KEY = "model.embeddings_file"
SPECIALS = 2  # <pad> and <unk>, ids 0 and 1 of every WordVocab: never looked up


@dataclass(frozen=True)
class VectorsFile:
    """What the first lines of an embeddings file say about it."""

    path: Path
    format: str  # "glove", or "word2vec" (word2vec text and fastText .vec: a header line)
    dim: int
    header: bool


@dataclass
class Alignment:
    """A vocabulary's embedding table and what the file covered of it."""

    matrix: np.ndarray  # (vocab, dim) float32
    found: np.ndarray  # (vocab,) bool: the row came from the file
    scale: float  # std of the vectors found: the random rows' scale

    def coverage(self, training_ids: np.ndarray) -> dict[str, float]:
        """Shares of the vocabulary (specials aside) and of the training tokens whose
        vectors came from the file."""
        counts = np.bincount(training_ids, minlength=len(self.found)).astype(np.float64)
        words = max(len(self.found) - SPECIALS, 1)
        return {"embeddings_words_found": int(self.found.sum()),
                "embeddings_vocab_coverage": float(self.found.sum()) / words,
                "embeddings_token_coverage": float(counts[self.found].sum() / max(counts.sum(), 1.0))}


def _open(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")  # noqa: SIM115 - the caller closes it


def _garbled(path: Path, line: int, why: str) -> ConfigError:
    return ConfigError(f"{KEY}: {path} line {line}: {why}; expected GloVe, word2vec text or fastText .vec lines")


def _numbers(path: Path, line: int, fields: list[str]) -> np.ndarray:
    try:
        return np.array(fields, dtype=np.float32)
    except ValueError:
        bad = next(f for f in fields if not _is_number(f))
        raise _garbled(path, line, f"{bad[:20]!r} is not a number") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def probe(path_text: str) -> VectorsFile:
    """The format and dimension of an embeddings file, from its first two lines; a
    missing, empty, binary or garbled file is one ConfigError."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ConfigError(f"{KEY}: {path} does not exist (GloVe, word2vec text or fastText .vec file)")
    try:
        with _open(path) as fh:
            first, second = fh.readline(), fh.readline()
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise ConfigError(f"{KEY}: {path} is not a text file of word vectors ({type(exc).__name__}); "
                          "word2vec's binary format is not read: save it as text") from None
    fields = first.split()
    if not fields:
        raise ConfigError(f"{KEY}: {path} is empty")
    header = len(fields) == 2 and all(f.isdigit() for f in fields)
    dim = int(fields[1]) if header else len(fields) - 1
    row = second.split() if header else fields
    if dim < 1 or len(row) != dim + 1:
        raise _garbled(path, 2 if header else 1, f"{len(row)} fields where a word and {dim} numbers belong")
    _numbers(path, 2 if header else 1, row[1:])
    return VectorsFile(path, "word2vec" if header else "glove", dim, header)


def check_embeddings(path_text: str, embedding: int) -> VectorsFile:
    """The check step: the file reads, and its vectors have `model.embedding` numbers."""
    info = probe(path_text)
    if info.dim != embedding:
        raise ConfigError(f"model.embedding: {embedding}, but {KEY} {info.path} holds {info.dim}-number "
                          f"vectors; set model.embedding: {info.dim}")
    return info


def read_vectors(info: VectorsFile, words: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(exact, lower): the file's vectors of `words`, and of their lower-case forms keyed
    by the lower-cased file word (its first, most frequent, spelling). Only those rows
    are parsed."""
    exact_wanted, lower_wanted = set(words), {w.lower() for w in words}
    exact: dict[str, np.ndarray] = {}
    lower: dict[str, np.ndarray] = {}
    with _open(info.path) as fh:
        if info.header:
            fh.readline()
        for number, line in enumerate(fh, start=2 if info.header else 1):
            word, _, rest = line.partition(" ")
            folded = word.lower()
            take_exact, take_lower = word in exact_wanted and word not in exact, \
                folded in lower_wanted and folded not in lower
            if not (take_exact or take_lower):
                continue
            fields = rest.split()
            if len(fields) > info.dim:
                continue  # a file word with spaces in it (GloVe 840B has some): never a vocabulary word
            if len(fields) < info.dim:
                raise _garbled(info.path, number, f"{len(fields)} numbers where {info.dim} belong")
            vector = _numbers(info.path, number, fields)
            if take_exact:
                exact[word] = vector
            if take_lower:
                lower[folded] = vector
    return exact, lower


def align(info: VectorsFile, words: list[str], seed: int) -> Alignment:
    """The embedding table of vocabulary `words` (id = position): file rows where the
    file has the word, `<pad>` zero, the rest N(0, std of the rows found)."""
    exact, lower = read_vectors(info, words[SPECIALS:])
    matrix = np.zeros((len(words), info.dim), dtype=np.float32)
    found = np.zeros(len(words), dtype=bool)
    for i, word in enumerate(words[SPECIALS:], start=SPECIALS):
        vector = exact.get(word)
        if vector is None:
            vector = lower.get(word.lower())
        if vector is not None:
            matrix[i], found[i] = vector, True
    if not found.any():
        raise ConfigError(f"{KEY}: {info.path} has none of the {len(words) - SPECIALS:,} vocabulary "
                          "words (another language, or another tokenization?)")
    scale = float(matrix[found].std())
    rng = np.random.default_rng(seed)
    missing = ~found
    missing[0] = False  # <pad> stays zero
    matrix[missing] = rng.normal(0.0, scale, (int(missing.sum()), info.dim)).astype(np.float32)
    return Alignment(matrix, found, scale)


def load_pretrained(embed: nn.Embedding, words: list[str], training_ids: torch.Tensor, path_text: str,
                    freeze: bool, seed: int) -> tuple[dict[str, float], str]:
    """Fill `embed` with the file's vectors for vocabulary `words` (frozen on request):
    (coverage metrics, the line that reports them)."""
    import torch

    info = check_embeddings(path_text, embed.embedding_dim)
    table = align(info, words, seed)
    with torch.no_grad():
        embed.weight.copy_(torch.from_numpy(table.matrix))
    embed.weight.requires_grad_(not freeze)
    coverage = table.coverage(training_ids.numpy())
    line = (f"{info.path.name} ({info.format} format, {info.dim} numbers): "
            f"{coverage['embeddings_words_found']:,} of {len(words) - SPECIALS:,} vocabulary words "
            f"({coverage['embeddings_vocab_coverage']:.1%}), {coverage['embeddings_token_coverage']:.1%} "
            f"of training tokens; the rest start random (std {table.scale:.3g})"
            + ("; frozen" if freeze else "; fine-tuned"))
    return coverage, line

