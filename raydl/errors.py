"""The three errors a user ever sees from raydl, and how any error becomes one line.

Every module raises these (none of them imports anything of raydl's), and the command
line turns them into exit codes: ConfigError and CheckpointError are bad input (exit 2),
TrainingError is a run that failed (exit 1).
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ConfigError(ValueError):
    """A bad experiment file, override, argument or environment: one line for the user."""


class TrainingError(RuntimeError):
    """Training itself failed (a worker's error, repeated env failures, a non-finite loss):
    one line for the user, exit code 1."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the one line that says what was saved and how to go on."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


class CheckpointError(RuntimeError):
    """A missing, truncated, tampered or mismatched checkpoint; the message names the file."""


def message_line(exc: BaseException, fallback: str | None = None) -> str:
    """The first non-empty line of an error's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else (fallback or type(exc).__name__)


def first_line(exc: BaseException) -> str:
    """`ExcType: first line of its message` (just the type when the message is empty)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


# Every character str.splitlines() breaks at, written as its escape.
_LINE_BREAKS = {
    c: repr(chr(c))[1:-1]
    for c in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)
}


def one_line(exc: BaseException) -> str:
    """An error as the one line raydl prints; a line break in it can only come from the
    user's input (a key or value quoted back), so it is shown escaped."""
    return str(exc).translate(_LINE_BREAKS)


# How much of a user's value an error quotes: a few items per level, a few levels, a short
# string. A YAML file of a few hundred bytes can alias its way to a structure whose full
# repr is gigabytes (10 levels of 10-fold aliases); the quote stays a line.
_QUOTE = reprlib.Repr()  # (keyword arguments only from Python 3.12)
_QUOTE.maxlevel = 3
_QUOTE.maxtuple = _QUOTE.maxlist = _QUOTE.maxarray = _QUOTE.maxdict = 4
_QUOTE.maxset = _QUOTE.maxfrozenset = _QUOTE.maxdeque = 4
_QUOTE.maxstring, _QUOTE.maxlong, _QUOTE.maxother = 80, 40, 80
QUOTE_LIMIT = 160


def quote(value: object) -> str:
    """`repr(value)` cut to a bounded excerpt ("..." where it was cut), for error lines."""
    text = _QUOTE.repr(value)
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 3] + "..."


@contextmanager
def matching_checkpoint(where: Path) -> Iterator[None]:
    """Loading saved state into objects built from the experiment: a state that does not
    fit them (other layer sizes, a missing key) is one CheckpointError naming `where`."""
    try:
        yield
    except (KeyError, RuntimeError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(
            f"{where}: checkpoint does not match this experiment: {message_line(exc)}"
        ) from None
