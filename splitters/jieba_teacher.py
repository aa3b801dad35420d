"""`jieba`: the jieba segmenter as a (non-causal) splitter, to score the teacher.

It pools at the last byte of each jieba word. jieba looks at the whole sentence,
so a word's end can change when later text arrives: it is not causal, cannot
stream, and is meant for `aunet splitter eval` and comparison only (prep accepts
it, but a model trained on its points cannot generate). Needs the optional extra
`aunet[zh]`.
"""

from __future__ import annotations

import numpy as np

from .base import Splitter, SplitterError, StageStreamer
from .learned_train import _jieba
from .text import TextBatch


class JiebaTeacher(Splitter):
    name = "jieba"
    version = "1.0"
    description = "jieba words (teacher for learned-zh; looks ahead, not causal)"

    @property
    def causal(self) -> bool:
        return False

    def points(self, batch: TextBatch, prev: np.ndarray | None) -> np.ndarray:
        jieba = _jieba()  # here, not at construction: `aunet splitters` lists it without jieba
        mask = np.zeros(batch.n_bytes, dtype=bool)
        for d in range(batch.n_docs):
            start = int(batch.offsets[d])
            text = batch.doc(d).decode("utf-8", "surrogateescape")
            pos = start
            for word in jieba.cut(text, HMM=True):
                raw = word.encode("utf-8", "surrogateescape")
                pos += len(raw)
                if raw:
                    mask[pos - 1] = True  # an invalid byte is its own character
        return mask

    def streamer(self) -> StageStreamer:
        raise SplitterError(
            "jieba looks at the whole sentence (not causal), so it cannot split text while "
            "generating; use learned-zh, its causal student"
        )
