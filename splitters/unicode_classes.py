"""Character classes of the paper's regex splitter, as one lookup table.

The table is built from the `regex` module itself (the engine the official
implementation uses), so `\\s`, `\\p{L}` and `\\p{N}` mean exactly what they mean
there; vectorized and streaming splitters then share one source of truth.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import regex

OTHER, LETTER, DIGIT, SPACE, NEWLINE = 0, 1, 2, 3, 4  # NEWLINE = CR or LF; both count as space


@cache
def class_table() -> np.ndarray:
    """uint8 class for every code point 0..0x10FFFF (surrogates are OTHER)."""
    table = np.zeros(0x110000, dtype=np.uint8)
    every_char = "".join(map(chr, range(0x110000)))
    for pattern, cls in ((r"\p{L}+", LETTER), (r"\p{N}+", DIGIT), (r"\s+", SPACE)):
        for m in regex.finditer(pattern, every_char):
            table[m.start() : m.end()] = cls
    table[[0x0A, 0x0D]] = NEWLINE
    table.setflags(write=False)
    return table


@cache
def ascii_table() -> np.ndarray:
    return np.ascontiguousarray(class_table()[:256])


def classify(cp: np.ndarray) -> np.ndarray:
    """Class of each code point (uint8 input means pure ASCII bytes)."""
    if cp.dtype == np.uint8:
        return ascii_table()[cp]
    return class_table()[cp]
