"""`learned-zh`: word pooling points for Chinese (and mixed) text from a tiny learned model.

Inside runs of Han characters a learned boundary model decides; everything else
follows the regex rules of `regex-words` (causal mode), so English inside Chinese
is still cut at spaces, and digits, punctuation and newlines pool as usual.

* ``placement=next-start`` (default): the point is the last byte of the first
  character of the next word; the model decides "a word starts here" once that
  character is seen. Decided wherever the boundary touches a Han character.
* ``placement=end``: the point is the last byte of a word's last character; the
  model decides "a word ends here" before the next character is seen.

Both are causal (the decision at a character uses that character and the three
before it), prefix-stable and streamable with a ring of the last four code points.

``every=2`` / ``every=4`` give pairs / groups of four learned words (every 2nd / 4th
word point of the document, plus the regex rules' punctuation, digit and newline
points, which pool at every stage as in the paper), so
``-s learned-zh -s learned-zh:every=2`` nests like the regex family.

``path=ARTIFACT`` loads another trained model (see `aunet splitter train`); the
default is the artifact shipped in splitters/artifacts/learned-zh/.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from . import regex_family
from .base import Option, Splitter, SplitterError, StageStreamer
from .learned_model import (
    C_PAD,
    PAD,
    PLACEMENTS,
    SITE_ONE,
    SITES,
    BoundaryModel,
    context,
    hash_features,
    hash_one,
    load_artifact,
    model_class,
    model_classes,
)
from .regex_family import RegexStreamer
from .text import TextBatch, every_nth
from .unicode_classes import DIGIT, NEWLINE, OTHER

DEFAULT_ARTIFACT = Path(__file__).parent / "artifacts" / "learned-zh" / "learned-zh.json"
_WORD, _SPECIAL = 1, 8  # flags of the C regex scan (see _fast.c)


@cache
def _load(path: str, mtime: float) -> BoundaryModel:
    return load_artifact(Path(path))


def load_model(path: str | Path) -> BoundaryModel:
    p = Path(path) if str(path) else DEFAULT_ARTIFACT
    try:
        mtime = p.stat().st_mtime
    except OSError:
        mtime = 0.0
    return _load(str(p), mtime)


def _logit_cut(threshold: float) -> np.float32:
    """The float32 logit above which a site pools (probability > threshold)."""
    if threshold <= 0.0:
        return np.float32(-np.inf)
    if threshold >= 1.0:
        return np.float32(np.inf)
    return np.float32(np.log(threshold / (1.0 - threshold)))


class LearnedZh(Splitter):
    name = "learned-zh"
    version = "1.0"
    description = "Chinese words from a tiny learned causal model (regex rules outside Han text)"
    options = (
        Option("path", str, "", "artifact .json/.safetensors/folder (default: shipped model)"),
        Option(
            "placement",
            str,
            "next-start",
            "next-start: pool at the first char of the next word; end: at a word's last char",
            choices=PLACEMENTS,
        ),
        Option("every", int, 1, "1 = words, 2 = pairs of words, 4 = groups of four words"),
        Option(
            "threshold",
            float,
            0.5,
            "pool where the model's boundary probability exceeds this (0 = at every Han char)",
        ),
    )

    def __init__(self, **raw_options: Any) -> None:
        super().__init__(**raw_options)
        if self.config["every"] not in (1, 2, 4, 8):
            raise SplitterError(
                f"{self.name}: option every must be 1, 2, 4 or 8, got {self.config['every']!r}"
            )
        if not 0.0 <= self.config["threshold"] <= 1.0:
            raise SplitterError(
                f"{self.name}: option threshold must be in [0, 1], got {self.config['threshold']}"
            )
        self.cut = _logit_cut(self.config["threshold"])
        self.model = load_model(self.config["path"])
        placement = self.config["placement"]
        if placement not in self.model.weights:
            raise SplitterError(
                f"{self.name}: artifact {self.config['path'] or DEFAULT_ARTIFACT} has no "
                f"{placement!r} head (it has: {', '.join(self.model.weights)})"
            )

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["artifact_sha256"] = self.model.sha256  # which weights made these points
        return d

    # ---- batch -------------------------------------------------------------------

    def learned_chars(self, batch: TextBatch) -> np.ndarray:
        """Char positions where the model puts a point (before the undecided filter)."""
        placement = self.config["placement"]
        key = ("learned-zh", self.model.sha256, placement, float(self.cut))
        if key in batch.memo:
            return batch.memo[key]
        chars = batch.chars
        cp = chars.cp
        found = np.zeros(0, dtype=np.int64)
        if cp.dtype != np.uint8 and len(cp):  # pure ASCII has no Han character
            cls = model_classes(cp)
            prev_cls = np.empty_like(cls)
            prev_cls[0] = C_PAD
            prev_cls[1:] = cls[:-1]
            prev_cls[chars.first] = C_PAD
            sites = np.flatnonzero(SITES[placement](cls, prev_cls))
            if len(sites):
                doc = np.searchsorted(chars.offsets, sites, side="right") - 1
                pos = sites - chars.offsets[doc]
                buckets = hash_features(context(cp, pos, sites), self.model.bits)
                found = sites[self.model.logits(placement, buckets) > self.cut]
        batch.memo[key] = found
        return found

    def _regex_masks(self, batch: TextBatch) -> tuple[np.ndarray, np.ndarray]:
        """Byte masks of the causal regex rules: word ends, and the points every stage has."""
        if regex_family._c_scan is not None and regex_family.BACKEND["name"] == "c":
            flags = regex_family.scan_flags(batch, "causal")
            return (flags & _WORD) != 0, (flags & _SPECIAL) != 0
        a = self._analysis(batch)
        chars = batch.chars
        return (
            chars.to_byte_mask(a.word_ends, batch.n_bytes),
            chars.to_byte_mask(a.specials, batch.n_bytes),
        )

    @staticmethod
    def _analysis(batch: TextBatch):
        key = ("regex", "causal")
        if key not in batch.memo:
            batch.memo[key] = regex_family._analyse(batch, official=False)
        return batch.memo[key]

    def points(self, batch: TextBatch, prev: np.ndarray | None) -> np.ndarray:
        words, special = self._regex_masks(batch)
        words = words | batch.chars.to_byte_mask(self.learned_chars(batch), batch.n_bytes)
        return every_nth(words & ~special, batch.offsets, self.config["every"]) | special

    def word_boundaries(self, batch: TextBatch) -> np.ndarray:
        """For evaluation: bool over chars + 1, True where a word boundary sits before
        char k, as the points stand for it (an `end` point at char i marks the boundary
        after i; regex and `next-start` points the boundary before their char)."""
        chars = batch.chars
        out = np.zeros(len(chars) + 1, dtype=bool)
        a = self._analysis(batch)
        decided = chars.decided
        for positions, shift in (
            (a.word_ends, 0),
            (a.specials, 0),
            (self.learned_chars(batch), 1 if self.config["placement"] == "end" else 0),
        ):
            if decided is not None:
                positions = positions[decided[positions]]
            out[positions + shift] = True
        return out

    # ---- streaming ----------------------------------------------------------------

    def streamer(self) -> StageStreamer:
        config = self.config
        return LearnedStreamer(self.model, config["placement"], config["every"], self.cut)


class _CharTap(RegexStreamer):
    """The causal regex-words streamer, also reporting each character it completes:
    (code point, regex word end, regex point every stage has)."""

    def __init__(self) -> None:
        super().__init__(1)
        self.done: list[tuple[int, bool, bool]] = []

    def _char(self, cp: int) -> bool:
        cls = self.table[cp]
        was_pooled = self.newline_pooled
        point = super()._char(cp)
        special = point and (
            cls in (DIGIT, OTHER) or (cls == NEWLINE and not was_pooled and self.newline_pooled)
        )
        self.done.append((cp, point and not special, special))
        return point


class LearnedStreamer(StageStreamer):
    """Byte-at-a-time learned-zh: a ring of four code points and two counters."""

    def __init__(self, model: BoundaryModel, placement: str, every: int, cut: np.float32) -> None:
        self.model = model
        self.cut = cut
        self.placement = placement
        self.site = SITE_ONE[placement]
        self.every = every
        self.tap = _CharTap()
        self.ring = (PAD, PAD, PAD, PAD)  # c[i], c[i-1], c[i-2], c[i-3]
        self.count = 0

    def _learned(self) -> bool:
        ring = self.ring
        if not self.site(model_class(ring[0]), model_class(ring[1])):
            return False
        return bool(
            self.model.logit_one(self.placement, hash_one(ring, self.model.bits)) > self.cut
        )

    def push(self, byte: int, prev_point: bool = True) -> bool:
        tap = self.tap
        tap.done.clear()
        tap.push(byte)
        point = False
        completed = not tap.pending  # else this byte started a character still open
        for j, (cp, word, special) in enumerate(tap.done):
            r = self.ring
            self.ring = (cp, r[0], r[1], r[2])
            learned = self._learned()
            if not (completed and j == len(tap.done) - 1):
                continue  # bytes of a broken sequence: undecided, never a point
            word = (word or learned) and not special
            if self.every == 1:
                point = word or special
            else:
                self.count += word
                point = special or (word and self.count % self.every == 0)
        return point
