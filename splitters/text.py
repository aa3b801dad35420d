"""Batches of raw byte documents and their UTF-8 character view.

Splitters work on many documents at once (one numpy pass over a concatenation)
because per-document Python overhead would dominate on short documents.

Invalid UTF-8 is kept byte-exact: each byte that does not belong to a valid
sequence is its own character (Python's ``surrogateescape`` view). A byte that
could still be the start of a valid multi-byte character, given the bytes up to
it, is *undecided*: no splitter may place a pooling point there, because a
causal splitter cannot know yet whether the character will complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

ESCAPE_LO, ESCAPE_HI = 0xDC80, 0xDCFF  # surrogateescape code points for raw bytes


@dataclass
class CharEnds:
    """Last byte of each char, from the first bytes, computed only where asked."""

    starts: np.ndarray
    n_bytes: int

    def __getitem__(self, positions: np.ndarray) -> np.ndarray:
        nxt = positions + 1
        out = np.full(len(positions), self.n_bytes - 1, dtype=np.int64)
        inside = nxt < len(self.starts)
        out[inside] = self.starts[nxt[inside]] - 1
        return out


@dataclass
class Chars:
    """One entry per character of the batch (all documents concatenated)."""

    cp: np.ndarray  # code points (uint8 for pure ASCII, else uint32)
    end_byte: np.ndarray | CharEnds | None  # global index of each char's last byte; None = identity
    offsets: np.ndarray  # int64 char offsets of the documents, len n_docs + 1
    decided: np.ndarray | None  # False where no boundary may be placed; None = all True

    def __len__(self) -> int:
        return len(self.cp)

    @cached_property
    def first(self) -> np.ndarray:
        """True at the first character of each document."""
        first = np.zeros(len(self.cp), dtype=bool)
        starts = self.offsets[:-1][self.offsets[:-1] < self.offsets[1:]]
        first[starts] = True
        return first

    def to_byte_mask(self, char_positions: np.ndarray, n_bytes: int) -> np.ndarray:
        """Boolean per-byte mask with True at the last byte of the given chars."""
        if self.decided is not None:
            char_positions = char_positions[self.decided[char_positions]]
        mask = np.zeros(n_bytes, dtype=bool)
        mask[char_positions if self.end_byte is None else self.end_byte[char_positions]] = True
        return mask


@dataclass
class TextBatch:
    """Documents as one byte string plus offsets; derived views are cached."""

    data: bytes
    offsets: np.ndarray  # int64 byte offsets, len n_docs + 1
    memo: dict = field(default_factory=dict, repr=False)  # per-splitter-family caches

    @classmethod
    def from_docs(cls, docs: Sequence[bytes]) -> TextBatch:
        offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, docs), np.int64, len(docs)), out=offsets[1:])
        return cls(b"".join(docs), offsets)

    @property
    def n_bytes(self) -> int:
        return len(self.data)

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    def doc(self, i: int) -> bytes:
        return self.data[self.offsets[i] : self.offsets[i + 1]]

    @cached_property
    def chars(self) -> Chars:
        if self.data.isascii():
            return Chars(np.frombuffer(self.data, dtype=np.uint8), None, self.offsets, None)
        return _decode(self)


def _decode(batch: TextBatch) -> Chars:
    data = batch.data
    u8 = np.frombuffer(data, dtype=np.uint8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _decode_per_doc(batch)
    doc_starts = batch.offsets[:-1][batch.offsets[:-1] < batch.offsets[1:]]
    if ((u8[doc_starts] & 0xC0) == 0x80).any():
        return _decode_per_doc(batch)  # a character straddles two documents
    starts = np.flatnonzero((u8 & 0xC0) != 0x80)  # first byte of every character
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return Chars(cp, CharEnds(starts, len(data)), np.searchsorted(starts, batch.offsets), None)


def _decode_per_doc(batch: TextBatch) -> Chars:
    """Slow path for batches with invalid UTF-8: decode each document alone."""
    texts = [batch.doc(i).decode("utf-8", "surrogateescape") for i in range(batch.n_docs)]
    cp = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    char_offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in texts], out=char_offsets[1:])
    escaped = (cp >= ESCAPE_LO) & (cp <= ESCAPE_HI)
    nbytes = (
        1
        + (cp >= 0x80).astype(np.int64)
        + (cp >= 0x800)
        + (cp >= 0x10000)
        - 2 * escaped  # an escape char stands for exactly one byte
    )
    end_byte = np.cumsum(nbytes) - 1
    decided = None
    if escaped.any():
        first = np.zeros(len(cp), dtype=bool)
        first[char_offsets[:-1][char_offsets[:-1] < char_offsets[1:]]] = True
        decided = ~_undecided_escapes(cp, escaped, first)
    return Chars(cp, end_byte, char_offsets, decided)


def _undecided_escapes(cp: np.ndarray, escaped: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Escaped bytes that are a proper prefix of some valid UTF-8 sequence.

    Python's decoder escapes each byte of an ill-formed subsequence separately, so
    a truncated sequence (lead byte plus valid continuations) shows up as escapes.
    At each of those bytes a streaming reader could not yet know the character
    is broken, so they must never carry a boundary.
    """
    b = np.where(escaped, cp.astype(np.int64) - 0xDC00, -1)
    is_cont = (b >= 0x80) & (b <= 0xBF)
    lead = (b >= 0xC2) & (b <= 0xF4)
    prev = np.full_like(b, -1)
    prev[1:] = b[:-1]
    prev[first] = -1
    lo = np.select([prev == 0xE0, prev == 0xF0], [0xA0, 0x90], 0x80)
    hi = np.select([prev == 0xED, prev == 0xF4], [0x9F, 0x8F], 0xBF)
    second = is_cont & (prev >= 0xE0) & (prev <= 0xF4) & (b >= lo) & (b <= hi)
    prev_second = np.zeros_like(second)
    prev_second[1:] = second[:-1]
    prev_second[first] = False
    prev2 = np.full_like(b, -1)
    prev2[2:] = b[:-2]
    third = is_cont & prev_second & (prev2 >= 0xF0)
    return lead | second | third


def every_nth(mask: np.ndarray, offsets: np.ndarray, every: int) -> np.ndarray:
    """Keep the every-th True of `mask` in each document (counted from its start): how
    "pairs" and "groups of four" stages thin out the points of a finer one."""
    if every == 1 or not len(mask):
        return mask
    count = np.cumsum(mask, dtype=np.int64)
    starts = offsets[:-1]
    base = np.where(starts > 0, count[np.maximum(starts - 1, 0)], 0)
    rank = count - np.repeat(base, np.diff(offsets))
    return mask & (rank % every == 0)
