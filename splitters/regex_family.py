"""The paper's regex splitters: words, pairs of words, groups of four words.

Semantics of the official implementation (lingua `apps/aunet`), restated per
character and mapped to the character's last byte:

* a word ends at the first whitespace character after a run of non-whitespace;
  for pairs / quads only every 2nd / 4th word of a *chain* counts, where a chain
  is what the official ``(\\S+\\s){n}`` finditer sees: words each followed by
  exactly one whitespace character (a longer whitespace run restarts the count);
* at every stage: the start of each group of 1-3 digits (``\\p{N}``), the start
  of each group of 1-3 other characters (not letter, digit or space; the group
  swallows CR/LF right after it), and each whitespace run that reaches CR/LF.

The last rule is where we differ by default. The official code marks the *start*
of such a whitespace run, which depends on a CR/LF that has not been seen yet (a
look-ahead: the level of byte t changes with bytes after t). ``mode=causal``
(default) marks the first CR/LF of the run instead, so the splitter is causal and
streamable; ``mode=official`` reproduces the official output exactly (all
conformance vectors) and is refused for generation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Option, Splitter, SplitterError, StageStreamer
from .text import TextBatch
from .unicode_classes import DIGIT, LETTER, NEWLINE, OTHER, SPACE, class_table, classify

try:  # the same state machine as RegexStreamer, compiled (see _fast.c)
    from ._fast import scan as _c_scan
    from ._fast import scan_points as _c_scan_points
except ImportError:  # no compiler at install time: the numpy path below is used
    _c_scan = _c_scan_points = None

_STAGE_FLAG = {1: 1, 2: 2, 4: 4}
_SPECIAL_FLAG = 8

MODE = Option(
    "mode",
    str,
    "causal",
    "causal: newline runs pool at their first CR/LF; official: at the run start (looks ahead)",
    choices=("causal", "official"),
)


@dataclass
class _Analysis:
    """Everything the regex stages share for one batch (computed once)."""

    word_ends: np.ndarray  # char positions of word ends
    chain_rank: np.ndarray  # 1-based rank of each word end within its chain
    specials: np.ndarray  # char positions pooled at every stage


def _analyse(batch: TextBatch, official: bool) -> _Analysis:
    chars = batch.chars
    cls = classify(chars.cp)
    n = len(cls)
    first = chars.first
    space = cls >= SPACE
    prev_space = np.empty(n, dtype=bool)  # previous char is space, within the document
    if n:
        prev_space[0] = False
        prev_space[1:] = space[:-1]
    prev_space &= ~first
    run_start = space & ~prev_space  # first char of each whitespace run
    word_ends = np.flatnonzero(run_start & ~first)

    # Chains: consecutive word ends with exactly one whitespace char between a word
    # end and the next word, inside one document.
    nxt = word_ends + 1
    has_next = nxt < n
    nxt_ok = np.zeros(len(word_ends), dtype=bool)
    nxt_ok[has_next] = ~space[nxt[has_next]] & ~first[nxt[has_next]]
    doc_of = np.searchsorted(chars.offsets, word_ends, side="right")
    starts = np.ones(len(word_ends), dtype=bool)
    starts[1:] = ~(nxt_ok[:-1] & (doc_of[1:] == doc_of[:-1]))
    idx = np.arange(len(word_ends))
    chain_rank = idx - np.maximum.accumulate(np.where(starts, idx, 0)) + 1

    # Groups of 1-3 digits / 1-3 other characters: every 3rd char of each run.
    grouped = np.flatnonzero((cls == DIGIT) | (cls == OTHER))
    gcls = cls[grouped]
    gstart = np.ones(len(grouped), dtype=bool)
    gstart[1:] = (grouped[1:] != grouped[:-1] + 1) | (gcls[1:] != gcls[:-1])
    gstart |= first[grouped]
    gidx = np.arange(len(grouped))
    grank = gidx - np.maximum.accumulate(np.where(gstart, gidx, 0))
    group_starts = grouped[grank % 3 == 0]

    # Whitespace runs reaching CR/LF; CR/LF right after an "other" group is swallowed.
    nl = np.flatnonzero(cls == NEWLINE)
    runs = np.flatnonzero(run_start)
    run_of = runs[np.searchsorted(runs, nl, side="right") - 1]
    first_nl_of_run = np.searchsorted(nl, run_of)
    all_nl_so_far = (np.arange(len(nl)) - first_nl_of_run) == (nl - run_of)
    before = np.maximum(run_of - 1, 0)
    after_other = (run_of > 0) & ~first[run_of] & (cls[before] == OTHER)
    swallowed = after_other & all_nl_so_far
    prev_swallowed = np.ones(len(nl), dtype=bool)
    prev_swallowed[1:] = swallowed[:-1] | (run_of[1:] != run_of[:-1])
    first_free = ~swallowed & prev_swallowed
    if official:
        nl_points = run_of[first_free] + (np.flatnonzero(first_free) - first_nl_of_run[first_free])
    else:
        nl_points = nl[first_free]

    specials = np.concatenate([group_starts, nl_points])
    return _Analysis(word_ends, chain_rank, specials)


# Which implementation `points` uses: "c" when compiled, else "numpy"; tests switch it
# to check the two against each other.
BACKEND = {"name": "c" if _c_scan is not None else "numpy"}


def scan_flags(batch: TextBatch, mode: str) -> np.ndarray:
    """Per-byte flags of the C scan (see _fast.c), computed once per batch and mode."""
    assert _c_scan is not None
    key = ("regex-flags", mode)
    if key not in batch.memo:
        offsets = np.ascontiguousarray(batch.offsets, dtype=np.int64)
        flags = _c_scan(batch.data, offsets, class_table(), mode == "official")
        batch.memo[key] = np.frombuffer(flags, dtype=np.uint8)
    return batch.memo[key]


def flag_levels(stages: list) -> tuple[str, np.ndarray] | None:
    """(mode, lut) when `stages` are all regex stages of one mode and the C scan is in
    use: then the pipeline's level of a byte is lut[scan_flags(batch, mode)[byte]]
    (the same as Pipeline.levels, without a mask per stage). Otherwise None."""
    if _c_scan is None or BACKEND["name"] != "c" or not stages:
        return None
    if not all(isinstance(s, _RegexStage) for s in stages):
        return None
    modes = {s.config["mode"] for s in stages}
    if len(modes) != 1:
        return None
    lut = np.zeros(256, dtype=np.uint8)
    for flags in range(256):
        level = 0
        for s in stages:
            if not flags & (_STAGE_FLAG[s.every] | _SPECIAL_FLAG):
                break
            level += 1
        lut[flags] = level
    return modes.pop(), lut


def flag_point_lists(
    batch: TextBatch, mode: str, depth: int, lut: np.ndarray, threads: int = 1
) -> list:
    """Arrow list buffers [(list offsets, values)] of stages 1..depth, where a byte's
    level is lut[its scan flag] (see `flag_levels`): one C pass, no per-byte array
    in Python. The same lists as shards.point_lists(lut[scan_flags(batch, mode)], ...).
    `threads`: scan the documents in that many parts at once (same result)."""
    assert _c_scan_points is not None
    offsets = np.ascontiguousarray(batch.offsets, dtype=np.int64)
    table = class_table()
    return _c_scan_points(batch.data, offsets, table, mode == "official", depth, lut, threads)


class _RegexStage(Splitter):
    version = "1.0"
    options = (MODE,)
    every: int  # 1 = words, 2 = pairs, 4 = groups of four

    @property
    def causal(self) -> bool:
        return self.config["mode"] == "causal"

    def points(self, batch: TextBatch, prev: np.ndarray | None) -> np.ndarray:
        mode = self.config["mode"]
        if _c_scan is not None and BACKEND["name"] == "c":
            return (scan_flags(batch, mode) & (_STAGE_FLAG[self.every] | _SPECIAL_FLAG)) != 0
        key = ("regex", mode)
        if key not in batch.memo:
            batch.memo[key] = _analyse(batch, official=mode == "official")
        a: _Analysis = batch.memo[key]
        ends = a.word_ends if self.every == 1 else a.word_ends[a.chain_rank % self.every == 0]
        return batch.chars.to_byte_mask(np.concatenate([ends, a.specials]), batch.n_bytes)

    def streamer(self) -> StageStreamer:
        if not self.causal:
            raise SplitterError(
                f"{self.name}:mode=official looks ahead (it marks a whitespace run before "
                "its CR/LF is seen), so it cannot split text while generating; use mode=causal"
            )
        return RegexStreamer(self.every)


class RegexWords(_RegexStage):
    name = "regex-words"
    description = "Words: pool at the whitespace that ends each word (AU-Net stage 2)"
    every = 1


class RegexWordPairs(_RegexStage):
    name = "regex-word-pairs"
    description = "Pairs of words: every 2nd word end of each chain (AU-Net stage 3)"
    every = 2


class RegexFourWords(_RegexStage):
    name = "regex-4words"
    description = "Groups of four words: every 4th word end of each chain (AU-Net stage 4)"
    every = 4


def _continuation_range(lead: int) -> tuple[int, int]:
    """Valid range of the byte after `lead` (UTF-8 excludes overlongs and surrogates)."""
    return {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}.get(
        lead, (0x80, 0xBF)
    )


class RegexStreamer(StageStreamer):
    """Byte-at-a-time version of the causal regex stage: O(1) work and state per byte."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.table = class_table()
        self.pending: list[int] = []  # bytes of a character still being read
        self.prev_space = False
        self.at_start = True
        self.chain_open = False  # the previous char ended a word (a chain may continue)
        self.word_continues = False
        self.chain_rank = 0
        self.run_cls = -1
        self.run_len = 0
        self.swallow_newlines = False
        self.newline_pooled = False

    def push(self, byte: int, prev_point: bool = True) -> bool:
        pending = self.pending
        if pending:
            lead = pending[0]
            lo, hi = _continuation_range(lead) if len(pending) == 1 else (0x80, 0xBF)
            if lo <= byte <= hi:
                pending.append(byte)
                need = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
                if len(pending) < need:
                    return False
                cp = bytes(pending).decode("utf-8")
                pending.clear()
                return self._char(ord(cp))
            for b in pending:  # a broken sequence: each byte is its own (undecided) char
                self._char(0xDC00 + b)
            pending.clear()
        if byte < 0x80:
            return self._char(byte)
        if 0xC2 <= byte <= 0xF4:
            pending.append(byte)
            return False
        return self._char(0xDC00 + byte)

    def _char(self, cp: int) -> bool:
        cls = self.table[cp]
        point = False
        if cls >= SPACE:
            if not self.prev_space and not self.at_start:
                self.chain_rank = self.chain_rank + 1 if self.word_continues else 1
                point = self.chain_rank % self.every == 0
                self.chain_open = True
            else:
                self.chain_open = False
            if cls == NEWLINE:
                if not self.swallow_newlines and not self.newline_pooled:
                    point = self.newline_pooled = True
            else:
                self.swallow_newlines = False
            self.run_cls = -1
            self.prev_space = True
        else:
            if self.prev_space or self.at_start:
                self.word_continues = self.chain_open
            self.prev_space = False
            self.newline_pooled = False
            if cls == LETTER:
                self.run_cls = -1
                self.swallow_newlines = False
            else:
                if self.run_cls == cls and self.run_len < 3:
                    self.run_len += 1
                else:
                    self.run_cls, self.run_len, point = cls, 1, True
                self.swallow_newlines = cls == OTHER
        self.at_start = False
        return point
