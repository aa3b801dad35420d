"""Word segmentation scoring: boundary precision / recall / F1 and SIGHAN word F1.

Both are computed on the text with whitespace removed, so a segmentation of the
raw sentence (which may keep spaces between Latin words) and a gold file with
words separated by spaces are compared character for character.

* Boundary scores: interior boundaries only (the positions between two non-space
  characters of a sentence); the sentence start and end are not counted.
* Word F1 (SIGHAN bakeoffs): a predicted word is correct if a gold word has
  exactly the same span; precision = correct / predicted words, recall = correct
  / gold words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Counts:
    b_tp: int = 0
    b_pred: int = 0
    b_gold: int = 0
    w_tp: int = 0
    w_pred: int = 0
    w_gold: int = 0

    def add(self, pred: np.ndarray, gold: np.ndarray) -> None:
        """pred / gold: bool masks over the n+1 stripped positions of one sentence
        (True = a word boundary before position k; 0 and n count as boundaries)."""
        n = len(gold) - 1
        if n <= 0:
            return
        p, g = pred.copy(), gold.copy()
        p[0] = p[n] = g[0] = g[n] = True
        self.b_tp += int((p[1:n] & g[1:n]).sum())
        self.b_pred += int(p[1:n].sum())
        self.b_gold += int(g[1:n].sum())
        pb, gb = np.flatnonzero(p), np.flatnonzero(g)
        pw = set(zip(pb[:-1].tolist(), pb[1:].tolist(), strict=True))
        gw = set(zip(gb[:-1].tolist(), gb[1:].tolist(), strict=True))
        self.w_tp += len(pw & gw)
        self.w_pred += len(pw)
        self.w_gold += len(gw)

    def scores(self) -> dict[str, float]:
        def f1(tp: int, pred: int, gold: int) -> tuple[float, float, float]:
            p = tp / pred if pred else 0.0
            r = tp / gold if gold else 0.0
            return p, r, (2 * p * r / (p + r) if p + r else 0.0)

        p, r, f = f1(self.b_tp, self.b_pred, self.b_gold)
        wp, wr, wf = f1(self.w_tp, self.w_pred, self.w_gold)
        return {
            "precision": p,
            "recall": r,
            "f1": f,
            "word_precision": wp,
            "word_recall": wr,
            "word_f1": wf,
        }


def strip_map(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(is_space per char, stripped index of each char: how many non-space chars
    come before it). A boundary before char k sits at stripped position index[k]."""
    space = np.fromiter((c.isspace() for c in text), dtype=bool, count=len(text))
    index = np.concatenate([[0], np.cumsum(~space)])[:-1] if len(text) else np.zeros(0, int)
    return space, index


def gold_boundaries(words: list[str]) -> tuple[str, np.ndarray]:
    """Stripped text and its boundary mask (len n+1) from gold words."""
    words = [w for w in (w.replace(" ", "") for w in words) if w]
    text = "".join(words)
    mask = np.zeros(len(text) + 1, dtype=bool)
    mask[np.cumsum([0] + [len(w) for w in words])] = True
    return text, mask


def boundaries_from_char_mask(text: str, before: np.ndarray) -> np.ndarray:
    """Map a per-char mask "a boundary before char k" of the raw text (len(text)+1,
    k = len(text) allowed) to the stripped positions; whitespace itself is a boundary."""
    space, index = strip_map(text)
    n = int((~space).sum())
    out = np.zeros(n + 1, dtype=bool)
    ks = np.flatnonzero(before[: len(text)] | np.concatenate([space, []]).astype(bool))
    out[index[ks]] = True
    if before[len(text)]:
        out[n] = True
    return out


def boundaries_from_words(words: list[str]) -> np.ndarray:
    """A teacher's segmentation (tokens whose concatenation is the raw sentence) as
    stripped boundaries."""
    text = "".join(words)
    before = np.zeros(len(text) + 1, dtype=bool)
    before[np.cumsum([0] + [len(w) for w in words])] = True
    return boundaries_from_char_mask(text, before)


def predicted_boundaries(splitter, lines: list[str]) -> list[np.ndarray]:
    """Stripped boundary masks of each sentence as `splitter` segments it (one
    document per sentence). A splitter may say which boundary each of its points
    stands for (`word_boundaries`); otherwise a point ends a word after its char."""
    from .text import TextBatch

    batch = TextBatch.from_docs([ln.encode("utf-8") for ln in lines])
    out = []
    if hasattr(splitter, "word_boundaries"):
        before = splitter.word_boundaries(batch)
        offs = batch.chars.offsets
        for d, line in enumerate(lines):
            out.append(boundaries_from_char_mask(line, before[offs[d] : offs[d + 1] + 1].copy()))
        return out
    mask = splitter.points(batch, None)
    for d, line in enumerate(lines):
        raw = np.frombuffer(line.encode("utf-8"), dtype=np.uint8)
        char_of_byte = np.cumsum((raw & 0xC0) != 0x80) - 1
        before = np.zeros(len(line) + 1, dtype=bool)
        before[char_of_byte[mask[batch.offsets[d] : batch.offsets[d + 1]]] + 1] = True
        out.append(boundaries_from_char_mask(line, before))
    return out


def read_gold(path) -> tuple[list[str], list[np.ndarray]]:
    """Raw sentences (words joined without spaces) and gold masks from a file with
    one sentence per line, words separated by spaces."""
    from pathlib import Path

    sentences, masks = [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        words = line.split()
        if not words:
            continue
        text, mask = gold_boundaries(words)
        sentences.append(text)
        masks.append(mask)
    return sentences, masks


def score(pred: list[np.ndarray], gold: list[np.ndarray]) -> dict[str, float]:
    counts = Counts()
    for p, g in zip(pred, gold, strict=True):
        if len(p) != len(g):
            raise ValueError("prediction and gold differ in length (different text?)")
        counts.add(p, g)
    return counts.scores()
