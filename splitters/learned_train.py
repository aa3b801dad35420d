"""Training the `learned-zh` boundary model from a teacher segmentation.

Teachers (all give a list of tokens per line whose concatenation is the line):

* ``jieba``: the jieba segmenter (optional extra ``aunet[zh]``; its dictionary
  ships with it);
* ``sentencepiece``: unigram pieces of a model trained on the same text;
* ``gold``: already segmented text, words separated by spaces.

torch is used for training only; inference is numpy (see learned_model.py).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import SplitterError
from .learned_model import (
    C_PAD,
    N_FEATURES,
    PLACEMENTS,
    SITES,
    TEMPLATES,
    context,
    hash_features,
    model_classes,
)

TEACHERS = ("jieba", "sentencepiece", "gold")
LINES_PER_DOC = 64  # training documents: the model's context resets at document starts


def _jieba():
    try:
        import jieba
    except ImportError:
        raise SplitterError(
            "the jieba teacher needs the optional extra: pip install 'aunet[zh]' (or jieba)"
        ) from None
    jieba.setLogLevel(60)
    return jieba


def teacher_segmenter(
    teacher: str, lines: list[str], spm_vocab: int = 8000
) -> Callable[[str], list[str]]:
    """A function line -> tokens for the named teacher (sentencepiece trains on `lines`)."""
    if teacher == "jieba":
        jieba = _jieba()
        jieba.initialize()
        return lambda line: list(jieba.cut(line, HMM=True))
    if teacher == "gold":  # words separated by spaces; the line end is a token of its own
        return lambda line: (
            [w for w in line.rstrip("\r\n").split(" ") if w]
            + ([line[len(line.rstrip("\r\n")) :]] if line.endswith("\n") else [])
        )
    if teacher == "sentencepiece":
        import sentencepiece as spm

        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter([ln.rstrip("\n") for ln in lines if ln.strip()]),
                model_writer=model,
                model_type="unigram",
                vocab_size=spm_vocab,
                character_coverage=0.9995,
                normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                add_dummy_prefix=False,
                split_by_whitespace=True,
                max_sentence_length=1 << 16,
                minloglevel=2,
            )
        except RuntimeError as exc:  # e.g. a vocabulary larger than the text allows
            raise SplitterError(f"sentencepiece teacher: {exc}") from None
        sp = spm.SentencePieceProcessor(model_proto=model.getvalue())

        def seg(line: str) -> list[str]:
            body, nl = (line[:-1], "\n") if line.endswith("\n") else (line, "")
            pieces = [p.replace("\u2581", " ") for p in sp.encode(body, out_type=str)]
            if "".join(pieces) != body:  # unknown chars: fall back to one token per char
                pieces = list(body)
            return pieces + ([nl] if nl else [])

        return seg
    raise SplitterError(f"unknown teacher {teacher!r} (expected one of {', '.join(TEACHERS)})")


@dataclass
class Docs:
    """Segmented documents: code points, boundary-before mask (len n+1), doc offsets."""

    cp: np.ndarray
    before: np.ndarray  # per char: a word boundary before it
    offsets: np.ndarray  # char offsets of the documents

    @classmethod
    def from_tokens(cls, docs: Iterable[list[str]]) -> Docs:
        cps, befores, offsets = [], [], [0]
        for tokens in docs:
            text = "".join(tokens)
            cps.append(np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32))
            before = np.zeros(len(text) + 1, dtype=bool)
            before[np.cumsum([0] + [len(t) for t in tokens])] = True
            befores.append(before[:-1])
            offsets.append(offsets[-1] + len(text))
        cat = np.concatenate
        return cls(
            cat(cps) if cps else np.zeros(0, np.uint32),
            cat(befores + [np.ones(1, bool)]),
            np.array(offsets, dtype=np.int64),
        )

    def examples(self, placement: str, bits: int) -> tuple[np.ndarray, np.ndarray]:
        """(buckets (n, N_FEATURES), labels (n,)) at the sites where `placement` decides."""
        n = len(self.cp)
        idx = np.arange(n)
        doc = np.searchsorted(self.offsets, idx, side="right") - 1
        pos = idx - self.offsets[doc]
        cls = model_classes(self.cp)
        prev_cls = np.concatenate([[C_PAD], cls[:-1]]) if n else cls
        prev_cls[pos == 0] = C_PAD
        sites = np.flatnonzero(SITES[placement](cls, prev_cls))
        # a boundary after the last char of a document is always true (end placement)
        before = self.before.copy()
        before[self.offsets[1:]] = True
        labels = before[sites + 1] if placement == "end" else before[sites]
        buckets = hash_features(context(self.cp, pos[sites], sites), bits)
        return np.ascontiguousarray(buckets.T, dtype=np.int64), labels


def site_f1(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    tp = int((pred & gold).sum())
    p = tp / max(int(pred.sum()), 1)
    r = tp / max(int(gold.sum()), 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def fit(
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    bits: int,
    epochs: int = 1,
    lr: float = 0.05,
    batch: int = 2048,
    seed: int = 0,
    evals: int = 4,
    on_step: Callable[[int, int], None] | None = None,
    on_eval: Callable[[float, dict[str, float]], None] | None = None,
) -> tuple[np.ndarray, float, dict[str, float]]:
    """Logistic regression over hashed n-gram buckets (torch, sparse Adam); the site F1
    on the validation examples is reported `evals` times per epoch."""
    import torch

    torch.manual_seed(seed)
    offs = torch.arange(N_FEATURES, dtype=torch.int64) << bits
    emb = torch.nn.EmbeddingBag(N_FEATURES << bits, 1, mode="sum", sparse=True)
    torch.nn.init.zeros_(emb.weight)
    bias = torch.nn.Parameter(torch.zeros(1))
    opt_sparse = torch.optim.SparseAdam(list(emb.parameters()), lr=lr)
    opt_dense = torch.optim.Adam([bias], lr=lr)
    xt = torch.from_numpy(x) + offs
    yt = torch.from_numpy(y.astype(np.float32))
    rng = np.random.default_rng(seed)
    steps = max((len(x) + batch - 1) // batch, 1)
    eval_at = {round(steps * (k + 1) / evals) for k in range(evals)}
    metrics: dict[str, float] = {}

    def predict(xs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = emb(torch.from_numpy(xs) + offs).squeeze(1) + bias
        return out.numpy()

    for epoch in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        for s in range(steps):
            sel = order[s * batch : (s + 1) * batch]
            logits = emb(xt[sel]).squeeze(1) + bias
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt[sel])
            opt_sparse.zero_grad()
            opt_dense.zero_grad()
            loss.backward()
            opt_sparse.step()
            opt_dense.step()
            if on_step:
                on_step(epoch * steps + s + 1, epochs * steps)
            if s + 1 in eval_at and len(x_val):
                metrics = site_f1(predict(x_val) > 0, y_val)
                if on_eval:
                    on_eval(epoch + (s + 1) / steps, metrics)
    weights = emb.weight.detach().numpy()[:, 0].copy()
    return weights, float(bias.detach()[0]), metrics


def dictionary_lines(n_chars: int, alpha: float = 0.75, seed: int = 0) -> list[str]:
    """Synthetic sentences of words drawn from jieba's dictionary (probability ~
    frequency**alpha), with some punctuation: vocabulary the training corpora lack.
    They are raw text like any other; the teacher segments them."""
    jieba = _jieba()
    words, freqs = [], []
    with jieba.get_dict_file() as f:
        for line in f.read().decode("utf-8").splitlines():
            parts = line.split(" ")
            if len(parts) >= 2 and parts[1].isdigit():
                words.append(parts[0])
                freqs.append(int(parts[1]))
    p = np.asarray(freqs, dtype=np.float64) ** alpha
    cdf = np.cumsum(p / p.sum())
    rng = np.random.default_rng(seed)
    punct = ["，", "。", "、", "；", "："]
    lines, total = [], 0
    while total < n_chars:
        n = int(rng.integers(3, 25))
        parts = []
        picks = np.minimum(np.searchsorted(cdf, rng.random(n)), len(words) - 1)
        for j, i in enumerate(picks):
            parts.append(words[i])
            if j < n - 1 and rng.random() < 0.08:
                parts.append(punct[int(rng.integers(len(punct)))])
        line = "".join(parts) + "。\n"
        lines.append(line)
        total += len(line)
    return lines


def read_lines(paths: list[Path]) -> list[tuple[Path, list[str]]]:
    out = []
    for path in paths:
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except OSError as exc:
            raise SplitterError(f"{path}: cannot read training text ({exc.strerror})") from None
        out.append((path, text.splitlines(keepends=True)))
    return out


def file_record(path: Path, sources: dict[str, str]) -> dict[str, Any]:
    data = path.read_bytes()
    return {
        "file": path.name,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "licence": sources.get(path.name, "unknown"),
    }


def licences_from_sources(sources_md: Path | None) -> dict[str, str]:
    """file name -> its line in SOURCES.md ("Origins and licences"), if given."""
    if sources_md is None or not sources_md.exists():
        return {}
    found = {}
    for line in sources_md.read_text(encoding="utf-8").splitlines():
        if line.startswith("- `") and "`:" in line:
            name = line[3 : line.index("`:")].rstrip("/").split("/")[-1]
            found[name] = line[line.index("`:") + 2 :].strip()
    return found


def segment_docs(
    files: list[tuple[Path, list[str]]],
    seg: Callable[[str], list[str]],
    on_lines: Callable[[int], None] | None = None,
) -> list[list[str]]:
    """Teacher tokens per training document (LINES_PER_DOC lines each)."""
    docs = []
    for _, lines in files:
        for i in range(0, len(lines), LINES_PER_DOC):
            tokens: list[str] = []
            chunk = lines[i : i + LINES_PER_DOC]
            for line in chunk:
                tokens.extend(seg(line))
            docs.append(tokens)
            if on_lines:
                on_lines(len(chunk))
    return docs


def architecture(bits: int) -> dict[str, Any]:
    return {
        "type": "hashed-ngram-linear",
        "bits": bits,
        "templates": [" ".join(f"c[i-{o}]" for o in t) for t in TEMPLATES] + ["classes(i-3..i)"],
        "context_chars": 3,
        "hash": "xor-multiply-32",
        "placements": list(PLACEMENTS),
    }


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
