"""Bits per byte of a trained model on prepared shards or raw text.

Every document is read as BOS + its bytes, and every real byte is scored once (not
BOS, not EOS). A document longer than the model's window (`seq_len`) is read in
overlapping windows that advance by `stride` positions (default seq_len / 2): the
first window scores all its bytes, each later one only its last `stride` bytes, so
every byte after the first window is predicted with at least seq_len - stride bytes
of context. Each window's first position pools at every stage, exactly as in training.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds
import torch
import torch.nn.functional as F

from splitters import Pipeline, TextBatch

from .errors import AunetError
from .model import BOS, AUNet
from .tokenizer import BYTES, ByteCodec, Codec

LN2 = math.log(2.0)


@dataclass
class Window:
    doc: int
    tokens: list[int]  # inputs (the first pools everywhere)
    levels: list[int]
    targets: list[int]
    score_from: int  # positions before this are context only


@dataclass
class EvalResult:
    bytes: int = 0
    windows: int = 0
    doc_nats: list[float] = field(default_factory=list)
    doc_bytes: list[int] = field(default_factory=list)
    points: list[int] = field(default_factory=list)  # pooling points per stage (2..)

    @property
    def nats(self) -> float:
        return sum(self.doc_nats)

    def summary(self, seq_len: int, stride: int) -> dict[str, Any]:
        per_doc = np.array(self.doc_nats) / np.maximum(np.array(self.doc_bytes), 1) / LN2
        return {
            "bpb": self.nats / max(self.bytes, 1) / LN2,
            "bytes": self.bytes,
            "documents": len(self.doc_bytes),
            "windows": self.windows,
            "seq_len": seq_len,
            "stride": stride,
            "per_document_bpb": {
                "mean": float(per_doc.mean()) if len(per_doc) else None,
                "median": float(np.median(per_doc)) if len(per_doc) else None,
                "min": float(per_doc.min()) if len(per_doc) else None,
                "max": float(per_doc.max()) if len(per_doc) else None,
            },
            "bytes_per_unit": [self.bytes / p if p else None for p in self.points],
        }


def windows_of(
    doc: int, data: Sequence[int], levels: np.ndarray, seq_len: int, stride: int, depth: int,
    bos: int = BOS,
) -> Iterator[Window]:  # fmt: skip
    """Overlapping windows that score every unit (byte or token) of a document once."""
    tokens = [bos, *data]
    lv = [depth, *np.minimum(levels, depth).tolist()]
    n = len(data)  # inputs 0..n-1 predict bytes 1..n of `tokens`
    a, e, score = 0, min(seq_len, n), 0
    while score < n:
        yield Window(doc, tokens[a:e], [depth, *lv[a + 1 : e]], tokens[a + 1 : e + 1], score - a)
        score = e
        e = min(score + stride, n)
        a = max(0, e - seq_len)


@torch.no_grad()
def evaluate(
    model: AUNet, docs: Iterable[tuple[bytes, np.ndarray]], stride: int | None = None,
    batch_size: int = 8, on_bytes=None, codec: Codec = BYTES,
) -> EvalResult:  # fmt: skip
    """Sum of next-unit losses over the text of `docs` ((bytes, levels) pairs).

    A BPE model reads each document as its tokens (levels unused); its nats are summed
    over those tokens and divided by the document's bytes, like a byte model's."""
    seq_len, depth = model.cfg.seq_len, model.cfg.n_stages - 1
    stride = stride or max(1, seq_len // 2)
    if not 1 <= stride <= seq_len:
        raise AunetError(f"--stride must be between 1 and seq_len ({seq_len}), got {stride}")
    device = next(model.parameters()).device
    res = EvalResult(points=[0] * depth)
    pending: list[Window] = []

    def run_batch() -> None:
        n = max(len(w.tokens) for w in pending)
        tok = torch.full((len(pending), n), codec.eos, dtype=torch.long)
        lv = torch.zeros(len(pending), n, dtype=torch.long)
        tgt = torch.full((len(pending), n), -100, dtype=torch.long)
        for i, w in enumerate(pending):
            k = len(w.tokens)
            tok[i, :k], lv[i, :k] = torch.tensor(w.tokens), torch.tensor(w.levels)
            tgt[i, w.score_from : k] = torch.tensor(w.targets[w.score_from :])
        logits, _ = model(tok.to(device), lv.to(device), capped=False)
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), tgt.to(device).flatten(), reduction="none"
        ).view(len(pending), n)
        for i, w in enumerate(pending):
            res.doc_nats[w.doc] += float(loss[i].sum())
        res.windows += len(pending)
        pending.clear()

    for data, levels in docs:
        if not data:
            continue
        doc = len(res.doc_bytes)
        res.doc_nats.append(0.0)
        res.doc_bytes.append(len(data))
        res.bytes += len(data)
        for s in range(depth):
            res.points[s] += int((levels > s).sum())
        units: Sequence[int] = data
        if not isinstance(codec, ByteCodec):
            units = codec.encode(data)
            levels = np.zeros(len(units), dtype=np.uint8)
        for w in windows_of(doc, units, levels, seq_len, stride, depth, codec.bos):
            pending.append(w)
            if len(pending) == batch_size:
                run_batch()
        if on_bytes:
            on_bytes(len(data))
    if pending:
        run_batch()
    return res


def shard_documents(prep_dir: Path, split: str, splitters: list[dict]) -> Iterator[tuple]:
    """(bytes, levels) of the documents of a prepared split, checked against the run."""
    manifest_path = prep_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        theirs = manifest["options"]["splitters"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AunetError(f"{manifest_path}: not a readable aunet manifest ({exc})") from None
    if theirs != splitters:
        raise AunetError(
            f"{prep_dir}: prepared with splitters {_names(theirs)}, but the model was "
            f"trained with {_names(splitters)}; evaluate raw text instead (it is split "
            "with the model's own splitters) or prepare the data with the same ones"
        )
    files = sorted((prep_dir / split).glob("*.arrow"))
    if not files:
        raise AunetError(f"{prep_dir}: no {split} shards (try --split train)")
    depth = len(splitters)
    for batch in ds.dataset([str(f) for f in files], format="arrow").to_batches():
        texts = batch.column("text").to_pylist()
        pools = [batch.column(f"pool_{k}").to_pylist() for k in range(1, depth + 1)]
        for i, data in enumerate(texts):
            levels = np.zeros(len(data), dtype=np.uint8)
            for pool in pools:
                levels[np.asarray(pool[i] or [], dtype=np.int64)] += 1
            yield data, levels


def raw_documents(paths: list[Path], pipeline: Pipeline, doc_per: str) -> Iterator[tuple]:
    """(bytes, levels) of raw text files, split with the run's own splitters."""
    from .readers import ReadOptions, discover, open_stream, read_batches

    opts = ReadOptions(doc_per=doc_per)
    for inp in discover([str(p) for p in paths], [], [], "auto"):
        _, stream = open_stream(inp)
        try:
            for batch in read_batches(inp, opts, stream):
                if not batch.docs:
                    continue
                text = TextBatch.from_docs(batch.docs)
                levels = pipeline.levels(text)
                for i, data in enumerate(batch.docs):
                    yield data, levels[text.offsets[i] : text.offsets[i + 1]]
        finally:
            stream.close()


def _names(splitters: list[dict]) -> str:
    return " + ".join(s.get("name", "?") for s in splitters) or "(none)"
