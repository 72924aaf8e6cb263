"""MovieLens ratings for `cf_rbm`, read without torch (the check step reads them too).

Two formats, told apart by the first line:
- ML-100K's `u.data`: `user TAB item TAB rating TAB timestamp`, no header;
- ML-latest's `ratings.csv`: the header `userId,movieId,rating,timestamp`, then rows.

The RBM's visible units are softmaxes over K = 5 values, 1 to 5 stars. ML-latest's half
stars are rounded up to whole ones (0.5 -> 1, 3.5 -> 4): a rating is kept as the whole
star it reaches, so no rating is lost and the values stay those of ML-100K. Anything
else (6 stars, 2.25, 0) is a one-line error naming the line.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raydl.errors import ConfigError

STARS = 5  # K: the softmax visible units' values are 1..STARS stars
CSV_HEADER = "userId,movieId,rating,timestamp"
FORMATS = f"ML-100K's u.data (user<TAB>item<TAB>rating<TAB>timestamp) or ML-latest's ratings.csv (header {CSV_HEADER})"


@dataclass(frozen=True)
class Ratings:
    """Ratings as parallel arrays: user and item indices (0-based, in the order of their
    sorted ids), stars 1..5; `user_ids` / `item_ids` map indices back to the file's ids."""

    users: np.ndarray
    items: np.ndarray
    stars: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.stars)


@dataclass(frozen=True)
class RatingSplits:
    """Indices into a `Ratings` of its training, validation and test ratings."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _format(path: Path) -> tuple[str, int]:
    """(delimiter, header lines) of a ratings file, from its first line."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline().decode("utf-8", errors="replace").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"data.ratings_file: {path} not found; put MovieLens ratings there (ML-100K's u.data "
            f"from ml-100k.zip, or ML-latest's ratings.csv) or set data.ratings_file") from None
    except OSError as exc:
        raise ConfigError(f"data.ratings_file: cannot read {path}: {exc.strerror}") from None
    if first.replace(" ", "").lower() == CSV_HEADER.lower():
        return ",", 1
    if len(first.split("\t")) == 4:
        return "\t", 0
    raise ConfigError(f"data.ratings_file: {path} line 1 is {_shown(first)}; expected {FORMATS}")


def _table(path: Path, delimiter: str, header: int) -> np.ndarray:
    """The (user, item, rating) columns as floats, or a one-line error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file: handled below
            table = np.loadtxt(path, delimiter=delimiter, skiprows=header, usecols=(0, 1, 2),
                               dtype=np.float64, ndmin=2)
    except (ValueError, IndexError):
        raise ConfigError(f"data.ratings_file: {path} {_first_bad_line(path, delimiter, header)}; "
                          f"expected {FORMATS}") from None
    if len(table) == 0:
        raise ConfigError(f"data.ratings_file: {path} holds no ratings")
    return table


def _shown(line: str) -> str:
    line = line.strip()
    return repr(line if len(line) <= 60 else line[:57] + "...")


def _first_bad_line(path: Path, delimiter: str, header: int) -> str:
    """Where a file numpy could not read goes wrong: 'line N is ...' (read again in Python,
    which knows the line numbers)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            fields = line.strip().split(delimiter)
            if number <= header or not line.strip():
                continue
            try:
                [float(f) for f in fields[:3]]
            except ValueError:
                return f"line {number} is {_shown(line)}"
            if len(fields) < 3:
                return f"line {number} is {_shown(line)}"
    return "is unreadable"


def to_stars(values: np.ndarray, path: Path | str, first_line: int = 1) -> np.ndarray:
    """Ratings as whole stars 1..5: half stars rounded up; any other value is an error
    naming its line (`first_line`: the file line of values[0])."""
    doubled = values * 2
    bad = (doubled != np.round(doubled)) | (values < 0.5) | (values > STARS)
    if bad.any():
        row = int(np.argmax(bad))
        raise ConfigError(
            f"data.ratings_file: {path} line {first_line + row}: rating {values[row]:g} is not "
            f"allowed; allowed: 1 to {STARS} stars, or half stars 0.5 to 4.5 (rounded up)")
    return np.ceil(values).astype(np.int64)


def _indices(ids: np.ndarray, what: str, path: Path, first_line: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct ids, each row's index into them); ids must be whole numbers."""
    fractional = ids != np.round(ids)
    if fractional.any():
        row = int(np.argmax(fractional))
        raise ConfigError(f"data.ratings_file: {path} line {first_line + row}: {what} id {ids[row]:g} "
                          "is not a whole number")
    unique, index = np.unique(ids.astype(np.int64), return_inverse=True)
    return unique, index.astype(np.int64)


def read_ratings(path: str | Path) -> Ratings:
    """A MovieLens ratings file (u.data or ratings.csv), checked row by row."""
    path = Path(path).expanduser()
    delimiter, header = _format(path)
    table = _table(path, delimiter, header)
    first_line = header + 1
    user_ids, users = _indices(table[:, 0], "user", path, first_line)
    item_ids, items = _indices(table[:, 1], "item", path, first_line)
    stars = to_stars(table[:, 2], path, first_line)
    pairs = users * len(item_ids) + items
    order = np.argsort(pairs, kind="stable")
    repeats = np.flatnonzero(pairs[order][1:] == pairs[order][:-1])
    if len(repeats):
        row = int(order[repeats + 1].min())  # the first line that repeats an earlier pair
        raise ConfigError(f"data.ratings_file: {path} line {first_line + row}: user {user_ids[users[row]]} "
                          f"rated item {item_ids[items[row]]} before; allowed: one rating per user and item")
    return Ratings(users, items, stars, user_ids, item_ids)


def split_ratings(ratings: Ratings, val_fraction: float, test_fraction: float, seed: int) -> RatingSplits:
    """A random split of the ratings (each rating to one of the three), validation kept non-empty."""
    n = len(ratings)
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    if n_val == 0 or n_test + n_val >= n:
        raise ConfigError(
            f"data.val_fraction: {n} ratings leave no validation or no training ratings at "
            f"val_fraction {val_fraction:g} and test_fraction {test_fraction:g}")
    return RatingSplits(np.sort(order[n_test + n_val:]), np.sort(order[n_test:n_test + n_val]),
                        np.sort(order[:n_test]))


def item_means(ratings: Ratings, train: np.ndarray) -> np.ndarray:
    """Each item's mean training rating (the global mean for items without one): the
    baseline the RBM's RMSE is compared with."""
    sums = np.bincount(ratings.items[train], weights=ratings.stars[train], minlength=ratings.n_items)
    counts = np.bincount(ratings.items[train], minlength=ratings.n_items)
    overall = float(ratings.stars[train].mean())
    return np.where(counts > 0, sums / np.maximum(counts, 1), overall)


def rmse(predicted: np.ndarray, stars: np.ndarray) -> float:
    """Root mean squared error of predicted ratings."""
    return float(np.sqrt(np.mean((np.asarray(predicted, np.float64) - stars) ** 2)))


def planted_ratings(n_users: int, n_items: int, rank: int, observed: float, seed: int = 0) -> np.ndarray:
    """Made-up ratings with a planted low-rank structure, (user id, item id, stars) rows
    (ids from 1): stars = round(3 + item bias + u.v / sqrt(rank) + noise) clipped to 1..5,
    each (user, item) observed with probability `observed`. A user's taste (u) is only
    found from their own ratings, so a model that finds it beats the item means."""
    rng = np.random.default_rng(seed)
    users, items = rng.normal(size=(n_users, rank)), rng.normal(size=(n_items, rank))
    score = 3 + rng.normal(0, 0.5, n_items) + users @ items.T / np.sqrt(rank)
    stars = np.clip(np.round(score + rng.normal(0, 0.3, score.shape)), 1, STARS).astype(np.int64)
    u, i = np.nonzero(rng.random((n_users, n_items)) < observed)
    return np.stack([u + 1, i + 1, stars[u, i]], axis=1)


def write_udata(path: Path, rows: np.ndarray) -> Path:
    """(user, item, stars) rows as an ML-100K u.data file (timestamps 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u}\t{i}\t{s}\t0\n" for u, i, s in rows.tolist()))
    return path
