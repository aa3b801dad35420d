"""A character-level probe: does the model prefer a correctly spelled word to a typo?

Probes come from held-out text: a word of >= 5 ASCII letters, the words before it in its
document (up to `context` bytes, starting at a word start) and the byte after it. Each
probe has up to three misspellings: two adjacent letters swapped, one letter dropped,
one letter doubled. A model gets a pair right when the whole snippet with the correct
word has a higher log-probability (fewer nats) than with the misspelling. Whole-snippet
scores are what make byte and BPE models comparable: both score exactly the same text.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from splitters import Pipeline, TextBatch

from .evaluate import evaluate
from .model import AUNet
from .tokenizer import BYTES, Codec

WORD = re.compile(rb"[A-Za-z]{5,}")
KINDS = ("swap", "drop", "double")


@dataclass
class Probe:
    prefix: bytes
    word: bytes
    suffix: bytes
    variants: dict[str, bytes] = field(default_factory=dict)  # kind -> misspelled word

    def text(self, word: bytes) -> bytes:
        return self.prefix + word + self.suffix


def misspell(word: bytes, kind: str, rng: random.Random) -> bytes | None:
    """One misspelling of `word` of the given kind (None if it would equal the word)."""
    n = len(word)
    if kind == "swap":
        i = rng.randrange(1, n - 2)  # keep the first letter: typos rarely change it
        out = word[:i] + word[i + 1 : i + 2] + word[i : i + 1] + word[i + 2 :]
    elif kind == "drop":
        i = rng.randrange(1, n)
        out = word[:i] + word[i + 1 :]
    elif kind == "double":
        i = rng.randrange(1, n)
        out = word[: i + 1] + word[i : i + 1] + word[i + 1 :]
    else:
        raise ValueError(kind)
    return None if out == word else out


def make_probes(docs: Iterable[bytes], count: int, seed: int = 0, context: int = 64) -> list[Probe]:
    """Up to `count` probes drawn evenly (seeded) from the words of `docs`."""
    found: list[tuple[bytes, int, int]] = []
    for data in docs:
        for m in WORD.finditer(data):
            before = data[m.start() - 1 : m.start()]
            after = data[m.end() : m.end() + 1]
            if not after or any(b.isalpha() or b >= b"\x80" for b in (before, after)):
                continue  # part of a longer word (e.g. "Schrödinger") or at the very end
            found.append((data, m.start(), m.end()))
    rng = random.Random(seed)
    picked = rng.sample(found, min(count, len(found)))
    probes = []
    for data, a, b in picked:
        start = max(0, a - context)
        space = data.find(b" ", start, a)
        if start > 0 and space >= 0:
            start = space + 1  # begin at a word, not mid-word
        probe = Probe(data[start:a], data[a:b], data[b : b + 1])
        for kind in KINDS:
            bad = misspell(probe.word, kind, rng)
            if bad is not None:
                probe.variants[kind] = bad
        probes.append(probe)
    return probes


def score_texts(
    model: AUNet, pipeline: Pipeline, texts: list[bytes], codec: Codec = BYTES,
    batch_size: int = 32,
) -> list[float]:  # fmt: skip
    """Total nats of each text (read from BOS, every unit scored), one number per text."""
    levels = pipeline.levels(TextBatch.from_docs(texts)) if texts else np.zeros(0, np.uint8)
    offsets = np.cumsum([0, *(len(t) for t in texts)])
    docs = [(t, levels[offsets[i] : offsets[i + 1]]) for i, t in enumerate(texts)]
    res = evaluate(model, docs, batch_size=batch_size, codec=codec)
    it = iter(res.doc_nats)
    return [next(it) if t else 0.0 for t in texts]  # empty texts are skipped by evaluate


def spelling_probe(
    model: AUNet, pipeline: Pipeline, probes: list[Probe], codec: Codec = BYTES
) -> dict[str, Any]:
    """Accuracy (correct word scored higher) overall and per kind, and the mean margin."""
    texts: list[bytes] = []
    for p in probes:
        texts.append(p.text(p.word))
        texts.extend(p.text(v) for v in p.variants.values())
    nats = iter(score_texts(model, pipeline, texts, codec))
    wins: dict[str, list[bool]] = {k: [] for k in KINDS}
    margins: list[float] = []
    for p in probes:
        good = next(nats)
        for kind in p.variants:
            bad = next(nats)
            wins[kind].append(good < bad)
            margins.append((bad - good) / np.log(2))
    pairs = [w for k in KINDS for w in wins[k]]
    return {
        "accuracy": float(np.mean(pairs)) if pairs else None,
        "pairs": len(pairs),
        "probes": len(probes),
        "by_kind": {k: float(np.mean(v)) if v else None for k, v in wins.items()},
        "mean_margin_bits": float(np.mean(margins)) if margins else None,
    }
