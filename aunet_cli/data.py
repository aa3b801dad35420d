"""Training data: prepared shards -> one memory-mapped token stream -> packed windows.

The shards of a split are flattened once into `tokens.u16` (BOS, document bytes,
EOS, ...) and `levels.u8` (pooling level per token; BOS pools at every stage) in a
cache directory keyed by the manifest's hash, then memory-mapped. A window is
`seq_len + 1` consecutive tokens (inputs and next-token targets); its first position
pools at every stage so each stage starts with a vector.

Batches are drawn in a seeded order that depends only on the global batch number,
and each DDP rank takes its own slice of every global batch, so a resumed run that
restores that number continues on exactly the next batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import torch
from torch.utils.data import DataLoader, IterableDataset

from .atomic import remove_stale_temporaries, replacing, write_json_atomic
from .errors import AunetError, BadInputError
from .model import BOS, EOS
from .tokenizer import BYTES, BpeCodec, Codec

STREAM_FORMAT = "aunet-stream/1"


def build_stream(
    prep_dir: Path, split: str, cache: Path, codec: Codec = BYTES
) -> tuple[np.ndarray, np.ndarray]:
    """Flatten a split's shards into (tokens uint16, levels uint8), memory-mapped.

    With a BPE codec the tokens are its ids (documents encoded losslessly, levels 0)."""
    manifest = prep_dir / "manifest.json"
    if not manifest.exists():
        raise AunetError(f"{prep_dir}: no manifest.json (not a finished `aunet prep` directory)")
    out = _stream_dir(prep_dir, split, cache, codec)
    meta_path = out / "meta.json"
    if not meta_path.exists():
        remove_stale_temporaries(out)  # of a build that was killed
        _write_stream(
            prep_dir / split, out, len(json.loads(manifest.read_text())["options"]["splitters"]),
            codec,
        )  # fmt: skip
    meta = json.loads(meta_path.read_text())
    n = meta["tokens"]
    if n == 0:
        return np.zeros(0, np.uint16), np.zeros(0, np.uint8)
    tokens = np.memmap(out / "tokens.u16", dtype=np.uint16, mode="r", shape=(n,))
    levels = np.memmap(out / "levels.u8", dtype=np.uint8, mode="r", shape=(n,))
    return tokens, levels


def stream_meta(prep_dir: Path, split: str, cache: Path, codec: Codec = BYTES) -> dict[str, Any]:
    """meta.json of a built stream: tokens, bytes and text units (not BOS/EOS)."""
    build_stream(prep_dir, split, cache, codec)
    return json.loads((_stream_dir(prep_dir, split, cache, codec) / "meta.json").read_text())


def _stream_dir(prep_dir: Path, split: str, cache: Path, codec: Codec) -> Path:
    """The cache directory of a split's stream: keyed by the manifest (and tokenizer)."""
    key = hashlib.sha256((prep_dir / "manifest.json").read_bytes())
    if isinstance(codec, BpeCodec):
        key.update(codec.sha256.encode())
    return cache / f"{split}-{key.hexdigest()[:16]}"


def _write_stream(split_dir: Path, out: Path, depth: int, codec: Codec) -> None:
    total = n_bytes = n_docs = 0
    with replacing(out / "tokens.u16") as ft, replacing(out / "levels.u8") as fl:
        for batch in _shard_batches(split_dir):
            if isinstance(codec, BpeCodec):
                tok, lv = _pack_tokens(batch, codec)
            else:
                tok, lv = _pack_batch(batch, depth)
            _append(ft, tok)
            _append(fl, lv)
            total += len(tok)
            n_docs += batch.num_rows
            n_bytes += pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0
    meta = {
        "format": STREAM_FORMAT, "tokens": total, "depth": depth, "codec": codec.kind,
        "documents": n_docs, "bytes": n_bytes, "units": total - 2 * n_docs,
    }  # fmt: skip
    write_json_atomic(out / "meta.json", meta)


def _append(f: BinaryIO, array: np.ndarray) -> None:
    """The array's raw bytes at the end of `f`. Not ndarray.tofile: it writes through a
    C stream of its own whose last flush, at its unchecked fclose, can fail silently."""
    f.write(memoryview(np.ascontiguousarray(array)).cast("B"))


def _shard_batches(split_dir: Path) -> Iterator[pa.RecordBatch]:
    """The record batches of a split's shards, in file order. A shard that cannot be
    read is a one-line error of its own (`replacing` would take its OSError for a
    refused write of the stream)."""
    if not split_dir.exists():
        return
    files = sorted(str(p) for p in split_dir.glob("*.arrow"))
    try:
        yield from ds.dataset(files, format="arrow").to_batches()
    except (OSError, pa.ArrowInvalid) as exc:
        raise BadInputError(
            f"{split_dir}: cannot read its shards ({exc}); prepare the data again with `aunet prep`"
        ) from None


def _pack_tokens(batch: pa.RecordBatch, codec: BpeCodec) -> tuple[np.ndarray, np.ndarray]:
    """BOS ids EOS BOS ids EOS ... of BPE-encoded documents (levels all 0)."""
    out: list[int] = []
    for ids in codec.encode_many(batch.column("text").to_pylist()):
        out.append(codec.bos)
        out.extend(ids)
        out.append(codec.eos)
    tokens = np.asarray(out, dtype=np.uint16)
    return tokens, np.zeros(len(tokens), dtype=np.uint8)


def _pack_batch(batch: pa.RecordBatch, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """BOS doc EOS BOS doc EOS ... with levels (BOS = depth, EOS = 0)."""
    text = batch.column("text")
    bufs = text.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32)[text.offset : text.offset + len(text) + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    offsets -= offsets[0]
    n_docs = len(offsets) - 1
    lengths = np.diff(offsets)
    starts = offsets[:-1] + 2 * np.arange(n_docs) + 1  # first byte of each document
    total = len(data) + 2 * n_docs
    tokens = np.empty(total, dtype=np.uint16)
    levels = np.zeros(total, dtype=np.uint8)
    tokens[starts - 1] = BOS
    tokens[starts + lengths] = EOS
    doc_of_byte = np.repeat(np.arange(n_docs), lengths)
    tokens[np.arange(len(data)) + 2 * doc_of_byte + 1] = data
    levels[starts - 1] = depth
    for k in range(1, depth + 1):
        col = batch.column(f"pool_{k}")
        vals = col.flatten().to_numpy().astype(np.int64)
        counts = col.value_lengths().fill_null(0).to_numpy()
        levels[vals + np.repeat(starts, counts)] = k
    return tokens, levels


class Windows:
    """Non-overlapping windows of seq_len + 1 tokens over a stream."""

    def __init__(self, tokens: np.ndarray, levels: np.ndarray, seq_len: int, depth: int):
        self.tokens, self.levels, self.seq_len, self.depth = tokens, levels, seq_len, depth
        self.count = max(0, (len(tokens) - 1) // seq_len)

    def get(self, i: int) -> dict[str, torch.Tensor]:
        a = i * self.seq_len
        tok = torch.from_numpy(self.tokens[a : a + self.seq_len + 1].astype(np.int64))
        lv = torch.from_numpy(self.levels[a : a + self.seq_len].astype(np.int64))
        lv[0] = self.depth  # every stage starts at the window's first position
        return {"tokens": tok[:-1], "targets": tok[1:], "levels": lv}

    def stage_lengths(self, n_stages: int, sample: int = 256) -> list[float]:
        """Mean positions per window at each stage, measured on evenly spaced windows."""
        picks = np.linspace(0, max(self.count - 1, 0), min(sample, self.count)).astype(int)
        lengths = [float(self.seq_len)]
        for s in range(1, n_stages):
            counts = [
                (np.asarray(self.levels[i * self.seq_len : (i + 1) * self.seq_len]) >= s)[1:].sum()
                + 1
                for i in picks
            ]
            lengths.append(float(np.mean(counts)) if counts else 1.0)
        return lengths


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class TrainBatches(IterableDataset):
    """Endless seeded batches; global batch g of every rank is fixed by (seed, g)."""

    def __init__(self, windows: Windows, batch_size: int, seed: int, module: AUNetData):
        self.windows, self.batch_size, self.seed, self.module = windows, batch_size, seed, module

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rank, world = self.module.rank_world()
        per_epoch = self.windows.count // (self.batch_size * world)
        if per_epoch == 0:
            raise AunetError(
                f"the training data has {self.windows.count} windows of "
                f"{self.windows.seq_len} bytes: too few for a batch of {self.batch_size} x "
                f"{world} devices; use more data, a smaller batch or a shorter seq_len"
            )
        g = self.module.batches_done()
        order, order_epoch = None, -1
        while True:
            epoch, step = divmod(g, per_epoch)
            if epoch != order_epoch:
                order = np.random.default_rng([self.seed, epoch]).permutation(self.windows.count)
                order_epoch = epoch
            first = (step * world + rank) * self.batch_size
            yield collate(
                [self.windows.get(int(i)) for i in order[first : first + self.batch_size]]
            )
            g += 1


class ValBatches(IterableDataset):
    def __init__(self, windows: Windows, batch_size: int, limit: int, module: AUNetData):
        self.windows, self.batch_size, self.limit, self.module = windows, batch_size, limit, module

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rank, world = self.module.rank_world()
        # evenly spaced over the whole split: its head alone may be one input file
        count = self.windows.count
        picks = np.unique(np.linspace(0, count - 1, min(self.limit, count)).astype(int))
        mine = picks[rank::world].tolist()
        for a in range(0, len(mine), self.batch_size):
            yield collate([self.windows.get(i) for i in mine[a : a + self.batch_size]])


class AUNetData(L.LightningDataModule):
    def __init__(
        self,
        prep_dir: Path,
        cache: Path,
        seq_len: int,
        depth: int,
        batch_size: int,
        val_windows: int,
        val_tail: float,
        seed: int,
        codec: Codec = BYTES,
    ) -> None:
        super().__init__()
        self.codec = codec
        self.prep_dir, self.cache = prep_dir, cache
        self.seq_len, self.depth, self.batch_size = seq_len, depth, batch_size
        self.val_windows, self.val_tail, self.seed = val_windows, val_tail, seed
        self.train: Windows | None = None
        self.val: Windows | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        tokens, levels = build_stream(self.prep_dir, "train", self.cache, self.codec)
        if self.val_tail > 0:
            cut = int(len(tokens) * (1 - self.val_tail))
            vt, vl = tokens[cut:], levels[cut:]
            tokens, levels = tokens[:cut], levels[:cut]
        else:
            vt, vl = build_stream(self.prep_dir, "val", self.cache, self.codec)
        self.train = Windows(tokens, levels, self.seq_len, self.depth)
        self.val = Windows(vt, vl, self.seq_len, self.depth)
        if self.train.count == 0:
            raise AunetError(f"{self.prep_dir}: no training windows of {self.seq_len} bytes")

    def rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer else (0, 1)

    def train_dataloader(self) -> DataLoader:
        assert self.train is not None
        ds_ = TrainBatches(self.train, self.batch_size, self.seed, self)
        return DataLoader(ds_, batch_size=None, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        assert self.val is not None
        return DataLoader(
            ValBatches(self.val, self.batch_size, self.val_windows, self),
            batch_size=None,
            num_workers=0,
        )

    def batches_done(self) -> int:
        """Global micro-batches consumed by finished optimizer steps: where to resume."""
        trainer = self.trainer
        return trainer.global_step * trainer.accumulate_grad_batches if trainer else 0

    def state_dict(self) -> dict[str, Any]:
        return {"batches_done": self.batches_done(), "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise AunetError("the checkpoint was trained with another data seed; use --fresh")
