"""Character classes of the paper's regex splitter, as one lookup table.

The table is built from the `regex` module itself (the engine the official
implementation uses), so `\\s`, `\\p{L}` and `\\p{N}` mean exactly what they mean
there; vectorized and streaming splitters then share one source of truth.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np

OTHER, LETTER, DIGIT, SPACE, NEWLINE = 0, 1, 2, 3, 4  # NEWLINE = CR or LF; both count as space


@cache
def class_table() -> np.ndarray:
    """uint8 class for every code point 0..0x10FFFF (surrogates are OTHER).

    Building it takes ~0.3 s, so it is cached per `regex` version (whose Unicode
    tables define the classes) in the user's cache directory. A cached table is
    found without importing `regex` (saves about 4-7 ms of every prep's start-up).
    """
    path = _cache_dir() / f"unicode-classes-regex-{_regex_version()}.npy"
    try:
        table = np.load(path)
        if table.shape == (0x110000,) and table.dtype == np.uint8:
            table.setflags(write=False)
            return table
    except (OSError, ValueError):
        pass
    table = _build_table()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # one name per thread: prep's worker threads may build the table at once
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, table)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home is fine: we just rebuild next time
    table.setflags(write=False)
    return table


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aunet"


def _regex_version() -> str:
    """The installed `regex` version, from its distribution's metadata when it has one."""
    try:
        return metadata.version("regex")
    except metadata.PackageNotFoundError:  # a copy without metadata: ask the module
        import regex

        return regex.__version__


def _build_table() -> np.ndarray:
    import regex

    table = np.zeros(0x110000, dtype=np.uint8)
    every_char = "".join(map(chr, range(0x110000)))
    for pattern, cls in ((r"\p{L}+", LETTER), (r"\p{N}+", DIGIT), (r"\s+", SPACE)):
        for m in regex.finditer(pattern, every_char):
            table[m.start() : m.end()] = cls
    table[[0x0A, 0x0D]] = NEWLINE
    return table


@cache
def ascii_table() -> np.ndarray:
    return np.ascontiguousarray(class_table()[:256])


def classify(cp: np.ndarray) -> np.ndarray:
    """Class of each code point (uint8 input means pure ASCII bytes)."""
    if cp.dtype == np.uint8:
        return ascii_table()[cp]
    return class_table()[cp]
