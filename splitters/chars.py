"""`utf8-chars`: a pooling point at the last byte of every character.

The naive way to pool scripts written without spaces (one unit per Chinese
character, ~3 bytes): the baseline a learned word splitter has to beat. Invalid
UTF-8 follows the project's convention (splitters/text.py): each invalid byte is its
own character, and a byte that could still begin a valid character is never a point.
"""

from __future__ import annotations

import numpy as np

from .base import Splitter, StageStreamer
from .regex_family import _continuation_range
from .text import TextBatch


class Utf8Chars(Splitter):
    name = "utf8-chars"
    version = "1.0"
    description = "Every character: pool at the last byte of each UTF-8 character"

    def points(self, batch: TextBatch, prev: np.ndarray | None) -> np.ndarray:
        chars = batch.chars
        mask = chars.to_byte_mask(np.arange(len(chars)), batch.n_bytes)
        return mask if prev is None else mask & prev

    def streamer(self) -> StageStreamer:
        return CharStreamer()


class CharStreamer(StageStreamer):
    """Is this byte the end of a (decided) character? O(1) state: the pending sequence."""

    def __init__(self) -> None:
        self.pending: list[int] = []

    def push(self, byte: int, prev_point: bool = True) -> bool:
        pending = self.pending
        if pending:
            lo, hi = _continuation_range(pending[0]) if len(pending) == 1 else (0x80, 0xBF)
            if lo <= byte <= hi:
                pending.append(byte)
                lead = pending[0]
                need = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
                if len(pending) < need:
                    return False
                pending.clear()
                return prev_point
            pending.clear()  # a broken sequence: its bytes were undecided, never points
        if 0xC2 <= byte <= 0xF4:
            pending.append(byte)
            return False
        return prev_point
