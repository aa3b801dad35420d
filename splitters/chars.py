"""`utf8-chars`: a pooling point at the last byte of every character (or every N-th).

The naive way to pool scripts written without spaces (one unit per Chinese
character, ~3 bytes): the baseline a learned word splitter has to beat. With
`every=2` (pairs of characters) it is the naive deeper stage, the control for a
learned word stage above a character stage. Invalid UTF-8 follows the project's
convention (splitters/text.py): each invalid byte is its own character, and a byte
that could still begin a valid character is never a point.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Option, Splitter, SplitterError, StageStreamer
from .regex_family import _continuation_range
from .text import TextBatch, every_nth


class Utf8Chars(Splitter):
    name = "utf8-chars"
    version = "1.0"
    description = "Every character: pool at the last byte of each UTF-8 character"
    options = (Option("every", int, 1, "pool every N-th character of a document (1 = every one)"),)

    def __init__(self, **raw_options: Any) -> None:
        super().__init__(**raw_options)
        if self.config["every"] < 1:
            raise SplitterError(
                f"{self.name}: option every must be >= 1, got {self.config['every']}"
            )

    def describe(self) -> dict[str, Any]:
        """`every` is recorded only when it is not 1: data prepared and models trained
        before the option existed recorded no options, and still match their recipes."""
        d = super().describe()
        if d["options"]["every"] == 1:
            del d["options"]["every"]
        return d

    def points(self, batch: TextBatch, prev: np.ndarray | None) -> np.ndarray:
        chars = batch.chars
        mask = chars.to_byte_mask(np.arange(len(chars)), batch.n_bytes)
        mask = every_nth(mask, batch.offsets, self.config["every"])
        return mask if prev is None else mask & prev

    def streamer(self) -> StageStreamer:
        return CharStreamer(self.config["every"])


class CharStreamer(StageStreamer):
    """Is this byte the end of a (decided) character? O(1) state: the pending sequence
    and, with every > 1, how many characters ended so far."""

    def __init__(self, every: int = 1) -> None:
        self.pending: list[int] = []
        self.every = every
        self.count = 0

    def _end(self, prev_point: bool) -> bool:
        if self.every == 1:
            return prev_point
        self.count += 1
        return prev_point and self.count % self.every == 0

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
                return self._end(prev_point)
            pending.clear()  # a broken sequence: its bytes were undecided, never points
        if 0xC2 <= byte <= 0xF4:
            pending.append(byte)
            return False
        return self._end(prev_point)
